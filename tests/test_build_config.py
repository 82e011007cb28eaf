"""Each build setting is defined in one place: Python requirements in
pyproject.toml (installed by the Makefile through scripts/requirements.py),
cache locations in scripts/cache-env.sh."""
import os
import re
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def requirements(*groups):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "requirements.py"), *groups],
                         capture_output=True, text=True, check=True)
    return out.stdout.split("\n")[:-1]


def test_requirements_of_groups_are_pyprojects():
    meta = tomllib.loads(read("pyproject.toml"))
    build, project = meta["build-system"]["requires"], meta["project"]["dependencies"]
    extras = meta["project"]["optional-dependencies"]
    assert requirements("build-system") == build
    assert requirements("torch") == extras["torch"]
    both = requirements("build-system", "project", "test", "demo")
    assert set(both) == set(build + project + extras["test"] + extras["demo"])
    assert len(both) == len(set(both))  # each once, though numpy and h5py are in two groups


def test_requirements_unknown_group_fails():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "requirements.py"), "nope"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "no group 'nope'" in out.stderr


def test_makefile_pins_no_version():
    pins = re.findall(r"[A-Za-z0-9_.-]+\s*(?:==|>=|<=|~=|!=)\s*[0-9]", read("Makefile"))
    assert not pins, "versions belong in pyproject.toml: %s" % pins


def test_cache_locations_defined_once():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    build_files = [p for p in tracked if p == "Makefile" or p.endswith((".sh", ".cmake"))
                   or p in ("CMakeLists.txt", ".ci/run")]
    code = {p: "\n".join(line for line in read(p).splitlines() if not line.lstrip().startswith("#"))
            for p in build_files}
    assert [p for p in build_files if re.search(r"XDG_CACHE_HOME|\.cache\b", code[p])] == \
        ["scripts/cache-env.sh"]

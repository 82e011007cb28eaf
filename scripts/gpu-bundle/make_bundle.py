#!/usr/bin/env python3
"""Write the GPU bundle: everything a bare GPU machine lacks to test and
measure caffe-xent, from the normal CUDA build, in one folder.

    .venv/bin/python scripts/gpu-bundle/make_bundle.py   (make gpu-bundle runs this)

The GPU machine has a driver, CUDA and its own Python with NVIDIA's cuBLAS
and cuRAND wheels, but no Python 3.11, no Boost, protobuf, glog, gflags,
HDF5 or OpenBLAS, and no package registry. So the bundle holds:

- this build's Python 3.11 runtime (interpreter, libpython, the standard
  library without its tests and GUI parts) with the installed `caffe` and
  `caffe_xent` packages and the Python packages the tests need (numpy,
  pytest, protobuf, ... with what they require, read from their metadata);
- the C++ test binary, the GPU probe, upstream's test data;
- every shared library these load, found with ldd, except glibc, the
  dynamic loader and the CUDA driver (the machine's own) and cuBLAS/cuRAND
  (taken from the machine's NVIDIA wheels at run time: they are several
  hundred MiB, larger than the whole bundle may be);
- the tests, the benchmarks, the demo's net and a small demo data set;
- a static busybox, so that unpacking needs nothing from the machine but
  /bin/sh.

Output folder (git-ignored): run, busybox, payload.tar.xz, MANIFEST.txt.
The folder must stay within --limit-mib; the script fails otherwise and says
what is largest.
"""
import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile  # noqa: F401  (documented format: the payload is a tar.xz)
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "scripts", "gpu-bundle")

# The machine's own libraries, never carried: glibc's, the loader, the driver.
SYSTEM_LIBS = re.compile(r"^(libc|libm|libdl|libpthread|librt|libutil|libresolv|ld-linux-x86-64"
                         r"|libcuda|libnvidia-[a-z-]+)\.so")
# Taken from the GPU machine's NVIDIA wheels at run time (see run).
WHEEL_LIBS = re.compile(r"^(libcublas|libcublasLt|libcurand)\.so")
# Python distributions the bundled tests and scripts import; their own
# requirements are added from their metadata.
DISTRIBUTIONS = ["caffe-xent", "numpy", "pytest", "pytest-xdist", "protobuf", "six", "mpmath",
                 "hypothesis"]
# Parts of the standard library nothing here uses.
STDLIB_SKIP = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip",
               "lib2to3", "pydoc_data", "__pycache__", "venv"}
DYNLOAD_SKIP = re.compile(r"^(_tkinter|_test|xx|_xx|_ctypes_test|audioop|_curses|readline|nis"
                          r"|_dbm|_gdbm)")


def log(message):
    print("gpu-bundle: " + message, flush=True)


def fail(message):
    print("gpu-bundle: error: " + message, file=sys.stderr)
    sys.exit(1)


def venv_facts(python):
    code = ("import sys, sysconfig, json, os; print(json.dumps({"
            "'base': sys.base_prefix, 'version': '%d.%d' % sys.version_info[:2],"
            "'stdlib': sysconfig.get_path('stdlib'), 'purelib': sysconfig.get_path('purelib'),"
            "'ldlibrary': sysconfig.get_config_var('LDLIBRARY'),"
            "'libdir': sysconfig.get_config_var('LIBDIR')}))")
    return json.loads(subprocess.check_output([python, "-c", code], text=True))


def distribution_files(python, names):
    """Files (relative to site-packages) of the named distributions and of
    everything they require on this platform and Python (no extras), from
    the installed metadata."""
    code = r'''
import json, sys
from importlib import metadata
from packaging.requirements import Requirement
todo, seen, files, missing = list(sys.argv[1:]), set(), [], []
while todo:
    req = Requirement(todo.pop())
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue  # another platform, an older Python, or an extra
    name = req.name.lower().replace("_", "-")
    if name in seen:
        continue
    seen.add(name)
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        missing.append(name)
        continue
    files += [str(f) for f in (dist.files or [])]
    todo += dist.requires or []
print(json.dumps({"files": files, "missing": missing, "dists": sorted(seen)}))
'''
    return json.loads(subprocess.check_output([python, "-c", code, *names], text=True))


def skip_site_file(rel):
    parts = rel.split("/")
    if rel.startswith("..") or "__pycache__" in parts or rel.endswith(".pyc"):
        return True
    if parts[0] == "numpy" and ("tests" in parts or "include" in parts or "f2py" in parts):
        return True
    return False


def copy_file(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(src, dst, follow_symlinks=True)


def copy_tree(src, dst, skip_dir=lambda name: False, skip_file=lambda name: False):
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if not skip_dir(d)]
        rel = os.path.relpath(dirpath, src)
        for name in filenames:
            if not skip_file(name) and not name.endswith(".pyc"):
                copy_file(os.path.join(dirpath, name), os.path.join(dst, rel, name))


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_files(top):
    for dirpath, _, filenames in os.walk(top):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and is_elf(path):
                yield path


def library_closure(stage, lib_dir, nvidia_lib_dir):
    """Copy into lib_dir every library the stage's ELF files load that is
    neither the machine's own (SYSTEM_LIBS), nor a wheel library, nor
    already in the stage. ldd lists the transitive closure, so one pass over
    every ELF file (including those just copied) reaches a fixed point."""
    present = {os.path.basename(p) for p in elf_files(stage)}
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join([lib_dir, nvidia_lib_dir]))
    copied, checked = [], set()
    while True:
        pending = [p for p in elf_files(stage) if p not in checked]
        if not pending:
            return copied
        for path in pending:
            checked.add(path)
            out = subprocess.run(["ldd", path], capture_output=True, text=True, env=env).stdout
            for line in out.splitlines():
                m = re.match(r"\s*(\S+) => (\S+|not found)", line)
                if not m:
                    continue
                name, where = m.groups()
                if SYSTEM_LIBS.match(name) or WHEEL_LIBS.match(name) or name in present:
                    continue
                if where == "not found":
                    fail("%s needs %s, which is not found here" % (os.path.relpath(path, stage), name))
                copy_file(os.path.realpath(where), os.path.join(lib_dir, name))
                present.add(name)
                copied.append(name)


def strip(stage):
    """Symbol tables out of what this machine built or installed. Wheels'
    binaries stay as they are: strip breaks those that auditwheel patched
    (numpy's OpenBLAS then fails to load: "ELF load command ... not
    page-aligned")."""
    site = os.sep + "site-packages" + os.sep
    for path in elf_files(stage):
        if site in path and not re.search(r"site-packages/(caffe|caffe_xent)/", path):
            continue
        mode = os.stat(path).st_mode
        os.chmod(path, mode | stat.S_IWUSR)
        subprocess.run(["strip", "--strip-unneeded", path], capture_output=True)


def fetch_busybox(cache):
    """A static busybox from Debian's busybox-static package, cached."""
    target = os.path.join(cache, "busybox")
    if os.path.exists(target):
        return target
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        get = ["apt-get", "download", "busybox-static"]
        if subprocess.run(get, cwd=tmp, capture_output=True).returncode != 0:
            sudo = [] if os.geteuid() == 0 else ["sudo"]
            subprocess.run(sudo + ["apt-get", "update", "-qq"], check=False)
            if subprocess.run(get, cwd=tmp).returncode != 0:
                fail("could not download Debian's busybox-static package (apt-get download)")
        deb = [f for f in os.listdir(tmp) if f.endswith(".deb")][0]
        subprocess.run(["dpkg-deb", "-x", deb, "x"], cwd=tmp, check=True)
        binary = os.path.join(tmp, "x", "bin", "busybox")
        dynamic = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True).stdout
        if "NEEDED" in dynamic:
            fail("busybox from busybox-static is not static")
        shutil.copy2(binary, target + ".tmp")
        os.replace(target + ".tmp", target)
    return target


def make_demo_data(python, out_dir, train_size, test_size):
    """The demo's data set, smaller (the GPU machine has no scikit-learn for
    Python 3.11 to compose it there); train_check.py rewrites the list files."""
    code = ("import sys; sys.path.insert(0, %r); import digits_data; "
            "digits_data.make_dataset(%r, %d, %d, 1)"
            % (os.path.join(ROOT, "examples", "multilabel_digits"), out_dir, train_size, test_size))
    subprocess.run([python, "-c", code], check=True)
    for name in ("train.txt", "test.txt"):
        os.remove(os.path.join(out_dir, name))  # they name this machine's paths
    with open(os.path.join(out_dir, "sizes.json"), "w") as f:
        json.dump({"train": train_size, "test": test_size}, f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", default=os.path.join(ROOT, ".venv"))
    parser.add_argument("--build", default=os.path.join(ROOT, "build", "cmake"))
    parser.add_argument("--out", default=os.path.join(ROOT, "gpu-bundle"))
    parser.add_argument("--limit-mib", type=float, default=56.0)
    parser.add_argument("--xz-level", default="6")
    args = parser.parse_args()

    python = os.path.join(args.venv, "bin", "python")
    facts = venv_facts(python)
    if facts["version"] != "3.11":
        fail("the build's Python is %s, the bundle expects 3.11" % facts["version"])
    test_binary = os.path.join(args.build, "caffe_xent_cpp_tests")
    probe = os.path.join(args.build, "xent_gpu_probe")
    for path in (test_binary, probe):
        if not os.path.exists(path):
            fail("%s is missing: the bundle needs the CUDA build (make build with nvcc)" % path)
    nvidia_lib_dir = os.path.join(facts["purelib"], "nvidia", "cu13", "lib")

    stage = os.path.join(ROOT, "build", "gpu-bundle-stage")
    shutil.rmtree(stage, ignore_errors=True)
    py_root = os.path.join(stage, "python")
    lib_dir = os.path.join(stage, "lib")
    stdlib_dst = os.path.join(py_root, "lib", "python3.11")
    site_dst = os.path.join(stdlib_dst, "site-packages")

    log("Python 3.11 runtime from %s" % facts["base"])
    copy_file(os.path.join(facts["base"], "bin", "python3.11"), os.path.join(py_root, "bin", "python3.11"))
    os.symlink("python3.11", os.path.join(py_root, "bin", "python3"))
    copy_tree(facts["stdlib"], stdlib_dst, skip_dir=lambda d: d in STDLIB_SKIP or d.startswith("config-"),
              skip_file=lambda f: bool(DYNLOAD_SKIP.match(f)) and f.endswith(".so"))

    found = distribution_files(python, DISTRIBUTIONS)
    if found["missing"]:
        fail("not installed in %s: %s" % (args.venv, ", ".join(found["missing"])))
    log("Python packages: %s" % ", ".join(found["dists"]))
    for rel in found["files"]:
        if not skip_site_file(rel):
            copy_file(os.path.join(facts["purelib"], rel), os.path.join(site_dst, rel))

    # The test binary finds libcaffe through its build-tree RUNPATH here;
    # there, through LD_LIBRARY_PATH (the bundle's lib/, which run sets).
    libcaffe = os.path.join(site_dst, "caffe_xent", "lib", "libcaffe.so.1.0.0")
    if not os.path.exists(libcaffe):
        fail("%s is missing from the installed caffe-xent" % os.path.relpath(libcaffe, site_dst))
    os.makedirs(lib_dir, exist_ok=True)
    os.symlink(os.path.relpath(libcaffe, lib_dir), os.path.join(lib_dir, "libcaffe.so.1.0.0"))

    log("C++ test binary, GPU probe, upstream test data")
    copy_file(test_binary, os.path.join(stage, "bin", "caffe_xent_cpp_tests"))
    copy_file(probe, os.path.join(stage, "bin", "xent_gpu_probe"))
    data = os.path.join("src", "caffe", "test", "test_data")
    for name in ("solver_data_list.txt", "solver_data.h5"):
        copy_file(os.path.join(args.build, "caffe-upstream", data, name),
                  os.path.join(stage, "upstream", data, name))

    log("tests, benchmarks, demo net and data, check scripts")
    project = os.path.join(stage, "project")
    no_cache = lambda d: d == "__pycache__" or d == ".pytest_cache"  # noqa: E731
    for part in ("tests", "bench", os.path.join("examples", "multilabel_digits")):
        copy_tree(os.path.join(ROOT, part), os.path.join(project, part), skip_dir=no_cache)
    copy_file(os.path.join(ROOT, "pyproject.toml"), os.path.join(project, "pyproject.toml"))
    for name in ("check.py", "train_check.py"):
        copy_file(os.path.join(HERE, name), os.path.join(project, "gpu", name))
    make_demo_data(python, os.path.join(project, "gpu", "data"), 3000, 500)

    log("shared libraries (ldd closure beyond glibc, the loader, the CUDA driver, cuBLAS/cuRAND)")
    copied = library_closure(stage, lib_dir, nvidia_lib_dir)
    log("%d libraries: %s" % (len(copied), " ".join(sorted(copied))))
    strip(stage)

    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    with open(os.path.join(stage, "BUILD_INFO.json"), "w") as f:
        json.dump({"commit": commit + ("+changes" if dirty else ""), "python": facts["version"],
                   "libraries": sorted(copied), "distributions": found["dists"]}, f, indent=1)

    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    log("compressing (xz -%s)" % args.xz_level)
    payload = os.path.join(args.out, "payload.tar.xz")
    with open(payload, "wb") as out:
        tar = subprocess.Popen(["tar", "-C", stage, "--owner=0", "--group=0", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        subprocess.run(["xz", "-T0", "-" + args.xz_level, "-c"], stdin=tar.stdout, stdout=out, check=True)
        if tar.wait() != 0:
            fail("tar failed")
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                         "caffe-xent", "busybox-static")
    shutil.copy2(fetch_busybox(cache), os.path.join(args.out, "busybox"))
    shutil.copy2(os.path.join(HERE, "run"), os.path.join(args.out, "run"))

    sizes = {}
    for dirpath, _, filenames in os.walk(stage):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                top = os.path.relpath(path, stage).split(os.sep)
                key = "/".join(top[:4]) if top[0] == "python" else "/".join(top[:2])
                sizes[key] = sizes.get(key, 0) + os.path.getsize(path)
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    with open(os.path.join(args.out, "MANIFEST.txt"), "w") as f:
        f.write("caffe-xent GPU bundle, commit %s\n" % commit)
        f.write("entry: run OUTDIR (see docs/gpu.md)\n\nunpacked sizes (MiB), largest first:\n")
        for key, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:40]:
            f.write("%8.1f  %s\n" % (size / 2**20, key))
        f.write("\nunpacked total %.1f MiB; folder %.1f MiB\n"
                % (sum(sizes.values()) / 2**20, total / 2**20))
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    log("%s: %.1f MiB (limit %.0f MiB), unpacked %.1f MiB"
        % (os.path.relpath(args.out, ROOT), total / 2**20, args.limit_mib, sum(sizes.values()) / 2**20))
    if total > args.limit_mib * 2**20:
        with open(os.path.join(args.out, "MANIFEST.txt")) as f:
            sys.stderr.write(f.read())
        fail("the bundle is %.1f MiB, over the %.0f MiB limit" % (total / 2**20, args.limit_mib))


if __name__ == "__main__":
    main()

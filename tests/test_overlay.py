"""The repository carries no upstream Caffe file: upstream comes from the
pinned Debian source at build time, changed only through patches/."""
import hashlib
import os
import subprocess
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def upstream_tarball():
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch-upstream.sh")],
                         capture_output=True, text=True, check=True)
    directory = out.stdout.strip()
    names = [n for n in os.listdir(directory) if n.endswith(".orig.tar.gz")]
    assert len(names) == 1
    return os.path.join(directory, names[0])


def test_no_tracked_file_is_an_upstream_file():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    if not tracked:
        pytest.fail("git ls-files listed nothing: run the tests from a git checkout")
    upstream = {}
    with tarfile.open(upstream_tarball()) as tar:
        for member in tar.getmembers():
            if member.isfile():
                upstream[member.name.lstrip("./")] = hashlib.sha256(
                    tar.extractfile(member).read()).hexdigest()
    same = []
    for path in tracked:
        full = os.path.join(ROOT, path)
        if path in upstream and os.path.isfile(full):
            with open(full, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() == upstream[path]:
                    same.append(path)
    assert not same, "upstream files committed: %s" % same
    assert len(upstream) > 500  # the tarball really was read

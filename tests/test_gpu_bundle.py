"""The GPU bundle (make gpu-bundle, docs/gpu.md), tested without a GPU.

Builds the bundle from this build, checks its size against the limit, and
runs its entry script as a bare machine would (an empty environment: no
.venv, no PYTHONPATH, PATH=/usr/bin:/bin, a fresh HOME) in its quick CPU
mode, recording every shared library the dynamic loader initializes
(LD_DEBUG=libs). Every one must come from the bundle, from the NVIDIA
wheel folder it was pointed at, or be glibc's, the loader's or the CUDA
driver's. The CPU steps must pass, and the GPU steps must say "no GPU".
"""
import os
import re
import subprocess
import sys

import pytest

import caffe_xent

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(ROOT, "gpu-bundle")
LIMIT_MIB = 56
ALLOWED = re.compile(r"/(libc|libm|libdl|libpthread|librt|libutil|libresolv|ld-linux-x86-64"
                     r"|libcuda|libnvidia-[a-z-]+)\.so[.0-9]*$")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not caffe_xent._harness.cuda_build(),
                       reason="CPU-only build: the GPU bundle is made from the CUDA variant"),
]


def nvidia_lib_dir():
    import sysconfig
    return os.path.join(sysconfig.get_path("purelib"), "nvidia", "cu13", "lib")


@pytest.fixture(scope="module")
def bundle():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gpu-bundle", "make_bundle.py"),
                           "--limit-mib", str(LIMIT_MIB)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return BUNDLE


def scrubbed(tmp, **extra):
    """An environment as a bare machine has it, plus `extra`."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(tmp)}
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="module")
def cpu_leg(bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cpu_leg")
    out, ld = tmp / "out", tmp / "ld"
    ld.mkdir()
    env = scrubbed(tmp, LD_DEBUG="libs", LD_DEBUG_OUTPUT=ld / "ld",
                   CAFFE_XENT_NVIDIA_LIBS=nvidia_lib_dir(), CAFFE_XENT_BUNDLE_DIR=tmp / "unpacked")
    proc = subprocess.run([os.path.join(bundle, "run"), str(out), "--quick"], env=env,
                          capture_output=True, text=True, timeout=1200)
    loaded = set()
    for name in os.listdir(ld):
        with open(ld / name, errors="replace") as f:
            loaded.update(re.findall(r"calling init: (\S+)", f.read()))
    return proc, out, loaded, tmp / "unpacked"


def test_bundle_holds_the_entry_script_and_fits_the_limit(bundle):
    names = set(os.listdir(bundle))
    assert {"run", "busybox", "payload.tar.xz", "MANIFEST.txt"} <= names, names
    assert os.access(os.path.join(bundle, "run"), os.X_OK)
    total = sum(os.path.getsize(os.path.join(bundle, n)) for n in names)
    assert total <= LIMIT_MIB * 2**20, "%.1f MiB" % (total / 2**20)


def test_cpu_leg_passes_and_gpu_steps_say_no_gpu(cpu_leg):
    proc, out, _, _ = cpu_leg
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = (out / "report.md").read_text()
    rows = dict(re.findall(r"^\| (gpu|cpp|pytest|train|bench) \| ([^|]+) \|", report, re.M))
    assert {k: v.strip() for k, v in rows.items()} == {
        "gpu": "no GPU", "cpp": "passed", "pytest": "no GPU", "train": "no GPU", "bench": "no GPU"}, report
    assert re.search(r"\| cpp \| passed \| \d+ \(\d+\) \| [1-9]\d* passed, 0 failed \|", report), report
    assert "no GPU: the benchmark measures the GPU only" in report
    assert re.search(r"bce on CPU, 60 iterations.*loss [\d.]+ -> [\d.]+", report), report
    assert len(os.listdir(out)) <= 8


def test_cpu_leg_loads_no_library_from_the_system(cpu_leg):
    proc, _, loaded, unpacked = cpu_leg
    assert proc.returncode == 0
    ours = [p for p in loaded if p.startswith(str(unpacked))]
    assert any(p.endswith("/libcaffe.so.1.0.0") for p in ours), sorted(loaded)
    assert any("/libpython3.11.so" in p for p in ours), sorted(loaded)
    wheel = [p for p in loaded if p.startswith(nvidia_lib_dir())]
    assert any("libcublas.so" in p for p in wheel), sorted(loaded)
    foreign = sorted(p for p in loaded
                     if not p.startswith((str(unpacked), nvidia_lib_dir())) and not ALLOWED.search(p))
    assert foreign == [], foreign


def test_missing_cublas_is_a_clear_error(bundle, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([os.path.join(bundle, "run"), str(tmp_path / "out")],
                          env=scrubbed(tmp_path, CAFFE_XENT_NVIDIA_LIBS=empty),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "cuBLAS and cuRAND for CUDA 13" in proc.stderr and "nvidia-cublas" in proc.stderr

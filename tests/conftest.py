"""Shared fixtures: the device list is built once here.

GPU entries carry the ``gpu`` mark (``pytest -m gpu`` selects every GPU
case: the GPU bundle runs exactly those) and a skip mark with the reason
where no CUDA device (or a CPU-only build) is present, so they show as
skipped, never as passed.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import caffe_xent

# The fuzzer's profiles (tests/test_fuzz.py). The default keeps that file
# under a minute; `--hypothesis-profile=xent-nightly` runs 20 times as many examples.
# No example database is written into the checkout; a failure prints its
# seed (replay with --hypothesis-seed=N) and a reproduce blob.
settings.register_profile("xent-default", max_examples=500, deadline=None, database=None,
                          print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("xent-nightly", parent=settings.get_profile("xent-default"),
                          max_examples=10000)
settings.load_profile("xent-default")

GPU_AVAILABLE = caffe_xent.gpu_available()
GPU_SKIP_REASON = ("no CUDA device visible (or CPU-only build): the GPU path is "
                   "compiled but not exercised on this machine")

GPU_MARKS = (pytest.mark.gpu, pytest.mark.skipif(not GPU_AVAILABLE, reason=GPU_SKIP_REASON))


def requires_gpu(test):
    """Decorator of a test that runs on the GPU only."""
    for mark in GPU_MARKS:
        test = mark(test)
    return test


DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("gpu", id="gpu", marks=GPU_MARKS),
]
DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


def pytest_report_header(config):
    return "caffe-xent SIMD target: %s (this CPU runs: %s; CAFFE_XENT_SIMD chooses)" % (
        caffe_xent.simd_target(), ", ".join(caffe_xent._harness.simd_targets()))


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(params=DTYPES)
def dtype(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20260522)

"""Every SIMD path of the CPU layers against the float64 references.

The layers dispatch at run time to the best SIMD target the CPU has, so the
paths only other machines take (AVX2 on an AVX-512 machine, SSE4, SSSE3,
the scalar fallback) would otherwise go untested here. CAFFE_XENT_SIMD
restricts the dispatch when libcaffe loads; for each target this build and
CPU can run besides the best one (which the rest of the suite runs), the
layers' test modules run again, CPU cases only, in a fresh interpreter.
"""
import os
import re
import subprocess
import sys

import pytest

import caffe_xent
from losses import LOSSES

HERE = os.path.dirname(os.path.abspath(__file__))
# test_empty_and_non_finite.py too: whether a NaN target is seen depended on
# the target (Highway's != is ordered on AVX2 and AVX-512, not on SSE4);
# test_asymmetric_loss.py: the asymmetric form of SigmoidCrossEntropyLoss has
# its own SIMD loops (float32, whole γ±), held there to the float64 reference
# and to the scalar element loop.
MODULES = [loss.test_module for loss in LOSSES.values()] + ["test_empty_and_non_finite.py",
                                                            "test_asymmetric_loss.py"]
TARGETS = caffe_xent._harness.simd_targets()
OTHER_TARGETS = TARGETS[1:] or [pytest.param(None, marks=pytest.mark.skip(
    reason="this CPU runs one SIMD target only: the rest of the suite tests it"))]


def test_the_best_target_is_the_default():
    if os.environ.get("CAFFE_XENT_SIMD"):
        pytest.skip("CAFFE_XENT_SIMD is set for this run: %s" % os.environ["CAFFE_XENT_SIMD"])
    assert caffe_xent.simd_target() == TARGETS[0]
    assert TARGETS[-1] in ("SCALAR", "EMU128"), TARGETS  # the portable fallback is always built


def test_an_unknown_target_is_ignored_with_a_message():
    code = "import caffe_xent, caffe_xent._harness as h; print(caffe_xent.simd_target(), h.simd_target_request_error())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, CAFFE_XENT_SIMD="NO_SUCH_TARGET"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == TARGETS[0]
    assert "CAFFE_XENT_SIMD=NO_SUCH_TARGET is not a SIMD target" in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("target", OTHER_TARGETS)
def test_layers_match_the_references_on_target(target):
    env = dict(os.environ, CAFFE_XENT_SIMD=target)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "not gpu"]
                          + MODULES, cwd=HERE, env=env, capture_output=True, text=True, timeout=900)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "caffe-xent SIMD target: %s" % target in proc.stdout, tail
    assert proc.returncode == 0, tail
    assert int(re.search(r"(\d+) passed", proc.stdout).group(1)) > 500, tail

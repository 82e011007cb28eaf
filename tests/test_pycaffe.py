"""pycaffe from the custom build: imports, nets, solvers."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import caffe

from conftest import GPU_AVAILABLE


def test_import_caffe_needs_no_scikit_image():
    # caffe/io.py used to import scikit-image at import time (patch 003).
    code = ("import sys; sys.modules['skimage'] = None; sys.modules['scipy'] = None\n"
            "import caffe, caffe_xent; print(len(caffe.layer_type_list()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 40


def test_upstream_layers_are_registered():
    types = set(caffe.layer_type_list())
    assert {"Convolution", "InnerProduct", "SoftmaxWithLoss", "SigmoidCrossEntropyLoss",
            "HDF5Data", "Python"} <= types


NET = textwrap.dedent("""
    name: "tiny"
    layer { name: "data" type: "Input" top: "x" top: "y"
            input_param { shape { dim: 8 dim: 5 } shape { dim: 8 dim: 1 } } }
    layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
            inner_product_param { num_output: 1 weight_filler { type: "gaussian" std: 0.1 } } }
    layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" }
""")


def test_net_forward_backward_and_solver_step(tmp_path):
    caffe.set_mode_cpu()
    net_file = tmp_path / "net.prototxt"
    net_file.write_text(NET)
    solver_file = tmp_path / "solver.prototxt"
    solver_file.write_text('net: "%s"\nbase_lr: 0.1\nlr_policy: "fixed"\nmomentum: 0.0\n'
                           'max_iter: 100\ndisplay: 0\nsnapshot_after_train: false\n' % net_file)
    solver = caffe.SGDSolver(str(solver_file))
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 1))
    x = rng.standard_normal((8, 5)).astype(np.float32)
    solver.net.blobs["x"].data[...] = x
    solver.net.blobs["y"].data[...] = (x @ w).astype(np.float32)
    first = float(solver.net.forward()["loss"])
    for _ in range(50):
        solver.net.blobs["x"].data[...] = x
        solver.net.blobs["y"].data[...] = (x @ w).astype(np.float32)
        solver.step(1)
    last = float(solver.net.forward()["loss"])
    assert last < 0.1 * first


@pytest.mark.skipif(GPU_AVAILABLE, reason="a GPU is present: GPU mode is available there")
def test_gpu_mode_without_gpu_is_an_exception_and_python_survives():
    # Patch 006: without the check, the first CUDA call aborted the process.
    with pytest.raises(RuntimeError, match="GPU mode is not available"):
        caffe.set_mode_gpu()
    with pytest.raises(RuntimeError, match="GPU mode is not available"):
        caffe.set_device(0)
    caffe.set_mode_cpu()
    assert len(caffe.layer_type_list()) > 40  # still alive and usable

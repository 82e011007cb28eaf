"""pycaffe from the custom build: imports, nets, solvers."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import caffe

from conftest import GPU_AVAILABLE, requires_gpu


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


GPU_NET = textwrap.dedent("""
    name: "both_losses"
    force_backward: true
    layer { name: "data" type: "Input" top: "x" top: "t"
            input_param { shape { dim: 32 dim: 20 dim: 3 } shape { dim: 32 dim: 20 dim: 3 } } }
    layer { name: "split" type: "Split" bottom: "x" top: "x1" top: "x2" }
    layer { name: "sigmoid" type: "SigmoidCrossEntropyLoss" bottom: "x1" bottom: "t"
            top: "sigmoid_loss" sigmoid_cross_entropy_loss_param { pos_weight: 2 focal_gamma: 1 } }
    layer { name: "softmax" type: "MultiLabelSoftmaxLoss" bottom: "x2" bottom: "t"
            top: "softmax_loss" multi_label_softmax_loss_param { label_smoothing: 0.1 } }
""")


@requires_gpu
def test_net_with_both_losses_agrees_on_cpu_and_gpu(tmp_path):
    # The layers inside a Net switch between Forward_cpu and Forward_gpu by
    # Caffe's mode; the data move between host and device through SyncedMemory.
    path = tmp_path / "net.prototxt"
    path.write_text(GPU_NET)
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((32, 20, 3)) * 3).astype(np.float32)
    t = (rng.random((32, 20, 3)) < 0.2).astype(np.float32)
    results = {}
    for mode in ("cpu", "gpu"):
        caffe.set_mode_gpu() if mode == "gpu" else caffe.set_mode_cpu()
        net = caffe.Net(str(path), caffe.TRAIN)
        net.blobs["x"].data[...] = x
        net.blobs["t"].data[...] = t
        out = net.forward()
        net.backward()
        results[mode] = ({k: float(v) for k, v in out.items()}, net.blobs["x"].diff.copy())
    caffe.set_mode_cpu()
    (cpu_loss, cpu_dx), (gpu_loss, gpu_dx) = results["cpu"], results["gpu"]
    for name in ("sigmoid_loss", "softmax_loss"):
        assert gpu_loss[name] == pytest.approx(cpu_loss[name], rel=1e-6)
    assert np.abs(cpu_dx).max() > 0
    np.testing.assert_allclose(gpu_dx, cpu_dx, rtol=1e-5, atol=1e-6 * np.abs(cpu_dx).max())


def test_cpu_work_logs_no_cuda_handle_errors():
    # Patch 007: a CUDA build on a machine without a GPU logged cuBLAS and
    # cuRAND errors on every start and every solver seed; with a GPU the
    # handles are created and nothing is logged either.
    code = ("import caffe; caffe.set_mode_cpu(); caffe.set_random_seed(1); "
            "print(len(caffe.layer_type_list()))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLOG_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 40
    for message in ("Cublas", "Curand", "cuBLAS", "cuRAND"):
        assert message not in out.stderr, out.stderr

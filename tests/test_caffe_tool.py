"""The custom `caffe` command installed into the environment."""
import os
import subprocess
import sys

import pytest

from conftest import GPU_AVAILABLE

CAFFE = os.path.join(os.path.dirname(sys.executable), "caffe")


def run(*args, **kw):
    return subprocess.run([CAFFE, *args], capture_output=True, text=True, timeout=120, **kw)


def test_tool_is_installed_next_to_python():
    assert os.access(CAFFE, os.X_OK)


def test_usage_is_printed_without_a_command():
    out = run()
    assert out.returncode == 1
    assert "usage: caffe <command> <args>" in out.stderr + out.stdout


@pytest.mark.skipif(GPU_AVAILABLE, reason="a GPU is present: device_query succeeds there")
def test_device_query_without_gpu_is_a_message_not_a_crash():
    out = run("device_query")
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])  # not a signal
    assert "device_query:" in out.stderr
    assert ("no CUDA-capable GPU" in out.stderr) or ("built without CUDA" in out.stderr)


def write_tiny_net(tmp_path):
    (tmp_path / "net.prototxt").write_text("""
        layer { name: "data" type: "DummyData" top: "x" top: "y"
                dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 1 }
                                   data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }
        layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
                inner_product_param { num_output: 1 weight_filler { type: "xavier" } } }
        layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" }
    """)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 5\n'
        'display: 1\nsnapshot_after_train: false\nsolver_mode: CPU\n')


def test_train_a_tiny_net(tmp_path):
    write_tiny_net(tmp_path)
    out = run("train", "--solver=solver.prototxt", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Optimization Done." in out.stderr


@pytest.mark.skipif(GPU_AVAILABLE, reason="a GPU is present: --gpu 0 is valid there")
def test_train_on_a_missing_gpu_is_a_message_not_a_crash(tmp_path):
    write_tiny_net(tmp_path)
    out = run("train", "--solver=solver.prototxt", "--gpu=0", cwd=tmp_path)
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])  # exit 1, not SIGABRT
    assert "caffe: error: --gpu" in out.stderr

"""The caffe-xent command: class-weights from an HDF5 label file."""
import os
import subprocess
import sys

import numpy as np
import pytest

import caffe_xent

h5py = pytest.importorskip("h5py")


def run(*args, cwd=None):
    # The module form runs the same main() as the installed caffe-xent script.
    return subprocess.run([sys.executable, "-m", "caffe_xent.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def values(stdout, field):
    lines = [line for line in stdout.splitlines() if not line.startswith("#")]
    assert all(line.startswith(field + ": ") for line in lines), stdout
    return np.array([float(line.split(": ")[1]) for line in lines])


@pytest.fixture
def labels_file(tmp_path):
    multi_hot = np.zeros((40, 3), dtype=np.float32)
    multi_hot[:4, 0] = 1   # 4 positives
    multi_hot[:10, 1] = 1  # 10
    multi_hot[:30, 2] = 1  # 30
    indices = np.repeat(np.arange(4), [1000, 2300, 20310, 6700]).astype(np.float32)[:, None]
    path = tmp_path / "train.h5"
    with h5py.File(path, "w") as handle:
        handle["label"] = multi_hot
        handle["class"] = indices
        handle.create_group("group")
    return path, multi_hot


def test_recall_lines_from_multi_hot(labels_file):
    path, multi_hot = labels_file
    out = run("class-weights", str(path), "--dataset", "label")
    assert out.returncode == 0, out.stderr
    expected = caffe_xent.class_weights(multi_hot.sum(axis=0))
    np.testing.assert_allclose(values(out.stdout, "class_weight"), expected, rtol=1e-5)  # %.6g


def test_precision_lines_from_class_indices_match_the_worked_example(labels_file):
    path, _ = labels_file
    out = run("class-weights", str(path), "--dataset", "class", "--recipe", "precision")
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(values(out.stdout, "class_weight"),
                               caffe_xent.class_weights([1000, 2300, 20310, 6700], recipe="precision"),
                               rtol=1e-5)


def test_ratio_prints_pos_weight(labels_file):
    path, _ = labels_file
    out = run("class-weights", str(path), "--dataset", "label", "--recipe", "ratio")
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(values(out.stdout, "pos_weight"), [36 / 4, 30 / 10, 10 / 30], rtol=1e-5)


def test_inv_freq_lines_by_hand(labels_file):
    path, _ = labels_file
    out = run("class-weights", str(path), "--recipe", "inv_freq")
    assert out.returncode == 0, out.stderr
    # Counts 4, 10, 30: 1/4 : 1/10 : 1/30 = 15 : 6 : 2, scaled to mean 1.
    np.testing.assert_allclose(values(out.stdout, "class_weight"), [45 / 23, 18 / 23, 6 / 23], rtol=1e-5)
    assert out.stdout.startswith("# class_weight from %s:label, shape 40x3 (recipe inv_freq, 3 classes)"
                                 % path)


def test_effective_num_with_power_beta_and_cap(labels_file):
    path, multi_hot = labels_file
    args = ["--recipe", "effective_num", "--beta", "0.9", "--power", "0.5", "--cap", "1.2"]
    out = run("class-weights", str(path), *args)
    assert out.returncode == 0, out.stderr
    expected = caffe_xent.class_weights(multi_hot.sum(axis=0), recipe="effective_num", beta=0.9,
                                        power=0.5, cap=1.2)
    np.testing.assert_allclose(values(out.stdout, "class_weight"), expected, rtol=1e-5)
    assert values(out.stdout, "class_weight").max() == pytest.approx(1.2)  # the cap is reached
    assert "(recipe effective_num, power 0.5, beta 0.9, cap 1.2, 3 classes)" in out.stdout


def test_ratio_with_power_and_cap(labels_file):
    path, _ = labels_file
    out = run("class-weights", str(path), "--recipe", "ratio", "--power", "0.5", "--cap", "2")
    assert out.returncode == 0, out.stderr
    # (36/4, 30/10, 10/30) ** 0.5 = 3, 1.732, 0.577; capped at 2.
    np.testing.assert_allclose(values(out.stdout, "pos_weight"), [2, np.sqrt(3), np.sqrt(1 / 3)], rtol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--recipe", "effective_num", "--beta", "1"], "beta must be in [0, 1), got 1.0"),
    (["--recipe", "ratio", "--beta", "0.9"], "recipe ratio takes no beta"),
    (["--recipe", "recall", "--power", "2"], "recipe 'recall' takes no power"),
    (["--recipe", "inv_freq", "--power", "-1"], "power must be finite and >= 0"),
    (["--recipe", "ratio", "--cap", "0"], "cap must be > 0"),
])
def test_bad_method_parameters_exit_2(labels_file, args, message):
    path, _ = labels_file
    out = run("class-weights", str(path), *args)
    assert out.returncode == 2, out.stdout
    assert message in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""


def test_the_lines_parse_as_a_layer_parameter(labels_file):
    caffe_pb2 = pytest.importorskip("caffe.proto.caffe_pb2")
    from google.protobuf import text_format
    path, _ = labels_file
    out = run("class-weights", str(path), "--recipe", "ratio")
    param = text_format.Parse(out.stdout, caffe_pb2.SigmoidCrossEntropyLossParameter())
    assert len(param.pos_weight) == 3


@pytest.mark.parametrize("args, message", [
    (["missing.h5"], "no such file: missing.h5"),
    (["train.h5", "--dataset", "nope"], "has no dataset 'nope'; datasets: class, label"),
    (["train.h5", "--dataset", "group"], "is a group, not a dataset"),
    (["not_hdf5.h5"], "cannot read not_hdf5.h5 as HDF5"),
])
def test_missing_file_or_dataset_exits_2_with_a_message(labels_file, args, message):
    path, _ = labels_file
    (path.parent / "not_hdf5.h5").write_text("plain text")
    out = run("class-weights", *args, cwd=path.parent)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""


def test_bad_labels_exit_2(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as handle:
        handle["label"] = np.array([[0.0, -3.0]], dtype=np.float32)
    out = run("class-weights", str(path), "--recipe", "ratio")
    assert out.returncode == 2 and "labels must be in [0, 1]" in out.stderr


def test_bad_arguments_exit_2():
    assert run().returncode == 2
    assert run("class-weights", "x.h5", "--recipe", "bogus").returncode == 2


def test_main_returns_the_exit_code(labels_file, capsys):
    from caffe_xent import cli
    path, _ = labels_file
    assert cli.main(["class-weights", str(path)]) == 0
    assert cli.main(["class-weights", str(path.parent / "missing.h5")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_the_installed_script(labels_file, tmp_path):
    path, _ = labels_file
    script = os.path.join(os.path.dirname(sys.executable), "caffe-xent")
    assert os.access(script, os.X_OK), "make build installs the caffe-xent command next to python"
    ok = subprocess.run([script, "class-weights", str(path), "--dataset", "class"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "class_weight: " in ok.stdout
    missing = subprocess.run([script, "class-weights", str(tmp_path / "none.h5"), "--dataset", "label"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert "none.h5" in missing.stderr and "Traceback" not in missing.stderr

"""The multi-label digits demo (examples/multilabel_digits): its parts, then
the whole pipeline end to end on a few iterations of a small data set."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples", "multilabel_digits")
RUN_DEMO = os.path.join(DEMO_DIR, "run_demo.py")
sys.path.insert(0, DEMO_DIR)

import digits_data  # noqa: E402
import metrics  # noqa: E402

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the demo's data source")


def random_scores(rng, ties):
    labels = (rng.random((150, 10)) < 0.2).astype(np.float64)
    scores = rng.random((150, 10)) + 0.6 * labels * rng.random()
    # rounding makes many ties, the case where a sort order could leak into AP
    return (np.round(scores, 1) if ties else scores), labels


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "tied"])
def test_map_and_f1_equal_scikit_learn(rng, ties):
    for _ in range(20):
        scores, labels = random_scores(rng, ties)
        expected_map = np.mean([sklearn_metrics.average_precision_score(labels[:, c], scores[:, c])
                                for c in range(10)])
        assert metrics.mean_average_precision(scores, labels) == pytest.approx(expected_map, rel=1e-12)
        precision, recall, _ = sklearn_metrics.precision_recall_curve(labels.ravel(), scores.ravel())
        with np.errstate(invalid="ignore"):
            expected_f1 = np.nanmax(2 * precision * recall / (precision + recall))
        f1, threshold = metrics.best_f1(scores, labels)
        assert f1 == pytest.approx(expected_f1, rel=1e-12)
        predicted = scores.ravel() >= threshold
        assert sklearn_metrics.f1_score(labels.ravel(), predicted) == pytest.approx(f1, rel=1e-12)


def test_precision_at_m_by_hand():
    labels = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 0]], np.float64)
    scores = np.array([[0.9, 0.8, 0.1, 0.2],   # top 2: classes 0, 1 -> 1 of 2
                       [0.1, 0.7, 0.3, 0.2],   # top 1: class 1     -> 1 of 1
                       [0.5, 0.6, 0.1, 0.9]])  # top 3: 3, 1, 0     -> 2 of 3
    assert metrics.precision_at_m(scores, labels) == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert metrics.precision_at_m(labels, labels) == 1.0


def test_average_precision_without_positives_is_nan():
    assert np.isnan(metrics.average_precision([0.3, 0.2], [0, 0]))


def test_data_is_seeded_disjoint_and_in_caffe_format(tmp_path):
    import h5py
    first = digits_data.make_dataset(str(tmp_path / "a"), 300, 120, seed=7)
    again = digits_data.make_dataset(str(tmp_path / "b"), 300, 120, seed=7)
    assert not set(first["train_sources"]) & set(first["test_sources"])
    for split, count in (("train", 300), ("test", 120)):
        data, label = first[split]
        np.testing.assert_array_equal(data, again[split][0])
        np.testing.assert_array_equal(label, again[split][1])
        assert data.shape == (count, 1, digits_data.SIDE, digits_data.SIDE) and data.dtype == np.float32
        assert label.shape == (count, digits_data.NUM_CLASSES) and label.dtype == np.float32
        assert data.min() >= 0 and data.max() <= 1
        assert set(np.unique(label)) <= {0.0, 1.0}
        positives = label.sum(axis=1)
        assert positives.min() >= 1 and positives.max() <= digits_data.MAX_DIGITS
        # an image never shows more digits than it has non-blank slots
        slots = data.reshape(count, digits_data.GRID, digits_data.SLOT, digits_data.GRID, digits_data.SLOT)
        inked_slots = (slots.max(axis=(2, 4)) > 0).sum(axis=(1, 2))
        assert np.all(positives <= inked_slots) and inked_slots.max() <= digits_data.MAX_DIGITS
        with open(tmp_path / "a" / f"{split}.txt") as f:
            (h5_path,) = f.read().split()
        with h5py.File(h5_path) as f:
            np.testing.assert_array_equal(f["data"][...], data)
            np.testing.assert_array_equal(f["label"][...], label)


def test_the_nets_differ_only_in_the_loss():
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2

    def layers(name):
        net = caffe_pb2.NetParameter()
        with open(os.path.join(DEMO_DIR, name)) as f:
            text_format.Merge(f.read(), net)
        return list(net.layer)

    sigmoid, softmax, python = (layers(f"net_{n}.prototxt") for n in ("sigmoid", "softmax", "sigmoid_python"))
    assert sigmoid[:-1] == softmax[:-1] == python[:-1]
    assert [net[-1].type for net in (sigmoid, softmax, python)] == \
        ["SigmoidCrossEntropyLoss", "MultiLabelSoftmaxLoss", "Python"]


def test_without_caffe_the_demo_exits_2_with_a_message(tmp_path):
    # caffe made unimportable in a fresh interpreter, then the script run as __main__
    code = ("import runpy, sys; sys.modules['caffe'] = None; "
            f"sys.argv = [{RUN_DEMO!r}, '--out', {str(tmp_path)!r}]; "
            f"runpy.run_path({RUN_DEMO!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "caffe is not importable" in result.stderr and "make build" in result.stderr
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out = tmp_path / "results"
    command = [sys.executable, RUN_DEMO, "--iters", "30", "--speed-iters", "10",
               "--train-size", "200", "--test-size", "100", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mAP" in result.stdout and "iter/s" in result.stdout

    with open(out / "metrics.json") as f:
        summary = json.load(f)
    assert set(summary["losses"]) == {"sigmoid", "softmax"}
    assert 0 < summary["chance_mAP"] < 1
    for name, trained in summary["losses"].items():
        final = trained["final"]
        for key in ("mAP", "F1", "P@M"):
            assert 0 <= final[key] <= 1, (name, key, final[key])
        assert trained["train_seconds"] > 0 and trained["iters_per_s"] > 0
        curve = trained["curve"]
        assert curve["snapshot_iteration"][-1] == 30
        assert len(curve["test_mAP"]) == len(curve["snapshot_iteration"]) >= 2
        assert all(np.isfinite(curve["train_loss"])) and curve["train_iteration"][-1] == 30

    speed = summary["speed"]
    assert speed["native_iters_per_s"] > 0
    # three alternating rounds by default; the figure is their median
    assert len(speed["native_runs"]) == speed["rounds"] == 3
    assert speed["native_iters_per_s"] == sorted(speed["native_runs"])[1]
    # the Python-layer row runs, or says why not: never silently absent
    if speed["python_iters_per_s"] is None:
        assert speed["python_skipped"] and "skipped" in result.stdout
    else:
        assert speed["python_iters_per_s"] == sorted(speed["python_runs"])[1] > 0
        assert "alternating which goes first" in result.stdout

    with open(out / "training.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

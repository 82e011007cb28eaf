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
import loss_table  # noqa: E402
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


def test_metrics_by_hand():
    # one class ranked 1, 0, 1, 0: AP = (1/1 + 2/3) / 2
    assert metrics.average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # a tie between a positive and a negative at the top counts as one threshold: 1/2
    assert metrics.average_precision([0.5, 0.5, 0.1], [1, 0, 0]) == pytest.approx(0.5)
    # F1 over the top k: k=1 2/3, k=2 1/2, k=3 4/5, k=4 2/3 -> 0.8 at the threshold 0.7
    assert metrics.best_f1(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == \
        pytest.approx((0.8, 0.7))
    scores = np.array([[0.9, 0.1, 0.5],
                       [0.2, 0.8, 0.6],
                       [0.3, 0.4, 0.1]])
    labels = np.array([[1, 0, 1],
                       [1, 0, 0],
                       [0, 0, 0]])   # a row without positives counts in no per-sample AP
    # per sample: row 0 ranks 0, 2 first -> 1; row 1 has its positive third -> 1/3
    assert metrics.sample_average_precision(scores, labels) == pytest.approx((1 + 1 / 3) / 2)
    # per class: class 0 ranked 1st and 3rd of 3 -> (1 + 2/3)/2; class 1 has no positive
    # (left out); class 2 ranked 2nd -> 1/2
    assert metrics.mean_average_precision(scores, labels) == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    result = metrics.evaluate(scores, labels, tail=[2])
    assert result["tail_mAP"] == pytest.approx(0.5)
    assert result["sample_mAP"] == pytest.approx((1 + 1 / 3) / 2)
    # P@M: row 0 top 2 = {0, 2} -> 1; row 1 top 1 = {1} -> 0
    assert result["P@M"] == pytest.approx(0.5)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "tied"])
def test_sample_map_equals_scikit_learn(rng, ties):
    for _ in range(20):
        scores, labels = random_scores(rng, ties)
        labels[np.arange(len(labels)), rng.integers(0, 10, len(labels))] = 1  # a positive per row
        expected = sklearn_metrics.label_ranking_average_precision_score(labels, scores)
        assert metrics.sample_average_precision(scores, labels) == pytest.approx(expected, rel=1e-12)


def test_class_scores_per_kind():
    score = np.array([[0.0, 2.0, -3.0], [800.0, -800.0, 1.0]], np.float32)
    sigmoid = loss_table.class_scores(score, "sigmoid")
    np.testing.assert_allclose(sigmoid[0], 1 / (1 + np.exp(-score[0].astype(np.float64))), rtol=1e-14)
    assert sigmoid[1, 0] == 1.0 and sigmoid[1, 1] == 0.0  # no overflow warning, the limits
    softmax = loss_table.class_scores(score, "softmax")
    np.testing.assert_allclose(softmax.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(softmax[0], np.exp(score[0]) / np.exp(score[0]).sum(), rtol=1e-6)
    np.testing.assert_array_equal(loss_table.class_scores(score, "raw"), score)
    with pytest.raises(ValueError, match="unknown score kind"):
        loss_table.class_scores(score, "tanh")


def test_combine_seeds_by_hand():
    import run_demo

    def run(m, seconds):
        final = {key: m for key in run_demo.METRIC_KEYS}
        return {"final": final, "train_seconds": seconds, "iters_per_s": seconds, "curve": {"seed": m}}
    combined = run_demo.combine_seeds([{"bce": run(0.5, 1.0)}, {"bce": run(0.8, 2.0)},
                                       {"bce": run(0.6, 4.0)}])["bce"]
    assert combined["final"]["mAP"] == pytest.approx((0.5 + 0.8 + 0.6) / 3)
    assert combined["final_range"]["P@M"] == [0.5, 0.8]
    assert [f["F1"] for f in combined["final_per_seed"]] == [0.5, 0.8, 0.6]
    assert combined["train_seconds"] == 7.0 and combined["iters_per_s"] == 2.0
    assert combined["curve"] == {"seed": 0.5}  # the first seed's curves
    one = run(0.7, 3.0)
    one["final"]["F1_threshold"] = 0.25
    assert run_demo.combine_seeds([{"bce": one}])["bce"]["final"] == one["final"]  # kept whole


def canvas_slots(data):
    """(N, GRID, GRID, SLOT, SLOT): the slot images of each canvas."""
    grid, slot = digits_data.GRID, digits_data.SLOT
    return data.reshape(len(data), grid, slot, grid, slot).transpose(0, 1, 3, 2, 4)


def test_data_is_seeded_disjoint_and_in_caffe_format(tmp_path):
    import h5py
    first = digits_data.make_dataset(str(tmp_path / "a"), 400, 300, seed=7)
    again = digits_data.make_dataset(str(tmp_path / "b"), 400, 300, seed=7)
    assert not set(first["train_sources"]) & set(first["test_sources"])
    images, classes = digits_data.load_source_digits()
    np.testing.assert_array_equal(first["train_complete"], again["train_complete"])
    for split, count in (("train", 400), ("test", 300)):
        data, label = first[split]
        np.testing.assert_array_equal(data, again[split][0])
        np.testing.assert_array_equal(label, again[split][1])
        assert data.shape == (count, 1, digits_data.SIDE, digits_data.SIDE) and data.dtype == np.float32
        assert label.shape == (count, digits_data.NUM_CLASSES) and label.dtype == np.float32
        assert data.min() >= 0 and data.max() <= 1
        assert set(np.unique(label)) <= {0.0, 1.0}
        # every filled slot is one source image of this split; the complete
        # label is exactly the set of (digit, row) shown
        sources = first[f"{split}_sources"]
        digit_of = {images[s].tobytes(): classes[s] for s in sources}
        complete = first["train_complete"] if split == "train" else label
        for n, slots in enumerate(canvas_slots(data[:, 0])):
            shown = set()
            filled = 0
            for row in range(digits_data.GRID):
                for col in range(digits_data.GRID):
                    if slots[row, col].max() > 0:
                        filled += 1
                        shown.add(digits_data.class_index(digit_of[slots[row, col].tobytes()], row))
            assert digits_data.MIN_DIGITS <= filled <= digits_data.MAX_DIGITS
            assert set(np.flatnonzero(complete[n])) == shown
        with open(tmp_path / "a" / f"{split}.txt") as f:
            (h5_path,) = f.read().split()
        with h5py.File(h5_path) as f:
            np.testing.assert_array_equal(f["data"][...], data)
            np.testing.assert_array_equal(f["label"][...], label)


def test_training_labels_miss_a_fraction_of_the_positives_test_labels_none(tmp_path):
    dataset = digits_data.make_dataset(str(tmp_path), 500, 10, seed=3, missing_fraction=0.3)
    observed, complete = dataset["train"][1], dataset["train_complete"]
    assert np.all(observed <= complete)  # only positives are dropped, never a negative turned on
    assert complete.sum() - observed.sum() == round(0.3 * complete.sum())
    none_missing = digits_data.make_dataset(str(tmp_path / "c"), 500, 10, seed=3, missing_fraction=0)
    np.testing.assert_array_equal(none_missing["train"][1], none_missing["train_complete"])
    with pytest.raises(ValueError, match="missing_fraction"):
        digits_data.make_dataset(str(tmp_path / "d"), 5, 5, seed=3, missing_fraction=1.0)


def test_class_frequencies_are_long_tailed(tmp_path):
    probabilities = digits_data.digit_probabilities()
    assert probabilities.sum() == pytest.approx(1.0) and np.all(np.diff(probabilities) < 0)
    assert probabilities[0] / probabilities[-1] == pytest.approx(10 ** digits_data.ZIPF_EXPONENT)
    label = digits_data.make_dataset(str(tmp_path), 3000, 10, seed=5)["train_complete"]
    per_digit = digits_data.class_frequencies(label).reshape(digits_data.GRID, digits_data.NUM_DIGITS)
    # the commonest digit's classes are over ten times as frequent as the rarest's
    assert per_digit[:, 0].min() > 10 * per_digit[:, -1].max()
    assert label.sum(axis=1).mean() > 3  # several labels per image


def test_the_nets_differ_only_in_the_loss():
    import caffe
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    template = loss_table.template(caffe_pb2)
    assert template.layer[-1] == loss_table.loss_layer(caffe_pb2, loss_table.BY_NAME["bce"])
    (score,) = [layer for layer in template.layer if layer.name == "score"]
    assert score.inner_product_param.num_output == digits_data.NUM_CLASSES
    made = 0
    for loss in loss_table.LOSSES + [loss_table.PYTHON_SIGMOID]:
        try:
            net = loss_table.net_for(caffe_pb2, loss)
        except text_format.ParseError:
            # options this caffe.proto lacks: reported, never trained
            assert loss_table.unavailable(caffe, caffe_pb2, loss).startswith("not in this build")
            continue
        made += 1
        assert list(net.layer)[:-1] == list(template.layer)[:-1]
        assert net.layer[-1].name == "loss" and list(net.layer[-1].bottom) == ["score", "label"]
        assert net.layer[-1].type == loss.layer.split('"')[1]
        registered = net.layer[-1].type in caffe.layer_type_list()
        assert (loss_table.unavailable(caffe, caffe_pb2, loss) is None) == registered
    assert made >= 4  # bce, focal, softmax and the Python layer exist in every build
    missing = loss_table.Loss("nope", "a loss no build has", 'type: "NoSuchLossLayer"', "raw")
    assert "NoSuchLossLayer" in loss_table.unavailable(caffe, caffe_pb2, missing)


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
    import caffe
    import h5py
    from caffe.proto import caffe_pb2

    out = tmp_path / "results"
    command = [sys.executable, RUN_DEMO, "--iters", "20", "--speed-iters", "10",
               "--train-size", "200", "--test-size", "100", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mAP/class" in result.stdout and "iter/s" in result.stdout

    with open(out / "metrics.json") as f:
        summary = json.load(f)
    # every entry of the table is trained or reported as not in this build
    expected_skipped = {loss.name for loss in loss_table.LOSSES
                        if loss_table.unavailable(caffe, caffe_pb2, loss) is not None}
    assert set(summary["skipped"]) == expected_skipped
    assert set(summary["losses"]) == {loss.name for loss in loss_table.LOSSES} - expected_skipped
    assert {"bce", "focal", "softmax"} <= set(summary["losses"])
    for name in expected_skipped:
        assert f"{name:<8} skipped, not in this build" in result.stdout
    assert 0 < summary["chance_mAP"] < 1
    assert len(summary["data"]["tail_classes"]) == digits_data.NUM_CLASSES // 2
    for name, trained in summary["losses"].items():
        final = trained["final"]
        for key in ("mAP", "tail_mAP", "sample_mAP", "F1", "P@M"):
            assert 0 <= final[key] <= 1, (name, key, final[key])
        assert trained["train_seconds"] > 0 and trained["iters_per_s"] > 0
        curve = trained["curve"]
        assert curve["snapshot_iteration"][-1] == 20
        assert len(curve["test_mAP"]) == len(curve["snapshot_iteration"]) >= 2
        assert curve["train_iteration"][0] == 0 and curve["train_iteration"][-1] == 20
        assert all(np.isfinite(curve["train_loss"]))

    # the table's figures are those of the last snapshot on the test file
    with h5py.File(out / "data" / "test.h5") as f:
        data, labels = f["data"][...], f["label"][...]
    for name in ("bce", "softmax"):
        net = caffe.Net(str(out / f"deploy_{name}.prototxt"), caffe.TEST,
                        weights=str(out / "snapshots" / f"{name}_iter_20.caffemodel"))
        net.blobs["data"].data[...] = data
        scores = loss_table.class_scores(net.forward()["score"], loss_table.BY_NAME[name].scores)
        expected = metrics.evaluate(scores, labels, summary["data"]["tail_classes"])
        for key, value in expected.items():
            assert summary["losses"][name]["final"][key] == pytest.approx(value, rel=1e-12), (name, key)

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


def test_unknown_loss_name_is_refused(tmp_path):
    command = [sys.executable, RUN_DEMO, "--losses", "bce,hinge", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown hinge" in result.stderr


@pytest.mark.slow
def test_demo_with_two_seeds_reports_mean_and_range(tmp_path):
    out = tmp_path / "results"
    command = [sys.executable, RUN_DEMO, "--losses", "bce,softmax", "--seeds", "2", "--iters", "10",
               "--speed-iters", "5", "--speed-rounds", "1", "--train-size", "100",
               "--test-size", "100", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Seeds 1, 2: the mean of each metric" in result.stdout
    with open(out / "metrics.json") as f:
        summary = json.load(f)
    assert summary["config"]["seeds"] == [1, 2] and len(summary["data"]) == 2
    for name in ("bce", "softmax"):
        assert (out / "seed1" / "snapshots" / f"{name}_iter_10.caffemodel").exists()
        assert (out / "seed2" / "snapshots" / f"{name}_iter_10.caffemodel").exists()
        trained = summary["losses"][name]
        per_seed = [final["mAP"] for final in trained["final_per_seed"]]
        assert len(per_seed) == 2 and per_seed[0] != per_seed[1]  # other data, other weights
        assert trained["final"]["mAP"] == pytest.approx(np.mean(per_seed), rel=1e-12)
        assert trained["final_range"]["mAP"] == [min(per_seed), max(per_seed)]

"""caffe_xent.class_weights and caffe_xent.pos_weight."""
import importlib.metadata
import importlib.util
import os

import numpy as np
import pytest

import caffe_xent

# The class counts of the log-ratio recipe's usual worked example (class_weights' docstring).
WORKED_EXAMPLE_COUNTS = [1000, 2300, 20310, 6700]


def truncate(values, decimals):
    return np.floor(np.asarray(values) * 10 ** decimals) / 10 ** decimals


def test_recall_recipe_on_the_worked_example():
    weights = caffe_xent.class_weights(WORKED_EXAMPLE_COUNTS)
    # The recipe's worked example prints its values truncated: log(30310/2300) = 2.5786 appears as 2.57.
    np.testing.assert_array_equal(truncate(weights, 2), [3.41, 2.57, 1.00, 1.50])
    expected = np.maximum(np.log(sum(WORKED_EXAMPLE_COUNTS) / np.array(WORKED_EXAMPLE_COUNTS, float)), 1.0)
    np.testing.assert_allclose(weights, expected, rtol=4 * np.finfo(float).eps)
    assert weights.min() == 1.0


def test_precision_recipe_on_the_worked_example():
    weights = caffe_xent.class_weights(WORKED_EXAMPLE_COUNTS, recipe="precision")
    np.testing.assert_array_equal(truncate(weights, 3), [1.000, 0.755, 0.117, 0.442])
    logs = np.log(sum(WORKED_EXAMPLE_COUNTS) / np.array(WORKED_EXAMPLE_COUNTS, float))
    np.testing.assert_allclose(weights, logs / logs.max(), rtol=4 * np.finfo(float).eps)


@pytest.mark.parametrize("recipe", ["recall", "precision"])
def test_zero_count_gets_the_rarest_present_class_weight(recipe):
    weights = caffe_xent.class_weights([0, 10, 90, 0], recipe=recipe)
    assert np.all(np.isfinite(weights))
    present = caffe_xent.class_weights([10, 90], recipe=recipe)
    # The rarest present class keeps its weight; zero-count classes share it.
    assert weights[0] == weights[3] == present[0] == weights.max()


@pytest.mark.parametrize("recipe", ["recall", "precision"])
def test_single_present_class_gives_ones(recipe):
    np.testing.assert_array_equal(caffe_xent.class_weights([0, 5], recipe=recipe), [1.0, 1.0])


@pytest.mark.parametrize("counts, match", [
    ([3, -1, 2], "class 1 has -1"),
    ([0, 0, 0], "every count is 0"),
    ([], "non-empty 1-D"),
    ([[1, 2]], "non-empty 1-D"),
    ([1, np.nan], "finite"),
])
def test_bad_counts_are_refused(counts, match):
    with pytest.raises(ValueError, match=match):
        caffe_xent.class_weights(counts)


def test_unknown_recipe_is_refused():
    with pytest.raises(ValueError, match="recipe must be one of"):
        caffe_xent.class_weights([1, 2], recipe="ratio")


def test_pos_weight_is_negatives_over_positives():
    # PyTorch's example: 100 positives and 300 negatives give pos_weight 3.
    labels = np.zeros((400, 2))
    labels[:100, 0] = 1
    labels[:200, 1] = 1
    np.testing.assert_array_equal(caffe_xent.pos_weight(labels), [3.0, 1.0])
    np.testing.assert_array_equal(caffe_xent.pos_weight(labels[:, 0]), [3.0])


def test_pos_weight_class_axis_soft_targets_and_ignore_label():
    labels = np.zeros((2, 3, 4, 4))
    labels[:, 1] = 0.25  # soft targets count fractionally: 0.25 positive, 0.75 negative
    labels[0, 2, 0, 0] = 1
    labels[1, 2] = -1    # ignored
    weights = caffe_xent.pos_weight(labels, axis=1, ignore_label=-1)
    np.testing.assert_allclose(weights, [1.0, 3.0, 15.0], rtol=1e-15)


def test_pos_weight_without_positives_or_negatives_is_neutral():
    labels = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(caffe_xent.pos_weight(labels), [1.0, 1.0, 1.0])


@pytest.mark.parametrize("labels, kwargs, match", [
    (np.array([[0.0, 2.0]]), {}, r"in \[0, 1\]"),
    (np.array([[0.0, np.nan]]), {}, r"in \[0, 1\]"),
    (np.zeros((0, 2)), {}, "empty"),
    (np.zeros((2, 2)), {"axis": 2}, "out of range"),
])
def test_pos_weight_refuses_bad_labels(labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        caffe_xent.pos_weight(labels, **kwargs)


# ---- inverse frequency, effective number of samples, power and cap ----------------
# Hand-derived values; the formulas are in class_weights' docstring (Cui et
# al., CVPR 2019, for the effective number; timm's loss factory for the
# method set and the scaling to mean 1 before the cap).

def test_inv_freq_by_hand():
    # 1/10 : 1/40 = 4 : 1, scaled to mean 1.
    np.testing.assert_allclose(caffe_xent.class_weights([10, 40], recipe="inv_freq"), [1.6, 0.4],
                               rtol=4 * np.finfo(float).eps)
    # power 0.5: sqrt(4) : 1 = 2 : 1.
    np.testing.assert_allclose(caffe_xent.class_weights([10, 40], recipe="inv_freq", power=0.5),
                               [4 / 3, 2 / 3], rtol=4 * np.finfo(float).eps)
    # 1/4 : 1/10 : 1/30 = 15 : 6 : 2 (of 60), mean 23/180.
    np.testing.assert_allclose(caffe_xent.class_weights([4, 10, 30], recipe="inv_freq"),
                               [45 / 23, 18 / 23, 6 / 23], rtol=4 * np.finfo(float).eps)


def test_effective_num_by_hand():
    # beta 1/2: E_n = (1 - 2^-n) / (1/2) = 1, 3/2, 7/4; weights 1/E_n = 1, 2/3, 4/7
    # (sum 47/21), scaled to mean 1: 63/47, 42/47, 36/47.
    np.testing.assert_allclose(caffe_xent.class_weights([1, 2, 3], recipe="effective_num", beta=0.5),
                               [63 / 47, 42 / 47, 36 / 47], rtol=4 * np.finfo(float).eps)
    # power 2 squares the ratios before the scaling: 1 : 4/9 -> 18/13, 8/13.
    np.testing.assert_allclose(caffe_xent.class_weights([1, 2], recipe="effective_num", beta=0.5,
                                                        power=2), [18 / 13, 8 / 13],
                               rtol=4 * np.finfo(float).eps)


def test_effective_num_limits():
    counts = np.array([1.0, 2.0, 4.0, 1000.0])
    # beta = 0: every effective number is 1, no re-weighting.
    np.testing.assert_array_equal(caffe_xent.class_weights(counts, recipe="effective_num", beta=0.0),
                                  np.ones(4))
    # beta -> 1: E_n = n (1 - (n-1)(1-beta)/2 + ...) -> n, inverse frequency:
    # at 1 - beta = 1e-12 within 999/2 * 1e-12 = 5e-10 relative of it.
    near_one = 1 - 1e-12
    weights = caffe_xent.class_weights(counts, recipe="effective_num", beta=near_one)
    np.testing.assert_allclose(weights, caffe_xent.class_weights(counts, recipe="inv_freq"), rtol=1e-9)
    # ... and to a few ulp of the exact values (for this float beta): 1 - beta^n
    # taken directly would be off by up to 5e-10 relative here (beta^n rounded
    # to 2^-53 absolute, against 1 - beta^n of about n 1e-12).
    import mpmath  # a test dependency
    mpmath.mp.dps = 40
    beta = mpmath.mpf(near_one)
    exact = [(1 - beta) / (1 - beta ** mpmath.mpf(n)) for n in counts]
    mean = sum(exact) / len(exact)
    np.testing.assert_allclose(weights, [float(e / mean) for e in exact], rtol=16 * np.finfo(float).eps)
    # In between: the rarest class's weight over the commonest's lies
    # between 1 (beta 0) and the inverse frequency ratio (beta -> 1), rising with beta.
    ratios = [np.divide(*caffe_xent.class_weights([1, 1000], recipe="effective_num", beta=b))
              for b in (0.9, 0.99, 0.999, 0.9999)]
    assert 1 < ratios[0] < ratios[1] < ratios[2] < ratios[3] < 1000


def test_effective_num_default_beta_is_0999():
    counts = [3, 30, 300]
    np.testing.assert_array_equal(caffe_xent.class_weights(counts, recipe="effective_num"),
                                  caffe_xent.class_weights(counts, recipe="effective_num", beta=0.999))
    assert caffe_xent.weights.DEFAULT_BETA == 0.999


METHODS = [("inv_freq", {}), ("inv_freq", {"power": 0.5}), ("effective_num", {}),
           ("effective_num", {"beta": 0.99, "power": 1.5})]


@pytest.mark.parametrize("recipe, kwargs", METHODS)
def test_weights_fall_as_counts_rise_and_average_one(recipe, kwargs):
    counts = np.random.default_rng(7).integers(1, 100000, size=50).astype(float)
    weights = caffe_xent.class_weights(counts, recipe=recipe, **kwargs)
    order = np.argsort(counts)
    assert np.all(np.diff(weights[order]) <= 0)
    assert weights.mean() == pytest.approx(1.0, rel=1e-14)
    assert np.all(weights > 0)


@pytest.mark.parametrize("recipe, kwargs", METHODS + [("recall", {}), ("precision", {})])
def test_cap_is_respected_and_changes_nothing_below_it(recipe, kwargs):
    counts = [5, 50, 500, 5000]
    free = caffe_xent.class_weights(counts, recipe=recipe, **kwargs)
    cap = float(np.median(free))
    capped = caffe_xent.class_weights(counts, recipe=recipe, cap=cap, **kwargs)
    assert capped.max() == cap
    np.testing.assert_array_equal(capped[free <= cap], free[free <= cap])


@pytest.mark.parametrize("recipe", ["inv_freq", "effective_num"])
def test_power_zero_gives_all_ones(recipe):
    np.testing.assert_array_equal(caffe_xent.class_weights([1, 10, 100], recipe=recipe, power=0),
                                  np.ones(3))


def test_inv_freq_ignores_the_scale_of_the_counts():
    counts = np.array([3.0, 7.0, 11.0])
    np.testing.assert_allclose(caffe_xent.class_weights(counts, recipe="inv_freq"),
                               caffe_xent.class_weights(counts / 21, recipe="inv_freq"), rtol=1e-15)


@pytest.mark.parametrize("recipe", ["inv_freq", "effective_num"])
def test_new_recipes_give_a_zero_count_the_rarest_present_class_weight(recipe):
    weights = caffe_xent.class_weights([0, 10, 90, 0], recipe=recipe)
    assert np.all(np.isfinite(weights))
    assert weights[0] == weights[3] == weights[1] == weights.max()


@pytest.mark.parametrize("recipe", ["inv_freq", "effective_num"])
@pytest.mark.parametrize("counts, match", [
    ([3, -1, 2], "class 1 has -1"),
    ([0, 0, 0], "every count is 0"),
    ([], "non-empty 1-D"),
    ([1, np.inf], "finite"),
])
def test_new_recipes_refuse_bad_counts(recipe, counts, match):
    with pytest.raises(ValueError, match=match):
        caffe_xent.class_weights(counts, recipe=recipe)


@pytest.mark.parametrize("kwargs, match", [
    ({"recipe": "effective_num", "beta": 1.0}, r"beta must be in \[0, 1\), got 1.0"),
    ({"recipe": "effective_num", "beta": -0.1}, r"beta must be in \[0, 1\)"),
    ({"recipe": "effective_num", "beta": float("nan")}, r"beta must be in \[0, 1\)"),
    ({"recipe": "inv_freq", "power": -1}, "power must be finite and >= 0"),
    ({"recipe": "effective_num", "power": float("inf")}, "power must be finite and >= 0"),
    ({"recipe": "inv_freq", "cap": 0}, "cap must be > 0"),
    ({"recipe": "recall", "cap": float("nan")}, "cap must be > 0"),
    ({"recipe": "recall", "power": 0.5}, "recipe 'recall' takes no power"),
    ({"recipe": "inv_freq", "beta": 0.9}, "recipe 'inv_freq' takes no beta"),
])
def test_bad_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        caffe_xent.class_weights([1, 2, 3], **kwargs)


def test_pos_weight_power_and_cap():
    # 100 positives, 300 negatives: 3 ** power, capped.
    labels = np.zeros((400, 2))
    labels[:100, 0] = 1
    labels[:200, 1] = 1
    np.testing.assert_allclose(caffe_xent.pos_weight(labels, power=0.5), [np.sqrt(3), 1.0], rtol=1e-15)
    np.testing.assert_array_equal(caffe_xent.pos_weight(labels, power=0), [1.0, 1.0])
    np.testing.assert_array_equal(caffe_xent.pos_weight(labels, cap=2), [2.0, 1.0])
    np.testing.assert_array_equal(caffe_xent.pos_weight(labels, power=2, cap=0.5), [0.5, 0.5])


def test_pos_weight_falls_as_positives_rise():
    labels = (np.random.default_rng(3).random((1000, 20)) < np.linspace(0.01, 0.9, 20)).astype(float)
    weights = caffe_xent.pos_weight(labels, power=0.7)
    positives = labels.sum(axis=0)
    assert np.all(np.diff(weights[np.argsort(positives)]) <= 0)


@pytest.mark.parametrize("kwargs, match", [
    ({"power": -0.5}, "power must be finite and >= 0"),
    ({"power": float("nan")}, "power must be finite and >= 0"),
    ({"cap": -1}, "cap must be > 0"),
])
def test_pos_weight_refuses_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        caffe_xent.pos_weight(np.eye(3), **kwargs)


def _timm_class_weights():
    """timm's loss/class_weights.py, loaded on its own: `make test` installs
    the timm wheel without its dependencies, so importing the timm package
    (which needs torchvision) would fail; that file needs only torch."""
    pytest.importorskip("torch", reason="PyTorch is not installed")
    try:
        path = importlib.metadata.distribution("timm").locate_file("timm/loss/class_weights.py")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("timm is not installed (make test installs it where it can)")
    if not os.path.exists(path):
        pytest.skip("this timm has no loss/class_weights.py")
    spec = importlib.util.spec_from_file_location("timm_class_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method, kwargs", [("inv_freq", {"power": 0.5, "cap": 3.0}),
                                            ("effective_num", {"beta": 0.99, "cap": 3.0}),
                                            ("neg_pos", {"power": 0.5, "cap": 5.0})])
def test_same_values_as_timm(method, kwargs):
    # timm's loss factory (its weights are float32).
    timm_weights = _timm_class_weights()
    positives = np.array([3.0, 40.0, 7.0, 120.0, 1.0])
    samples = 200
    _, expected = timm_weights.compute_class_weights(positives, samples, method=method, **{
        ("max_weight" if k == "cap" else k): v for k, v in kwargs.items()})
    if method == "neg_pos":
        labels = (np.arange(samples)[:, None] < positives).astype(float)
        ours = caffe_xent.pos_weight(labels, **kwargs)
    else:
        ours = caffe_xent.class_weights(positives, recipe=method, **kwargs)
    np.testing.assert_allclose(ours, expected.numpy(), rtol=4 * np.finfo(np.float32).eps)

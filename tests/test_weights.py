"""caffe_xent.class_weights and caffe_xent.pos_weight."""
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

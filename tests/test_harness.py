"""caffe_xent.run_layer on upstream layers: the harness contract itself."""
import numpy as np
import pytest

import caffe_xent
from caffe_xent import LayerError, run_layer

from conftest import GPU_AVAILABLE


def test_layer_error_is_a_value_error():
    assert issubclass(LayerError, ValueError)


def test_gpu_available_is_bool():
    assert isinstance(caffe_xent.gpu_available(), bool)


def test_forward_backward_of_an_upstream_layer(device, dtype, rng):
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    (y,), (dx,) = run_layer('type: "Sigmoid"', [x], device=device,
                            top_diffs=[np.ones_like(x)])
    s = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    tol = 1e-6 if dtype == np.float32 else 1e-14
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, s, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, s * (1 - s), rtol=10 * tol, atol=tol)


def test_default_top_diff_of_a_loss_layer_is_its_loss_weight(dtype, rng):
    a = rng.standard_normal((4, 3)).astype(dtype)
    b = rng.standard_normal((4, 3)).astype(dtype)
    (loss,), (da, db) = run_layer('type: "EuclideanLoss"', [a, b])
    d = a.astype(np.float64) - b
    np.testing.assert_allclose(loss.reshape(()), (d ** 2).sum() / (2 * 4), rtol=1e-5)
    np.testing.assert_allclose(da, d / 4, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(db, -d / 4, rtol=1e-5, atol=1e-7)

    # As in a Caffe net: the top holds the unweighted loss, and loss_weight
    # is the top diff, so it scales the gradients.
    (loss2,), (da2, _) = run_layer('type: "EuclideanLoss" loss_weight: 3', [a, b])
    np.testing.assert_allclose(loss2, loss, rtol=1e-6)
    np.testing.assert_allclose(da2, 3 * da, rtol=1e-6)


def test_propagate_down_false_gives_none(rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal((2, 3)).astype(np.float32)
    _, diffs = run_layer('type: "EuclideanLoss"', [a, b], propagate_down=[True, False])
    assert diffs[0] is not None and diffs[1] is None


def test_mixed_dtypes_are_refused():
    with pytest.raises(LayerError, match="float32 or all float64"):
        run_layer('type: "EuclideanLoss"', [np.zeros(3, np.float32), np.zeros(3, np.float64)])


def test_integer_arrays_are_refused():
    with pytest.raises(LayerError, match="float32 or float64"):
        run_layer('type: "Sigmoid"', [np.zeros(3, np.int64)])


def test_unknown_type_and_bad_text_are_refused():
    with pytest.raises(LayerError, match='unknown layer type "NoSuchLayer"'):
        run_layer('type: "NoSuchLayer"', [np.zeros(3, np.float32)])
    with pytest.raises(LayerError, match="could not parse"):
        run_layer('type: "Sigmoid" {{{', [np.zeros(3, np.float32)])


def test_wrong_bottom_count_is_an_exception_not_an_abort():
    with pytest.raises(LayerError, match="EuclideanLoss layer .* takes exactly 2 bottom"):
        run_layer('type: "EuclideanLoss"', [np.zeros(3, np.float32)])


def test_bad_device_name():
    with pytest.raises(LayerError, match='"cpu" or "gpu"'):
        run_layer('type: "Sigmoid"', [np.zeros(3, np.float32)], device="tpu")


@pytest.mark.skipif(GPU_AVAILABLE, reason="a GPU is present: the no-GPU refusal cannot be observed")
def test_gpu_requested_without_gpu_is_refused():
    with pytest.raises(LayerError, match="device='gpu' requested"):
        run_layer('type: "Sigmoid"', [np.zeros(3, np.float32)], device="gpu")


def test_top_diff_shape_mismatch_is_refused():
    with pytest.raises(LayerError, match="top_diffs"):
        run_layer('type: "Sigmoid"', [np.zeros((2, 3), np.float32)],
                  top_diffs=[np.zeros((3, 2), np.float32)])


# ---- time_layer ---------------------------------------------------------------

def test_time_layer_times_each_round_and_leaves_results_alone(device, rng):
    x = rng.standard_normal((64, 100)).astype(np.float32)
    t = (rng.random((64, 100)) < 0.2).astype(np.float32)
    layer = 'type: "SigmoidCrossEntropyLoss"'
    x_before = x.copy()
    times = caffe_xent.time_layer(layer, [x, t], device=device, iters=3, repeats=4)
    assert sorted(times) == ["backward", "forward"]
    for name in ("forward", "backward"):
        assert len(times[name]) == 4
        assert all(0.0 < s < 1.0 for s in times[name]), times
    # the layer runs on its own copies: the caller's arrays are unchanged
    assert np.array_equal(x, x_before)


def test_time_layer_refuses_what_run_layer_refuses():
    with pytest.raises(LayerError, match="iters and repeats"):
        caffe_xent.time_layer('type: "Sigmoid"', [np.zeros(3, np.float32)], iters=0)
    with pytest.raises(LayerError, match="float32 or all float64"):
        caffe_xent.time_layer('type: "Sigmoid"', [np.zeros(3, np.float32), np.zeros(3)])
    with pytest.raises(LayerError, match="EuclideanLoss layer .* takes exactly 2 bottom"):
        caffe_xent.time_layer('type: "EuclideanLoss"', [np.zeros(3, np.float32)])

"""ZLPRLoss through caffe_xent.run_layer and through pycaffe.

Results are compared with a float64 reference (zlpr_loss_reference.py)
evaluated on the same inputs, and with timm's formulation in PyTorch
(bench/zlpr_loss_pytorch.py) where torch is installed. Tolerances come from
the math: the layer evaluates every exp and sum in double whatever the blob
type, so a float32 result carries one rounding to float (half an ulp) and a
float64 result the double roundings of a few exps, logs and sums.
"""
import os
import sys

import numpy as np
import pytest

import caffe_xent
from conftest import DEVICES, DTYPES, requires_gpu
from thread_bits import results_per_thread_count
from zlpr_loss_reference import NORMALIZATIONS, layer_text, reference

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from zlpr_loss_pytorch import zlpr_timm  # noqa: E402

FLOAT32_EPS = float(np.finfo(np.float32).eps)
FLOAT64_EPS = float(np.finfo(np.float64).eps)


def prototxt(*, normalization="VALID", tops=("loss",), **options):
    """A ZLPRLoss layer with every top named (the harness makes them)."""
    return layer_text(normalization=normalization, tops=tops, **options)


def multi_hot(rng, shape, axis=1, density=0.3):
    """0/1 targets; along `axis`, one row without positives and one with
    nothing but positives where there are at least three rows."""
    t = (rng.random(shape) < density).astype(np.float64)
    tm = np.moveaxis(t, axis, -1).reshape(-1, shape[axis])
    if tm.shape[0] >= 3:
        tm[0] = 0.0
        tm[1] = 1.0
    return np.moveaxis(tm.reshape(np.moveaxis(t, axis, -1).shape), -1, axis)


def tolerances(dtype, row_losses, classes):
    """(rtol of the loss and row losses, rtol of each gradient element).

    float32: everything is computed in double and rounded once to float:
    half an ulp, FLOAT32_EPS / 2 relative, for the gradient and the row
    losses; the loss is a double sum of rows rounded once.
    float64: a side's sum of up to C positive terms, added one by one, is
    within (C - 1) eps64 relative, in the layer and in the reference's
    logaddexp chain alike, and so is its log's absolute error; the
    gradient e^(v - L) of the reference also loses |L| eps64 (the absolute
    error of its side loss L in the exponent): 64 + 2 C + max|L| eps64.
    """
    if dtype == np.float32:
        return FLOAT32_EPS, FLOAT32_EPS
    spread = 64 + 2 * classes + float(np.max(np.abs(row_losses), initial=0.0))
    return spread * FLOAT64_EPS, spread * FLOAT64_EPS


def check_results(x, t, options, loss, rows, dx):
    """The layer's loss, row losses and gradient (for inputs x, t in the
    blob dtype) against the reference, within what the dtype allows. Below
    the dtype's smallest normal value a result is held to that absolute step
    (a float32 row loss of e^-100 is subnormal)."""
    dtype = x.dtype.type
    expected, grad, expected_rows = reference(x, t, **options)
    rtol, grad_rtol = tolerances(dtype, expected_rows, x.shape[options.get("axis", 1)] if x.ndim else 1)
    tiny = float(np.finfo(dtype).tiny)
    assert loss.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(loss, expected, rtol=rtol, atol=tiny)
    np.testing.assert_allclose(rows, expected_rows, rtol=rtol, atol=tiny)
    assert np.all(np.abs(dx - grad) <= grad_rtol * np.abs(grad) + tiny), \
        np.max(np.abs(dx - grad) / (np.abs(grad) + tiny))


def check(x, t, dtype, device, **options):
    """Runs the layer (both tops) and compares with the reference."""
    x = np.asarray(x).astype(dtype)
    t = np.asarray(t).astype(dtype)
    (loss, rows), (dx, _) = caffe_xent.run_layer(
        prototxt(tops=("loss", "rows"), **options), [x, t], device=device)
    check_results(x, t, options, loss, rows, dx)
    return loss, rows, dx


SHAPES = [  # (shape, axis)
    ((6, 7), 1),
    ((3, 4, 5, 6), 1),
    ((2, 3, 9), -1),
    ((4, 5, 3), 0),
    ((3, 2000), 1),
    ((2, 5, 16, 20), 1),  # tiles of 64 rows and a partial tile
    # Spatial maps on the float32 vector path: inner 99 is a tile of 64 rows
    # and one of 35 (vectors of 16, 8 or 4 rows and 3 padded rows); inner
    # 4096 with C = 7 has chunks of 2340 rows, so a chunk ends inside a tile
    # and the next one starts off a vector boundary, and backward blocks of
    # 1024 rows.
    ((2, 7, 9, 11), 1),
    ((1, 7, 64, 64), 1),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("shape,axis", SHAPES, ids=str)
def test_matches_float64_reference(shape, axis, normalization, dtype, device, rng):
    x = rng.standard_normal(shape) * 4
    check(x, multi_hot(rng, shape, axis), dtype, device, axis=axis, normalization=normalization)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ignore_label_per_element(dtype, device, rng):
    shape = (6, 9, 4)
    x = rng.standard_normal(shape) * 3
    t = multi_hot(rng, shape)
    t[rng.random(shape) < 0.2] = 255
    t[2, :, 1] = 255  # a row of nothing but ignored elements: 0, not counted
    x[2, :, 1] = np.nan  # ... whatever its scores
    loss, rows, dx = check(x, t, dtype, device, ignore_label=255)
    assert rows[2, 1] == 0 and np.all(dx[t == 255] == 0)
    # VALID counts the rows with an element left: 6 * 4 - 1.
    (loss_sum, *_), _ = caffe_xent.run_layer(prototxt(ignore_label=255, normalization="NONE"),
                                             [x.astype(dtype), t.astype(dtype)], device=device)
    rtol = FLOAT32_EPS if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(loss * 23, loss_sum, rtol=2 * rtol)
    # An ignored element is in neither set: the same as leaving it out.
    keep = t[0, :, 0] != 255
    (alone, *_), _ = caffe_xent.run_layer(prototxt(normalization="NONE"),
                                          [x[0, keep, 0][None].astype(dtype),
                                           t[0, keep, 0][None].astype(dtype)], device=device)
    np.testing.assert_allclose(rows[0, 0], alone, rtol=rtol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_without_positives_or_negatives_are_exact(dtype, device, rng):
    # No positive: l = log(1 + sum e^x) exactly (no masking constant); no
    # negative: l = log(1 + sum e^-x); neither (C = 1 ignored): 0.
    x = (rng.standard_normal((2, 12)) * 3).astype(dtype)
    t = np.zeros((2, 12), dtype)
    t[1] = 1
    loss, rows, dx = check(x, t, dtype, device)
    xd = x.astype(np.float64)
    expected = [np.log1p(np.exp(xd[0]).sum()), np.log1p(np.exp(-xd[1]).sum())]
    np.testing.assert_allclose(rows, expected, rtol=4 * FLOAT64_EPS if dtype == np.float64 else FLOAT32_EPS)
    assert np.all(dx[0] > 0) and np.all(dx[1] < 0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_timm_formulation_loss_and_autograd(dtype, device, rng):
    torch = pytest.importorskip("torch")
    for shape, scale in (((16, 40), 3.0), ((64, 1000), 4.0), ((5, 3), 30.0)):
        x = (rng.standard_normal(shape) * scale).astype(dtype)
        t = multi_hot(rng, shape).astype(dtype)
        (loss, *_), (dx, _) = caffe_xent.run_layer(prototxt(), [x, t], device=device)
        tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        timm_loss = zlpr_timm(tx, torch.from_numpy(t.astype(np.float64)))
        timm_loss.backward()
        _, _, rows = reference(x, t)
        rtol, grad_rtol = tolerances(dtype, rows, shape[1])
        np.testing.assert_allclose(loss, timm_loss.item(), rtol=rtol)
        grad = tx.grad.numpy()
        assert np.all(np.abs(dx - grad) <= grad_rtol * np.abs(grad) + np.finfo(dtype).tiny)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_scores_give_finite_results(dtype, device, rng):
    # Scores up to the largest finite value: every row loss is finite (a
    # negative at M contributes M + log(1 + ...), its limit), no NaN.
    big = float(np.finfo(dtype).max) / 4
    x = rng.standard_normal((5, 30)) * 1e4
    x[0] = big
    x[1] = -big
    x[2, ::2] = big
    x[2, 1::2] = -big
    t = multi_hot(rng, x.shape)
    t[2] = np.arange(30) % 2 == 0  # positives at +big, negatives at -big: loss 0
    (loss, rows), (dx, _) = caffe_xent.run_layer(prototxt(tops=("loss", "rows")),
                                                 [x.astype(dtype), t.astype(dtype)], device=device)
    assert np.all(np.isfinite(rows)) and np.isfinite(loss) and np.all(np.isfinite(dx))
    assert rows[2] == 0 and np.all(dx[2] == 0)
    # Row 0 has no positive, row 1 no negative (multi_hot): 30 values at
    # +big on the wrong side, l = big + log 30 + log(1 + 30^-1 e^-big).
    big_stored = float(np.asarray(big, dtype))
    np.testing.assert_allclose(rows[:2], big_stored + np.log(30.0), rtol=FLOAT32_EPS)
    check(x[3:], t[3:], dtype, device)  # scores ~1e4: the reference's limits


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_infinite_scores_take_their_limits(dtype, device):
    inf = np.inf
    x = np.array([[inf, -inf, -inf, 0.5],    # right side at infinity: no loss there
                  [-inf, 1.0, -1.0, 0.0],    # a positive at -inf: loss +inf
                  [1.0, inf, -2.0, 0.0],     # a negative at +inf: loss +inf
                  [np.nan, 0.0, 0.0, 0.0]], dtype)
    t = np.array([[1, 0, 0, 0], [1, 0, 0, 1], [1, 0, 0, 0], [1, 0, 0, 0]], dtype)
    (loss, rows), (dx, _) = caffe_xent.run_layer(
        prototxt(tops=("loss", "rows"), normalization="NONE"), [x[:1], t[:1]], device=device)
    np.testing.assert_allclose(rows[0], np.log1p(np.exp(0.5)), rtol=FLOAT32_EPS)
    assert dx[0, 0] == 0 and dx[0, 1] == 0 and dx[0, 2] == 0 and dx[0, 3] > 0
    (loss, rows), (dx, _) = caffe_xent.run_layer(
        prototxt(tops=("loss", "rows"), normalization="NONE"), [x[:3], t[:3]], device=device)
    assert rows[1] == inf and rows[2] == inf and loss == inf
    # The element at infinity on the wrong side takes all of its side's gradient.
    assert dx[1, 0] == -1 and dx[2, 1] == 1
    assert not np.any(np.isnan(dx))
    # NaN in, NaN out: the row's loss and its gradient.
    (loss, rows), (dx, _) = caffe_xent.run_layer(
        prototxt(tops=("loss", "rows"), normalization="NONE"), [x, t], device=device)
    assert np.isnan(loss) and np.isnan(rows[3]) and np.all(np.isfinite(rows[:1]))


@pytest.mark.parametrize("device", DEVICES)
def test_row_top_shape_and_gradient(device, rng):
    # The row top drops the class axis; a gradient into it scales its row.
    x = rng.standard_normal((3, 4, 5))
    t = multi_hot(rng, x.shape)
    layer = prototxt(tops=("loss", "rows"), normalization="NONE")
    (loss, rows), (dx_loss, _) = caffe_xent.run_layer(layer, [x, t], device=device)
    assert rows.shape == (3, 5)
    np.testing.assert_allclose(rows.sum(), loss, rtol=1e-13)
    row_diff = rng.standard_normal((3, 5))
    _, (dx, _) = caffe_xent.run_layer(layer, [x, t], device=device,
                                      top_diffs=[np.float64(0.0), row_diff])
    np.testing.assert_allclose(dx, dx_loss * row_diff[:, None, :], rtol=1e-13, atol=1e-300)
    (loss, rows), _ = caffe_xent.run_layer(prototxt(tops=("loss", "rows"), axis=-1),
                                           [x, multi_hot(rng, x.shape, -1)], device=device)
    assert rows.shape == (3, 4)


# ---- spatial maps: the float32 vector path and the rows it leaves ------------

SPECIAL_ROWS = {  # (outer, inner) -> what the row holds
    (0, 3): "a negative at +inf: loss +inf, that element's gradient 1",
    (0, 17): "NaN on a kept element: NaN",
    (0, 18): "NaN on an ignored element only: finite",
    (1, 40): "a positive at -inf: loss +inf",
    (1, 41): "a negative at -inf: no term, finite",
    (1, 42): "a positive at +inf: no term, finite",
    (1, 77): "huge scores on both sides",
    (1, 97): "every element ignored: 0",
}
# Rows with finite kept scores: the float32 vector paths, whose sums are
# added in another order alone (along the row) than in the map (class by
# class). The others take the scalar math in forward, alone and in the map
# alike, and the same vector formula or scalar math in backward: equal bits.
VECTOR_ROWS = {(0, 18), (1, 77)}


def special_spatial_map(rng, dtype):
    """(2, 6, 9, 11) scores and targets with ignored elements (-1) and the
    rows of SPECIAL_ROWS among finite ones: inner 99, so the special rows
    share vectors with ordinary ones, in full vectors and the padded tail."""
    shape = (2, 6, 9, 11)
    x = rng.standard_normal(shape) * 4
    t = multi_hot(rng, shape)
    t[rng.random(shape) < 0.15] = -1
    xr = x.reshape(2, 6, 99)  # views: (outer, class, inner)
    tr = t.reshape(2, 6, 99)
    big = float(np.finfo(dtype).max) / 4
    tr[0, :, 3] = [1, 0, 0, -1, 1, 0]
    xr[0, 1, 3] = np.inf
    tr[0, :, 17] = [0, 1, 0, 0, 1, 0]
    xr[0, 2, 17] = np.nan
    tr[0, :, 18] = [0, 1, -1, 0, 1, 0]
    xr[0, 2, 18] = np.nan
    tr[1, :, 40] = [1, 0, 1, 0, 0, -1]
    xr[1, 2, 40] = -np.inf
    tr[1, :, 41] = [1, 0, 1, 0, 0, 1]
    xr[1, 1, 41] = -np.inf
    tr[1, :, 42] = [1, 0, 1, 0, 0, 1]
    xr[1, 2, 42] = np.inf
    tr[1, :, 77] = [1, 0, 1, 0, 0, 1]
    xr[1, :, 77] = [big, -big, -big, big, 3.0, big]
    tr[1, :, 97] = -1
    xr[1, :, 97] = np.nan
    return x.astype(dtype), t.astype(dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_spatial_rows_with_special_scores_among_ordinary_ones(dtype, device, rng):
    """Each special row gives what the same row gives alone (a (1, C) blob:
    the contiguous path, whose non-finite rows take the scalar math), and the
    ordinary rows around it match the float64 reference."""
    x, t = special_spatial_map(rng, dtype)
    options = dict(ignore_label=-1, normalization="NONE")
    layer = prototxt(tops=("loss", "rows"), **options)
    with np.errstate(invalid="ignore"):
        (loss, rows), (dx, _) = caffe_xent.run_layer(layer, [x, t], device=device)
    xr, tr, dxr = (a.reshape(2, 6, 99) for a in (x, t, dx))
    rows = rows.reshape(2, 99)
    special = np.zeros((2, 99), bool)
    for (o, i) in SPECIAL_ROWS:
        special[o, i] = True
        with np.errstate(invalid="ignore"):
            (alone, alone_rows), (alone_dx, _) = caffe_xent.run_layer(
                layer, [xr[o, :, i][None], tr[o, :, i][None]], device=device)
        if (o, i) in VECTOR_ROWS and dtype == np.float32:
            # Two double values, each rounded once to float32.
            np.testing.assert_allclose(rows[o, i], alone_rows[0], rtol=FLOAT32_EPS,
                                       err_msg=SPECIAL_ROWS[o, i])
            np.testing.assert_allclose(dxr[o, :, i], alone_dx[0], rtol=FLOAT32_EPS,
                                       atol=float(np.finfo(dtype).tiny), err_msg=SPECIAL_ROWS[o, i])
        else:
            np.testing.assert_array_equal(rows[o, i], alone_rows[0], err_msg=SPECIAL_ROWS[o, i])
            np.testing.assert_array_equal(dxr[o, :, i], alone_dx[0], err_msg=SPECIAL_ROWS[o, i])
    assert np.isinf(rows[0, 3]) and dxr[0, 1, 3] == 1
    assert np.isnan(rows[0, 17]) and np.all(np.isfinite(rows[0, 18]))
    assert np.isinf(rows[1, 40]) and dxr[1, 2, 40] == -1
    assert np.isfinite(rows[1, 41]) and dxr[1, 1, 41] == 0
    assert np.isfinite(rows[1, 42]) and dxr[1, 2, 42] == 0
    assert np.isfinite(rows[1, 77]) and np.all(np.isfinite(dxr[1, :, 77]))
    assert rows[1, 97] == 0 and np.all(dxr[1, :, 97] == 0)
    assert np.all(dxr[tr == -1] == 0)
    # The ordinary rows: the special ones replaced by finite scores for the
    # reference, and left out of the comparison.
    x_finite = np.where(np.isfinite(x), x, 0.0)
    expected, grad, expected_rows = reference(x_finite, t, **options)
    rtol, grad_rtol = tolerances(dtype, expected_rows[~special.reshape(2, 9, 11)], 6)
    tiny = float(np.finfo(dtype).tiny)
    np.testing.assert_allclose(rows[~special], expected_rows.reshape(2, 99)[~special],
                               rtol=rtol, atol=tiny)
    ordinary = np.broadcast_to(~special[:, None, :], (2, 6, 99))
    g = grad.reshape(2, 6, 99)[ordinary]
    assert np.all(np.abs(dxr[ordinary] - g) <= grad_rtol * np.abs(g) + tiny)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_spatial_row_top_gradient(dtype, device, rng):
    """A gradient into the row top of a spatial map scales each row's
    gradient by its own diff (each vector of rows has its own row scales)."""
    shape = (2, 5, 7, 13)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = multi_hot(rng, shape).astype(dtype)
    t[rng.random(shape) < 0.1] = -1
    row_diff = rng.standard_normal((2, 7, 13)).astype(dtype)
    layer = prototxt(tops=("loss", "rows"), ignore_label=-1, normalization="NONE")
    _, (dx, _) = caffe_xent.run_layer(layer, [x, t], device=device,
                                      top_diffs=[np.asarray(0.0, dtype), row_diff])
    _, grad, rows = reference(x, t, ignore_label=-1, normalization="NONE")
    expected = grad * row_diff.astype(np.float64)[:, None]
    _, grad_rtol = tolerances(dtype, rows, shape[1])
    tiny = float(np.finfo(dtype).tiny)
    assert np.all(np.abs(dx - expected) <= grad_rtol * np.abs(expected) + tiny)


def test_same_bits_for_any_thread_count():
    outputs = results_per_thread_count(prototxt(), (8, 21, 64, 64), 0.2)
    assert len(outputs) == 1, outputs


# ---- bad input: LayerError, and the interpreter survives ---------------------

X = np.zeros((4, 5))
T = np.eye(4, 5)
BAD = {
    "shape mismatch": (prototxt(), [X, np.zeros((4, 6))], {}, "shape"),
    "one bottom": (prototxt(), [X], {}, "bottoms"),
    "three tops": (prototxt(tops=("a", "b", "c")), [X, T], {}, "tops"),
    "axis out of range": (prototxt(axis=2), [X, T], {}, "axis"),
    "ignore_label 0": (prototxt(ignore_label=0), [X, T], {}, "ignore_label = 0"),
    "ignore_label 1": (prototxt(ignore_label=1), [X, T], {}, "ignore_label = 1"),
    "soft target": (prototxt(), [X, T * 0.7], {},
                    "bottom[1] (targets) has 4 values that are not 0 or 1; the first is 0.7 "
                    "at flat index 0"),
    "target 2": (prototxt(ignore_label=-1), [X, T * 2], {},
                 "not 0 or 1 (nor ignore_label, -1); the first is 2 at flat index 0"),
    "NaN target": (prototxt(), [X, np.where(T > 0, T, np.nan)], {}, "bottom[1]"),
    "propagate_down to targets": (prototxt(), [X, T], {"propagate_down": [True, True]},
                                  "bottom[1]"),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_layer_error(case, device):
    layer, bottoms, kwargs, words = BAD[case]
    with pytest.raises(caffe_xent.LayerError, match="ZLPRLoss layer 'zlpr'") as info:
        caffe_xent.run_layer(layer, bottoms, device=device, **kwargs)
    assert words in str(info.value), str(info.value)
    (loss, *_), _ = caffe_xent.run_layer(prototxt(), [X, T], device=device)
    assert np.isfinite(loss)


# ---- CPU vs GPU --------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
# (1, 5000, 40): few rows of a spatial map, each a block (not 40 threads).
@pytest.mark.parametrize("shape", [(256, 1000), (8, 21, 32, 32), (4, 17000), (3, 40, 7),
                                   (1, 5000, 40)])
@requires_gpu
def test_cpu_and_gpu_agree(shape, dtype, rng):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = multi_hot(rng, shape).astype(dtype)
    t[rng.random(shape) < 0.05] = -1
    layer = prototxt(tops=("loss", "rows"), ignore_label=-1)
    (cpu_loss, cpu_rows), (cpu_dx, _) = caffe_xent.run_layer(layer, [x, t], device="cpu")
    (gpu_loss, gpu_rows), (gpu_dx, _) = caffe_xent.run_layer(layer, [x, t], device="gpu")
    # Both evaluate the same double math; only the order of the double sums
    # differs (a block's tree against a sequential sweep).
    eps = FLOAT32_EPS if dtype == np.float32 else 64 * FLOAT64_EPS
    np.testing.assert_allclose(gpu_loss, cpu_loss, rtol=eps)
    np.testing.assert_allclose(gpu_rows, cpu_rows, rtol=eps)
    assert np.all(np.abs(gpu_dx - cpu_dx) <= eps * np.abs(cpu_dx) + np.finfo(dtype).tiny)


# ---- pycaffe: NetSpec and a solver -------------------------------------------

def test_netspec_shorthand_and_training(tmp_path):
    caffe = pytest.importorskip("caffe")
    from caffe import layers as L

    caffe.set_mode_cpu()
    caffe.set_random_seed(7)  # the same initial weights on every run
    batch, features, classes = 32, 10, 6
    n = caffe.NetSpec()
    n.x, n.t = L.Input(shape=[dict(dim=[batch, features]), dict(dim=[batch, classes])], ntop=2)
    n.score = L.InnerProduct(n.x, num_output=classes, weight_filler=dict(type="xavier"))
    n.loss, n.rows = L.ZLPRLoss(n.score, n.t, axis=1, ntop=2, loss_param=dict(ignore_label=-1))
    net_text = str(n.to_proto())
    assert "zlpr_loss_param" in net_text and "axis: 1" in net_text
    net_file = tmp_path / "net.prototxt"
    net_file.write_text(net_text)
    solver_file = tmp_path / "solver.prototxt"
    solver_file.write_text('net: "%s"\nbase_lr: 0.1\nlr_policy: "fixed"\nmomentum: 0.9\n'
                           "max_iter: 1000\ndisplay: 0\nsnapshot_after_train: false\n" % net_file)
    solver = caffe.SGDSolver(str(solver_file))

    rng = np.random.default_rng(1)
    projection = rng.standard_normal((features, classes))

    def feed():
        x = rng.standard_normal((batch, features)).astype(np.float32)
        scores = x @ projection
        t = (scores > 0.5).astype(np.float32)  # a separable multi-label task
        solver.net.blobs["x"].data[...] = x
        solver.net.blobs["t"].data[...] = t
        return t

    feed()
    first = float(solver.net.forward()["loss"])
    for _ in range(300):
        feed()
        solver.step(1)
    t = feed()
    out = solver.net.forward()
    assert float(out["loss"]) < 0.3 * first, (first, float(out["loss"]))
    # Threshold 0: the scores' signs are the predicted labels.
    predicted = solver.net.blobs["score"].data > 0
    assert np.mean(predicted == (t > 0)) > 0.9
    assert out["rows"].shape == (batch,)

"""TwoWayLoss through caffe_xent.run_layer and through pycaffe.

Results are compared with a float64 reference (two_way_loss_reference.py)
evaluated on the same inputs, and with timm's formulation in PyTorch
(bench/two_way_loss_pytorch.py) where torch is installed. The layer
evaluates every exp, log and sum in double whatever the blob type, so a
float32 result carries one rounding to float; an element's row and column
shares of the gradient have the same sign (both positive on a negative,
both negative on a positive), so that rounding stays relative.
"""
import os
import sys

import numpy as np
import pytest

import caffe_xent
from conftest import DEVICES, DTYPES, requires_gpu
from thread_bits import results_per_thread_count
from two_way_loss_reference import NORMALIZATIONS, layer_text, reference

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from two_way_loss_pytorch import two_way_timm  # noqa: E402

FLOAT32_EPS = float(np.finfo(np.float32).eps)
FLOAT64_EPS = float(np.finfo(np.float64).eps)


def prototxt(**options):
    return layer_text(**options)


def multi_hot(rng, shape, axis=1, density=0.3):
    """0/1 targets with, where there are at least three rows, a row without
    positives and one of nothing but positives (along `axis`)."""
    t = (rng.random(shape) < density).astype(np.float64)
    tm = np.moveaxis(t, axis, -1).reshape(-1, shape[axis])
    if tm.shape[0] >= 3:
        tm[0] = 0.0
        tm[1] = 1.0
    return np.moveaxis(tm.reshape(np.moveaxis(t, axis, -1).shape), -1, axis)


def tolerance(dtype, x, options):
    """Relative tolerance of loss and gradient elements.

    float32: computed in double, rounded once to float (half an ulp).
    float64: a side's sum of up to n positive terms (n the longest line:
    C, or the rows of a column), added one by one, is within (n - 1) eps64
    relative, in the layer and in the reference's logaddexp chain alike,
    and so is its log's absolute error; the reference's exp(v - LSE) also
    carries |LSE| eps64 (the absolute error of LSE in the exponent), |LSE|
    <= max|x| / T + log n; 64 eps64 more for the softplus and sigmoid.
    """
    if dtype == np.float32:
        return FLOAT32_EPS
    temperature = min(options.get("positive_temperature", 4.0),
                      options.get("negative_temperature", 1.0))
    finite = np.abs(x[np.isfinite(x)])  # ignored elements may hold NaN: they take no part
    longest = max(max(x.shape[options.get("axis", 1)], x.size // max(x.shape[options.get("axis", 1)], 1)), 2)
    spread = np.max(finite, initial=0.0) / temperature + np.log(longest)
    return (64 + 2 * longest + spread) * FLOAT64_EPS


def check_results(x, t, options, loss, dx):
    dtype = x.dtype.type
    expected, grad = reference(x, t, **options)
    rtol = tolerance(dtype, x.astype(np.float64), options)
    tiny = float(np.finfo(dtype).tiny)
    assert loss.dtype == dtype and dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(loss, expected, rtol=rtol, atol=tiny)
    assert np.all(np.abs(dx - grad) <= rtol * np.abs(grad) + tiny), \
        np.max(np.abs(dx - grad) / (np.abs(grad) + tiny))


def check(x, t, dtype, device, **options):
    x = np.asarray(x).astype(dtype)
    t = np.asarray(t).astype(dtype)
    (loss,), (dx, _) = caffe_xent.run_layer(prototxt(**options), [x, t], device=device)
    check_results(x, t, options, loss, dx)
    return loss, dx


SHAPES = [  # (shape, axis)
    ((6, 7), 1),
    ((3, 4, 5, 6), 1),
    ((2, 3, 9), -1),
    ((4, 5, 3), 0),
    ((3, 2000), 1),
    ((300, 70), 1),  # two column blocks and a partial one
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("shape,axis", SHAPES, ids=str)
def test_matches_float64_reference(shape, axis, normalization, dtype, device, rng):
    x = rng.standard_normal(shape) * 3
    check(x, multi_hot(rng, shape, axis), dtype, device, axis=axis, normalization=normalization)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperatures", [(4.0, 1.0), (1.0, 1.0), (0.5, 2.0), (10.0, 0.25)])
def test_matches_timm_formulation_loss_and_autograd(temperatures, dtype, device, rng):
    torch = pytest.importorskip("torch")
    tp, tn = temperatures
    for shape in ((16, 40), (64, 300), (5, 3)):
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        t = multi_hot(rng, shape).astype(dtype)
        options = dict(positive_temperature=tp, negative_temperature=tn)
        (loss,), (dx, _) = caffe_xent.run_layer(prototxt(**options), [x, t], device=device)
        tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        timm_loss = two_way_timm(tx, torch.from_numpy(t.astype(np.float64)), tp=tp, tn=tn)
        timm_loss.backward()
        # torch's softplus is linear above 20 (threshold=20): softplus(a) is
        # taken as a, off by log1p(e^-a) < e^-20 per line, and its slope as
        # 1 instead of sigma(a), off by < e^-20 relative. Each term is a mean
        # over its lines, so the loss moves by < 2 e^-20 in all.
        linear = float(np.exp(-20.0))
        rtol = tolerance(dtype, x.astype(np.float64), options)
        np.testing.assert_allclose(loss, timm_loss.item(), rtol=rtol, atol=2 * linear)
        grad = tx.grad.numpy()
        assert np.all(np.abs(dx - grad) <= (rtol + linear) * np.abs(grad) + np.finfo(dtype).tiny)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lines_without_negatives_or_positives(dtype, device, rng):
    # A row of nothing but positives: a = -inf, no loss and no gradient from
    # it (exactly; timm's mask gives e^-1e4); a row without positives: not
    # counted. Its elements still take part in their columns.
    x = (rng.standard_normal((5, 8)) * 2).astype(dtype)
    t = multi_hot(rng, (5, 8)).astype(dtype)  # row 0: no positive, row 1: all positive
    t[2:, 0] = 1  # column 0: all positive but row 0
    loss, dx = check(x, t, dtype, device)
    (none,), _ = caffe_xent.run_layer(prototxt(normalization="NONE"), [x, t], device=device)
    assert np.isfinite(none) and none > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(12, 9), (3, 9, 20)], ids=str)
def test_ignore_label_is_in_neither_set(shape, dtype, device, rng):
    x = rng.standard_normal(shape) * 3
    t = multi_hot(rng, shape)
    t[rng.random(shape) < 0.2] = -1
    x[t == -1] = np.nan  # ignored: no effect, whatever the score
    loss, dx = check(x, t, dtype, device, ignore_label=-1)
    assert np.all(dx[t == -1] == 0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_and_infinite_scores(dtype, device, rng):
    big = float(np.finfo(dtype).max) / 8
    x = rng.standard_normal((4, 6)) * 3
    t = np.zeros((4, 6))
    t[:, :2] = 1
    x[0, :2], x[0, 2:] = big, -big  # every positive far above every negative: loss ~ 0
    x[1, 3] = np.inf if dtype == np.float64 else np.float32(np.inf)  # a negative at +inf
    (loss,), (dx, _) = caffe_xent.run_layer(prototxt(normalization="NONE"),
                                            [x.astype(dtype), t.astype(dtype)], device=device)
    assert loss == np.inf and not np.any(np.isnan(dx))
    x[1, 3] = 1e4  # huge but finite: a finite loss, no NaN
    (loss,), (dx, _) = caffe_xent.run_layer(prototxt(normalization="NONE"),
                                            [x.astype(dtype), t.astype(dtype)], device=device)
    assert np.isfinite(loss) and np.all(np.isfinite(dx))
    assert np.all(dx[0] == 0)
    check(x[1:], t[1:], dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_infinite_score_in_a_spatial_map(dtype, device, rng):
    # A map's rows are its pixels: one negative at +inf makes its pixel's
    # and its class's loss infinite; no NaN anywhere.
    x = rng.standard_normal((2, 5, 40)) * 3
    t = multi_hot(rng, (2, 5, 40), density=0.3)
    t[1, 2, 17] = 0
    x[1, 2, 17] = np.inf
    (loss,), (dx, _) = caffe_xent.run_layer(prototxt(normalization="NONE"),
                                            [x.astype(dtype), t.astype(dtype)], device=device)
    assert loss == np.inf and not np.any(np.isnan(dx))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spatial", [False, True], ids=["rows", "map"])
def test_columns_far_below_the_largest_score(spatial, dtype, device, rng):
    # Float (N, C) scores sum each column's exps against one shift per side
    # (the largest value of that side in the whole blob) where that keeps
    # every term that matters a normal double, and sweep a column again with
    # its own shifts where it does not. Rows here rise (each row's largest
    # score above the last: the running shift moves often); one negative of
    # 900 puts the negatives' shared shift there: the even columns (about
    # 450 lower) keep it, the odd ones (about 890 lower: e^-890 is below the
    # smallest double) are swept again.
    shape = (300, 70)
    x = rng.standard_normal(shape) * 3 + np.linspace(0.0, 6.0, shape[0])[:, None]
    x[:, 0::2] += 450.0
    t = multi_hot(rng, shape, density=0.2)
    t[200, 4] = 0.0
    x[200, 4] = 900.0
    if spatial:  # the same rows as the pixels of a (3, 70, 100) map
        x, t = (a.reshape(3, 100, 70).transpose(0, 2, 1) for a in (x, t))
    check(x, t, dtype, device)
    check(x, t, dtype, device, positive_temperature=0.5, negative_temperature=2.0)


@pytest.mark.parametrize("shape", [(512, 300), (4, 21, 48, 48)], ids=str)
def test_same_bits_for_any_thread_count(shape):
    outputs = results_per_thread_count(prototxt(), shape, 0.1)
    assert len(outputs) == 1, outputs


X = np.zeros((4, 5))
T = np.eye(4, 5)
BAD = {
    "shape mismatch": (prototxt(), [X, np.zeros((4, 6))], {}, "shape"),
    "two tops": (prototxt().replace('top: "loss"', 'top: "loss" top: "b"'), [X, T], {}, "got 2"),
    "axis out of range": (prototxt(axis=2), [X, T], {}, "axis"),
    "zero positive_temperature": (prototxt(positive_temperature=0.0), [X, T], {},
                                  "positive_temperature = 0 is invalid"),
    "negative negative_temperature": (prototxt(negative_temperature=-1.0), [X, T], {},
                                      "negative_temperature = -1 is invalid"),
    "infinite temperature": (prototxt(positive_temperature=float("inf")), [X, T], {},
                             "finite and > 0"),
    "ignore_label 1": (prototxt(ignore_label=1), [X, T], {}, "ignore_label = 1"),
    "soft target": (prototxt(), [X, T * 0.5], {},
                    "bottom[1] (targets) has 4 values that are not 0 or 1; the first is 0.5"),
    "NaN target": (prototxt(), [X, np.where(T > 0, T, np.nan)], {}, "bottom[1]"),
    "propagate_down to targets": (prototxt(), [X, T], {"propagate_down": [True, True]},
                                  "bottom[1]"),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_layer_error(case, device):
    layer, bottoms, kwargs, words = BAD[case]
    with pytest.raises(caffe_xent.LayerError, match="TwoWayLoss layer 'twoway'") as info:
        caffe_xent.run_layer(layer, bottoms, device=device, **kwargs)
    assert words in str(info.value), str(info.value)
    (loss,), _ = caffe_xent.run_layer(prototxt(), [X, T], device=device)
    assert np.isfinite(loss)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(256, 1000), (8, 21, 32, 32), (4, 17000), (3000, 20)])
@requires_gpu
def test_cpu_and_gpu_agree(shape, dtype, rng):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = multi_hot(rng, shape, density=0.1).astype(dtype)
    t[rng.random(shape) < 0.05] = -1
    layer = prototxt(ignore_label=-1)
    (cpu_loss,), (cpu_dx, _) = caffe_xent.run_layer(layer, [x, t], device="cpu")
    (gpu_loss,), (gpu_dx, _) = caffe_xent.run_layer(layer, [x, t], device="gpu")
    # The same double math; only the order of the double sums differs.
    eps = FLOAT32_EPS if dtype == np.float32 else 64 * FLOAT64_EPS
    np.testing.assert_allclose(gpu_loss, cpu_loss, rtol=eps)
    assert np.all(np.abs(gpu_dx - cpu_dx) <= eps * np.abs(cpu_dx) + np.finfo(dtype).tiny)


def test_netspec_shorthand_and_training(tmp_path):
    caffe = pytest.importorskip("caffe")
    from caffe import layers as L

    caffe.set_mode_cpu()
    caffe.set_random_seed(7)  # the same initial weights on every run
    batch, features, classes = 32, 10, 6
    n = caffe.NetSpec()
    n.x, n.t = L.Input(shape=[dict(dim=[batch, features]), dict(dim=[batch, classes])], ntop=2)
    n.score = L.InnerProduct(n.x, num_output=classes, weight_filler=dict(type="xavier"))
    n.loss = L.TwoWayLoss(n.score, n.t, positive_temperature=4, negative_temperature=1)
    net_text = str(n.to_proto())
    assert "two_way_loss_param" in net_text and "positive_temperature: 4" in net_text
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
        t = (x @ projection > 0.5).astype(np.float32)
        solver.net.blobs["x"].data[...] = x
        solver.net.blobs["t"].data[...] = t
        return t

    feed()
    first = float(solver.net.forward()["loss"])
    for _ in range(300):
        feed()
        solver.step(1)
    t = feed()
    last = float(solver.net.forward()["loss"])
    assert last < 0.5 * first, (first, last)
    # A ranking loss: positives score above negatives (per sample).
    score = solver.net.blobs["score"].data
    pairs = [(s[p].min() > s[~p].max()) for s, p in zip(score, t > 0) if p.any() and (~p).any()]
    assert np.mean(pairs) > 0.8

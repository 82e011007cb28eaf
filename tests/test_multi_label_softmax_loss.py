"""MultiLabelSoftmaxLoss through caffe_xent.run_layer and through pycaffe.

Float32 results are compared with a float64 reference evaluated on the same
float32 inputs; tolerances come from the math (each float exp within 1 ulp,
sums in double), never loosened to get green.
"""
import itertools
import os
import sys

import numpy as np
import pytest

import caffe_xent
from conftest import DEVICES, DTYPES, requires_gpu
from thread_bits import results_per_thread_count
from multi_label_softmax_loss_reference import reference

# The original Python layer, loop by loop: kept once, in bench/, where it is
# also the benchmark's slowest peer.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from multi_label_softmax_loss_original_layer import original_layer_forward_backward  # noqa: E402

FLOAT32_EPS = float(np.finfo(np.float32).eps)
FLOAT64_EPS = float(np.finfo(np.float64).eps)
TARGET_CODES = {"COUNT": 0, "SUM": 1, "NONE": 2}


def prototxt(*, axis=1, target_normalization="COUNT", class_weight=None, label_smoothing=0.0,
             ignore_label=None, normalization="VALID", tops=("loss",)):
    """LayerParameter text of one MultiLabelSoftmaxLoss layer."""
    ml = ["axis: %d" % axis, "target_normalization: %s" % target_normalization,
          "label_smoothing: %r" % float(label_smoothing)]
    ml += ["class_weight: %r" % float(w) for w in (class_weight or [])]
    loss = ["normalization: %s" % normalization]
    if ignore_label is not None:
        loss.append("ignore_label: %d" % ignore_label)
    top_text = " ".join('top: "%s"' % name for name in tops)
    return ('name: "mlsoftmax" type: "MultiLabelSoftmaxLoss" bottom: "x" bottom: "t" %s '
            "multi_label_softmax_loss_param { %s } loss_param { %s }"
            % (top_text, " ".join(ml), " ".join(loss)))


def as_stored(options):
    """The options as the layer sees them: caffe.proto stores class_weight and
    label_smoothing as float32, so the float64 reference uses those values."""
    stored = dict(options)
    if "label_smoothing" in stored:
        stored["label_smoothing"] = float(np.float32(stored["label_smoothing"]))
    if stored.get("class_weight"):
        stored["class_weight"] = [float(np.float32(w)) for w in stored["class_weight"]]
    return stored


def multi_hot(rng, shape, axis, density=0.3):
    """Multi-hot targets with at least one positive per row."""
    t = (rng.random(shape) < density).astype(np.float64)
    tm = np.moveaxis(t, axis, -1)
    first = rng.integers(0, tm.shape[-1], size=tm.shape[:-1])
    np.put_along_axis(tm, first[..., None], 1.0, axis=-1)
    return t


def soft_targets(rng, shape):
    """Non-negative real targets (counts or soft values), about a third zero."""
    t = rng.random(shape) * 3.0
    t[rng.random(shape) < 0.3] = 0.0
    return t


def check(options, x, t, dtype, device):
    """Runs the layer and compares loss and gradient with the reference."""
    x = x.astype(dtype)
    t = t.astype(dtype)
    (loss, *_), (dx, _) = caffe_xent.run_layer(prototxt(**options), [x, t], device=device)
    assert_matches_reference(options, x, t, dtype, loss, dx)
    return loss, dx


def assert_matches_reference(options, x, t, dtype, loss, dx):
    """The layer's loss and gradient (for inputs x, t already in dtype)
    against the float64 reference, within what dtype allows."""
    expected, grad, magnitude = reference(x, t, **as_stored(options))
    # Loss, absolute part: Q log S takes log of S = 1 + sum of the other
    # exps, accumulated in double over C terms <= 1, so within C eps64 of S
    # relative: Q C eps64 per row. A row's magnitudes add up to (C + 2) Q /
    # normalizer, so all of them bound the sum over rows (this matters only
    # where the loss is tiny next to Q, e.g. 1e-12 when every row's target
    # score leads by 30).
    log_sum_error = FLOAT64_EPS * float(np.sum(magnitude))
    if dtype == np.float32:
        # Loss: each exp is within 1 ulp and sums are in double, so the loss is
        # within a few float32 ulps relative (well inside 1e-6 relative).
        assert loss.shape == ()
        np.testing.assert_allclose(loss, expected, rtol=1e-6, atol=log_sum_error)
        # Gradient: p carries ~2 ulp (exp and the shifted argument), then one
        # rounding of Q p - q to float: a few ulp of the terms' magnitude.
        tolerance = 4 * FLOAT32_EPS * magnitude
    else:
        np.testing.assert_allclose(loss, expected, rtol=1e-12, atol=log_sum_error)
        tolerance = 64 * FLOAT64_EPS * magnitude
    assert np.all(np.abs(dx - grad) <= tolerance), np.max(np.abs(dx - grad) - tolerance)


SHAPES = [  # (shape, axis)
    ((6, 7), 1),
    ((3, 4, 5, 6), 1),
    ((2, 3, 9), -1),
    ((4, 5, 3), 0),
    ((3, 2000), 1),
    ((2, 3, 16, 20), 1),  # spatial SIMD tiles (256 rows) plus partial tiles
]
OPTIONS = [
    {},
    {"target_normalization": "SUM"},
    {"target_normalization": "NONE", "normalization": "FULL"},
    {"class_weight": "per-class", "label_smoothing": 0.1, "normalization": "BATCH_SIZE"},
    {"class_weight": [2.5], "target_normalization": "SUM", "normalization": "NONE"},
    {"label_smoothing": 0.3, "ignore_label": -1},
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join("%s=%s" % kv for kv in o.items()) or "default")
@pytest.mark.parametrize("shape,axis", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("targets", ["multi-hot", "soft"])
def test_matches_float64_reference(shape, axis, options, dtype, device, targets, rng):
    options = dict(options, axis=axis)
    C = shape[axis]
    if options.get("class_weight") == "per-class":
        options["class_weight"] = list(np.round(rng.random(C) * 2, 3))
    x = rng.standard_normal(shape) * 4
    t = multi_hot(rng, shape, axis) if targets == "multi-hot" else soft_targets(rng, shape)
    if "ignore_label" in options:
        t.flat[::7] = -1  # ignore a few rows
    check(options, x, t, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", ["soft target late", "ignored rows", "offset scores",
                                  "smoothing"])
def test_spatial_zero_one_targets(case, device, rng):
    # Spatial float maps whose targets are 0/1 take their target sums as a
    # count and a sum of the positives' scores (M m - sum x_c); a vector of
    # rows with another target (here one soft target deep into the second
    # image, after many 0/1 tiles) redoes them by the general sums, and the
    # run keeps to those. Both against the float64 reference.
    shape = (2, 21, 24, 40)  # 960 rows an image: several SIMD tiles
    x = rng.standard_normal(shape) * 4
    t = multi_hot(rng, shape, 1, density=0.05)
    options = {}
    if case == "soft target late":
        t[1, 3, 20, 33] = 0.7
        options = {"target_normalization": "SUM"}
    elif case == "ignored rows":
        t[0, 5, ::3, ::7] = -1
        options = {"ignore_label": -1}
    elif case == "offset scores":  # M m - sum x_c where the scores' sum is large
        x += 1000.0
    else:
        options = {"label_smoothing": 0.2}
    check(options, x, t, np.float32, device)


@pytest.mark.parametrize("device", DEVICES)
def test_original_layer_agreement_multi_hot(device, rng):
    # COUNT + multi-hot targets: loss and gradient equal the original Python layer.
    x = rng.standard_normal((16, 40)) * 3
    t = multi_hot(rng, x.shape, 1)
    (loss, *_), (dx, _) = caffe_xent.run_layer(prototxt(), [x, t], device=device)
    original_loss, original_grad = original_layer_forward_backward(x, t)
    np.testing.assert_allclose(loss, original_loss, rtol=1e-13)
    np.testing.assert_allclose(dx, original_grad, rtol=1e-12, atol=1e-17)


@pytest.mark.parametrize("device", DEVICES)
def test_original_layer_forward_agreement_real_targets(device, rng):
    # Real-valued targets: the forward equals the original layer's (its
    # backward ignores the target values; ours is the exact derivative,
    # checked against the reference elsewhere).
    x = rng.standard_normal((16, 40)) * 3
    t = soft_targets(rng, x.shape)
    t[:, 0] = 1.0  # every row has a positive
    (loss, *_), (dx, _) = caffe_xent.run_layer(prototxt(), [x, t], device=device)
    original_loss, original_grad = original_layer_forward_backward(x, t)
    np.testing.assert_allclose(loss, original_loss, rtol=1e-13)
    _, grad, _ = reference(x, t)
    np.testing.assert_allclose(dx, grad, rtol=1e-12, atol=1e-17)
    assert not np.allclose(dx, original_grad)  # the original backward is wrong here


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["none-sum", "sum-mean", "none-weights", "none-smoothing",
                                  "spatial-mean"])
def test_matches_pytorch_probability_targets(case, dtype, device, rng):
    torch = pytest.importorskip("torch")
    shape = (3, 5, 4, 6) if case == "spatial-mean" else (8, 11)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = soft_targets(rng, shape).astype(dtype)
    t[:, 0] += 0.5  # no row without positives: torch has no notion of ignoring them
    options = {"target_normalization": "NONE", "normalization": "NONE"}
    torch_kwargs = {"reduction": "sum"}
    torch_t = torch.from_numpy(t.astype(np.float64))
    if case in ("sum-mean", "spatial-mean"):
        options = {"target_normalization": "SUM", "normalization": "FULL"}
        torch_kwargs = {"reduction": "mean"}
        torch_t = torch_t / torch_t.sum(1, keepdim=True)
    if case == "none-weights":
        weights = np.round(rng.random(shape[1]) * 2, 3).astype(np.float32).astype(np.float64)
        options["class_weight"] = list(weights)
        torch_kwargs["weight"] = torch.from_numpy(weights)
    if case == "none-smoothing":
        options["label_smoothing"] = 0.2
        torch_kwargs["label_smoothing"] = float(np.float32(0.2))  # as caffe.proto stores it
    (loss, *_), (dx, _) = caffe_xent.run_layer(prototxt(**options), [x, t], device=device)
    torch_x = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    torch_loss = torch.nn.functional.cross_entropy(torch_x, torch_t, **torch_kwargs)
    torch_loss.backward()
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, torch_loss.item(), rtol=rtol)
    _, _, magnitude = reference(x, t, **as_stored(options))
    bound = (4 * FLOAT32_EPS if dtype == np.float32 else 64 * FLOAT64_EPS) * magnitude
    assert np.all(np.abs(dx - torch_x.grad.numpy()) <= bound + 1e-15)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_scores_stay_finite_and_accurate(dtype, device, rng):
    x = rng.standard_normal((6, 50)) * 1e4
    x[0, :] = 1e4
    x[1, :] = -1e4
    x[2, 3] = 1e4  # one dominant class
    t = multi_hot(rng, x.shape, 1)
    t[2, :] = 0
    t[2, 3] = 1  # ... which is the target: loss ~ 0 for that row
    loss, dx = check({"label_smoothing": 0.05}, x, t, dtype, device)
    assert np.isfinite(loss) and np.all(np.isfinite(dx))


@pytest.mark.parametrize("device", DEVICES)
def test_huge_number_of_classes(device, rng):
    x = (rng.standard_normal((2, 300000)) * 5).astype(np.float32)
    t = multi_hot(rng, x.shape, 1, density=1e-4)
    check({}, x, t, np.float32, device)


def float32_ulps(got, ref):
    """|got - ref| in float32 ulps of ref (np.spacing of |ref| as float32)."""
    spacing = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - ref) / spacing


def softmax_terms(x, t, axis, target_normalization):
    """Q p_c and q_c in float64, for rows without class weights, smoothing or
    ignored rows (what test_float32_within_few_ulps uses)."""
    xm = np.moveaxis(x.astype(np.float64), axis, -1)
    tm = np.moveaxis(t.astype(np.float64), axis, -1)
    norm = (tm > 0).sum(-1, keepdims=True) if target_normalization == "COUNT" else 1.0
    q = tm / norm
    e = np.exp(xm - xm.max(-1, keepdims=True))
    qp = q.sum(-1, keepdims=True) * e / e.sum(-1, keepdims=True)
    return np.moveaxis(qp, -1, axis), np.moveaxis(q, -1, axis)


def cancelling_targets(rng, x, t, axis, delta):
    """Soft targets where ~10% of the classes, and each row's top class (where
    its p <= 1/2), get t_c = Q p_c (1 +- delta) at the fixed point of
    Q = sum_c t_c (normalization NONE): Q p_c - q_c cancels to ~delta."""
    xm = np.moveaxis(x.astype(np.float64), axis, -1)
    tm = np.moveaxis(t.astype(np.float64), axis, -1).copy()
    e = np.exp(xm - xm.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    chosen = rng.random(tm.shape) < 0.1
    top = np.argmax(xm, -1)[..., None]
    np.put_along_axis(chosen, top, np.take_along_axis(p, top, -1) <= 0.5, axis=-1)
    chosen &= np.cumsum(np.where(chosen, p, 0), -1) <= 0.5  # keep Q finite: sum p <= 1/2
    q_total = np.where(chosen, 0, tm).sum(-1, keepdims=True) / (1 - np.where(chosen, p, 0).sum(-1, keepdims=True))
    sign = rng.choice([-1.0, 1.0], size=tm.shape)
    tm = np.where(chosen, q_total * p * (1 + delta * sign), tm)
    return np.moveaxis(tm, -1, axis)


FEW_ULPS_CASES = {  # name: (shape, axis, scores, targets, target_normalization)
    "wide scores": ((64, 1000), 1, "N(0, 20^2)", "soft", "COUNT"),
    "offset scores": ((64, 1000), 1, "1000 + N(0, 5^2)", "multi-hot", "COUNT"),
    "huge offset (scalar path)": ((8, 300), 1, "-1e5 + N(0, 5^2)", "soft", "COUNT"),
    "long rows": ((4, 17000), 1, "N(0, 10^2)", "soft", "COUNT"),
    "spatial wide scores": ((4, 21, 16, 16), 1, "N(0, 20^2)", "soft", "NONE"),
    "cancelling targets": ((64, 1000), 1, "N(0, 3^2)", "cancelling", "NONE"),
    "spatial cancelling targets": ((4, 21, 16, 16), 1, "N(0, 3^2)", "cancelling", "NONE"),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", sorted(FEW_ULPS_CASES))
def test_float32_within_few_ulps(case, device, rng):
    # Each float32 gradient element and probability against float64 math on
    # the same float32 inputs, in float32 ulps of the float64 value.
    # Error budget of the float paths, u = 2^-24 relative:
    #   e^(x - m): the argument exact (x - m is never rounded to float first),
    #     so only the exp's polynomial (1 ulp) and the reduced argument's
    #     roundings (< 3 * 2^-26 absolute): < 1.75 u;
    #   S = sum of those, in double: < 1.75 u;
    #   gradient Q p - q = k e - q', k = scale Q / S rounded to float (0.5 u),
    #     q' = (scale a w) t + scale b in float (< 2 u), one rounding of the
    #     result (0.5 ulp): |error| < 4 u Q p + 2 u q + 0.5 ulp.
    # Where q = 0 (negative classes) that is < 4.5 ulp of the value; where
    # |Q p - q| >= (Q p + q) / 2 (no cancellation) < 8.5 ulp; where Q p and q
    # cancel only the absolute bound holds: < 4 u (Q p + q) + 0.5 ulp, i.e.
    # 2 float32 eps of the terms. (A relative bound there would need S to
    # more digits than float exps give: see docs/multi_label_softmax_loss.md.)
    #   probabilities: e^(x - m) / S with a double exp: < 1.75 u + 0.5 ulp.
    # Rounding x - m to float first breaks these by up to |x - m| 2^-25:
    # ~60 ulps at N(0, 20^2).
    shape, axis, scores, targets, target_normalization = FEW_ULPS_CASES[case]
    x = rng.standard_normal(shape) * {"N(0, 20^2)": 20, "N(0, 10^2)": 10, "N(0, 3^2)": 3}.get(scores, 5)
    x += {"1000 + N(0, 5^2)": 1000.0, "-1e5 + N(0, 5^2)": -1e5}.get(scores, 0.0)
    x = x.astype(np.float32)
    if targets == "multi-hot":
        t = multi_hot(rng, shape, axis)
    else:
        t = soft_targets(rng, shape)
        np.moveaxis(t, axis, -1)[..., 0] += 0.5  # no row without a positive
    if targets == "cancelling":
        t = cancelling_targets(rng, x, t, axis, delta=2.0 ** -10)
    t = t.astype(np.float32)
    options = {"axis": axis, "target_normalization": target_normalization}
    (loss, prob), (dx, _) = caffe_xent.run_layer(prototxt(tops=("loss", "prob"), **options),
                                                 [x, t], device=device)
    expected, grad, _ = reference(x, t, **options)
    np.testing.assert_allclose(loss, expected, rtol=1e-6, atol=0)
    qp, q = softmax_terms(x, t, axis, target_normalization)
    normalizer = x.size / shape[axis]  # VALID: every row
    qp, q = qp / normalizer, q / normalizer
    ulps = float32_ulps(dx, grad)
    cancelling = np.abs(qp - q) < 0.5 * (qp + q)
    if targets == "cancelling":
        assert cancelling.sum() > 0.05 * x.size / shape[axis]  # the case is there
    assert ulps[q == 0].max() <= 4.5, ulps[q == 0].max()
    assert ulps[~cancelling].max() <= 8.5, ulps[~cancelling].max()
    bound = 2 * FLOAT32_EPS * (qp + q) + 0.5 * np.spacing(np.abs(grad).astype(np.float32))
    assert np.all(np.abs(dx - grad)[cancelling] <= bound[cancelling])
    xm = np.moveaxis(x.astype(np.float64), axis, -1)
    e = np.exp(xm - xm.max(-1, keepdims=True))
    p = np.moveaxis(e / e.sum(-1, keepdims=True), -1, axis)
    assert float32_ulps(prob, p).max() <= 2.25, float32_ulps(prob, p).max()


@pytest.mark.parametrize("device", DEVICES)
def test_infinite_and_nan_scores(device):
    # +inf on the only target: the limit, loss 0; -inf elsewhere: p = 0.
    x = np.array([[np.inf, 1.0, -np.inf], [0.0, 1.0, 2.0], [np.nan, 0.0, 0.0]])
    t = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    (loss, *_), (dx, _) = caffe_xent.run_layer(
        prototxt(normalization="NONE"), [x[:2], t[:2]], device=device)
    _, grad, _ = reference(x[1:2], t[1:2], normalization="NONE")
    expected_loss, _, _ = reference(x[1:2], t[1:2], normalization="NONE")
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
    np.testing.assert_array_equal(dx[0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(dx[1:2], grad, rtol=1e-13)
    # NaN in gives NaN out.
    (loss, *_), (dx, _) = caffe_xent.run_layer(prototxt(), [x, t], device=device)
    assert np.isnan(loss) and np.all(np.isnan(dx[2])) and np.all(np.isfinite(dx[:2]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_scores_in_long_rows(dtype, device, rng):
    # Rows long enough for the vectorized paths: +inf, -inf and NaN scores.
    x = (rng.standard_normal((4, 40)) * 2).astype(dtype)
    t = multi_hot(rng, x.shape, 1).astype(dtype)
    x[0, 5], t[0, :], t[0, 5] = np.inf, 0, 1  # +inf on the only target: loss 0, grad 0
    x[1, 7], t[1, 7] = -np.inf, 0               # -inf on a negative class: p = 0
    x[2, 9] = np.nan
    layer = prototxt(normalization="NONE")
    (loss, *_), (dx, _) = caffe_xent.run_layer(layer, [x[:2], t[:2]], device=device)
    finite = np.delete(x[1], 7)[None]
    expected, grad, magnitude = reference(finite, np.delete(t[1], 7)[None], normalization="NONE")
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, expected, rtol=rtol)
    np.testing.assert_array_equal(dx[0], 0)
    assert dx[1, 7] == 0
    eps = FLOAT32_EPS if dtype == np.float32 else 16 * FLOAT64_EPS
    assert np.all(np.abs(np.delete(dx[1], 7) - grad[0]) <= 4 * eps * magnitude[0])
    (loss, *_), (dx, _) = caffe_xent.run_layer(layer, [x, t], device=device)
    assert np.isnan(loss) and np.all(np.isnan(dx[2]))
    assert np.all(np.isfinite(np.delete(dx, 2, axis=0)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ignored_rows_give_zero_and_are_not_counted(dtype, device, rng):
    x = (rng.standard_normal((5, 4, 3)) * 2).astype(dtype)
    t = multi_hot(rng, x.shape, 1).astype(dtype)
    t[1, :, 0] = 0.0    # row (1, 0): no positive
    t[3, 2, 2] = 255.0  # row (3, 2): ignore_label
    layer = prototxt(ignore_label=255, normalization="NONE")
    (loss_sum, *_), (dx, _) = caffe_xent.run_layer(layer, [x, t], device=device)
    assert np.all(dx[1, :, 0] == 0) and np.all(dx[3, :, 2] == 0)
    (loss_valid, *_), _ = caffe_xent.run_layer(prototxt(ignore_label=255), [x, t], device=device)
    rows = 5 * 3
    np.testing.assert_allclose(loss_valid * (rows - 2), loss_sum, rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_probability_top(device, rng):
    x = rng.standard_normal((2, 5, 3, 4))
    t = multi_hot(rng, x.shape, 1)
    tops, _ = caffe_xent.run_layer(prototxt(tops=("loss", "prob")), [x, t], device=device)
    assert len(tops) == 2 and tops[1].shape == x.shape
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(tops[1], e / e.sum(1, keepdims=True), rtol=1e-13)


def test_same_bits_for_any_thread_count():
    # Deterministic sums: the loss bits do not depend on OMP_NUM_THREADS.
    outputs = results_per_thread_count(prototxt(target_normalization="SUM"), (8, 21, 64, 64), 0.2)
    assert len(outputs) == 1, outputs


# ---- bad input: LayerError, and the interpreter survives ---------------------

X = np.zeros((4, 5))
T = np.eye(4, 5)
BAD = {
    "shape mismatch": (prototxt(), [X, np.zeros((4, 6))], {}, "shape"),
    "count mismatch": (prototxt(), [X, np.zeros(20)], {}, "shape"),
    "one bottom": (prototxt(), [X], {}, "bottoms"),
    "three bottoms": (prototxt(), [X, T, T], {}, "bottoms"),
    "three tops": (prototxt(tops=("a", "b", "c")), [X, T], {}, "tops"),
    "axis out of range": (prototxt(axis=2), [X, T], {}, "axis"),
    "negative axis out of range": (prototxt(axis=-3), [X, T], {}, "axis"),
    "class_weight length": (prototxt(class_weight=[1.0, 2.0]), [X, T], {}, "class_weight"),
    "negative class_weight": (prototxt(class_weight=[-1.0]), [X, T], {}, "class_weight"),
    "ignore_label 0": (prototxt(ignore_label=0), [X, T], {}, "ignore_label"),
    "label_smoothing 1": (prototxt(label_smoothing=1.0), [X, T], {}, "label_smoothing"),
    "negative label_smoothing": (prototxt(label_smoothing=-0.1), [X, T], {}, "label_smoothing"),
    "negative target": (prototxt(), [X, T - 0.5 * np.eye(4, 5, 1)], {}, "bottom[1]"),
    "NaN target": (prototxt(), [X, np.where(T > 0, T, np.nan)], {}, "bottom[1]"),
    "propagate_down to targets": (prototxt(), [X, T], {"propagate_down": [True, True]},
                                  "bottom[1]"),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_layer_error(case, device):
    layer, bottoms, kwargs, word = BAD[case]
    with pytest.raises(caffe_xent.LayerError, match="MultiLabelSoftmaxLoss layer 'mlsoftmax'") as info:
        caffe_xent.run_layer(layer, bottoms, device=device, **kwargs)
    assert word in str(info.value)
    # The process survives and the layer still works.
    (loss, *_), _ = caffe_xent.run_layer(prototxt(), [X, T], device=device)
    assert np.isfinite(loss)


def test_ignore_label_is_not_a_bad_target():
    t = T.copy()
    t[1, 3] = -1
    (loss, *_), (dx, _) = caffe_xent.run_layer(prototxt(ignore_label=-1), [X, t])
    assert np.all(dx[1] == 0) and np.isfinite(loss)


def test_gpu_requested_without_gpu_is_layer_error():
    if caffe_xent.gpu_available():
        pytest.skip("a GPU is available here: the refusal cannot be shown")
    with pytest.raises(caffe_xent.LayerError, match="gpu"):
        caffe_xent.run_layer(prototxt(), [X, T], device="gpu")


# ---- CPU vs GPU --------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
# (1, 5000, 40): few rows of a spatial map, each a block (not 40 threads).
@pytest.mark.parametrize("shape", [(256, 1000), (8, 21, 32, 32), (4, 17000), (3, 40, 7),
                                   (1, 5000, 40)])
@requires_gpu
def test_cpu_and_gpu_agree(shape, dtype, rng):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = soft_targets(rng, shape).astype(dtype)
    layer = prototxt(target_normalization="SUM", label_smoothing=0.1, tops=("loss", "prob"))
    (cpu_loss, cpu_prob), (cpu_dx, _) = caffe_xent.run_layer(layer, [x, t], device="cpu")
    (gpu_loss, gpu_prob), (gpu_dx, _) = caffe_xent.run_layer(layer, [x, t], device="gpu")
    np.testing.assert_allclose(gpu_loss, cpu_loss, rtol=1e-6)
    eps = FLOAT32_EPS if dtype == np.float32 else FLOAT64_EPS
    _, _, magnitude = reference(x, t, target_normalization="SUM", label_smoothing=0.1)
    assert np.all(np.abs(gpu_dx - cpu_dx) <= 8 * eps * magnitude)
    np.testing.assert_allclose(gpu_prob, cpu_prob, rtol=8 * eps, atol=1e-30)


# ---- pycaffe: NetSpec and a solver -------------------------------------------

def test_netspec_shorthand_and_training(tmp_path):
    caffe = pytest.importorskip("caffe")
    from caffe import layers as L, params as P

    caffe.set_mode_cpu()
    batch, features, classes = 32, 10, 6
    n = caffe.NetSpec()
    n.x, n.t = L.Input(shape=[dict(dim=[batch, features]), dict(dim=[batch, classes])], ntop=2)
    n.score = L.InnerProduct(n.x, num_output=classes, weight_filler=dict(type="xavier"))
    n.loss, n.prob = L.MultiLabelSoftmaxLoss(
        n.score, n.t, target_normalization=P.MultiLabelSoftmaxLoss.COUNT, ntop=2)
    net_text = str(n.to_proto())
    assert "multi_label_softmax_loss_param" in net_text
    net_file = tmp_path / "net.prototxt"
    net_file.write_text(net_text)
    solver_file = tmp_path / "solver.prototxt"
    solver_file.write_text('net: "%s"\nbase_lr: 0.1\nlr_policy: "fixed"\nmomentum: 0.9\n'
                           "max_iter: 1000\ndisplay: 0\nsnapshot_after_train: false\n" % net_file)
    solver = caffe.SGDSolver(str(solver_file))

    rng = np.random.default_rng(1)
    projection = rng.standard_normal((features, classes))

    def batch_data():
        x = rng.standard_normal((batch, features)).astype(np.float32)
        scores = x @ projection
        t = (scores > np.sort(scores, axis=1)[:, [-3]]).astype(np.float32)  # top-2 multi-hot
        return x, t

    def feed():
        x, t = batch_data()
        solver.net.blobs["x"].data[...] = x
        solver.net.blobs["t"].data[...] = t

    feed()
    first = float(solver.net.forward()["loss"])
    for _ in range(300):
        feed()
        solver.step(1)
    feed()
    out = solver.net.forward()
    last = float(out["loss"])
    # The best possible loss is log 2 (two equally likely positives per row).
    assert last < 0.7 * first, (first, last)
    np.testing.assert_allclose(out["prob"].sum(1), 1.0, rtol=1e-5)

"""SigmoidCrossEntropyLoss through caffe_xent.run_layer and through pycaffe.

Float64 layers are held to ~1e-12 of the float64 reference; float32 layers to
what float32 inputs allow: the element math has a few float32 ulp of error
(2^-24 ≈ 6e-8 each) and the sum is taken in double, so loss sums are within
~1e-6 relative and each gradient within a few ulp of the larger term.
"""
import itertools
import math
import os
import sys

import numpy as np
import pytest

import caffe_xent
from conftest import DEVICES, DTYPES, GPU_AVAILABLE, requires_gpu

sys.path.insert(0, os.path.dirname(__file__))
from sigmoid_cross_entropy_loss_reference import layer_text, reference  # noqa: E402

# Relative tolerance of a loss, absolute-per-magnitude tolerance of a gradient.
LOSS_RTOL = {np.float32: 2e-6, np.float64: 1e-12}
GRAD_RTOL = {np.float32: 4e-7, np.float64: 1e-14}

# The CPU SIMD path reads per-class options a vector at a time: element by
# element over one period when a class's run along the inner axes is short
# (the first four), from runs of one class when it is long (>= 64 elements):
# (2, 3, 7, 11) has runs of 77 that end inside vectors, (2, 2, 64) aligned ones.
SHAPES = [(7,), (4, 5), (3, 4, 2, 3), (2, 3, 1, 5), (2, 3, 7, 11), (2, 2, 64)]

OPTIONS = {
    "plain": {},
    "ignore": {"ignore_label": -1},
    "weights": {"_weights": True},
    "pos_weight_broadcast": {"pos_weight": [2.5]},
    "pos_weight_per_class": {"_per_class": "pos_weight"},
    "class_weight_per_class": {"_per_class": "class_weight", "ignore_label": -1},
    "focal": {"focal_gamma": 2.0, "focal_alpha": 0.25},
    "focal_gamma_fraction": {"focal_gamma": 0.5},
    "smoothing": {"label_smoothing": 0.1},
    "everything": {"_per_class": "both", "focal_gamma": 1.5, "focal_alpha": 0.75,
                   "label_smoothing": 0.2, "_weights": True, "ignore_label": -1},
    # Whole focal γ (up to 8) runs on the CPU's SIMD path, others element by element.
    "focal_alpha_only": {"focal_alpha": 0.25},
    "everything_whole_gamma": {"_per_class": "both", "focal_gamma": 3.0, "focal_alpha": 0.75,
                               "label_smoothing": 0.2, "_weights": True, "ignore_label": -1},
}


def make_inputs(rng, shape, dtype, ignore=False, weights=False, scale=3.0):
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    t = rng.uniform(0, 1, shape)
    t[rng.uniform(size=shape) < 0.4] = 1.0
    t[rng.uniform(size=shape) < 0.3] = 0.0
    if ignore:
        t[rng.uniform(size=shape) < 0.2] = -1
    bottoms = [x, t.astype(dtype)]
    if weights:
        bottoms.append(rng.uniform(0, 2, shape).astype(dtype))
    return bottoms


def resolve(options, shape, rng):
    """Options for layer_text/reference: per-class vectors sized to the shape."""
    opts = {k: v for k, v in options.items() if not k.startswith("_")}
    classes = shape[1] if len(shape) >= 2 else 1
    which = options.get("_per_class")
    # The proto stores floats: draw values that float32 holds exactly.
    if which in ("pos_weight", "both"):
        opts["pos_weight"] = [float(v) for v in rng.uniform(0.2, 3.0, classes).astype(np.float32)]
    if which in ("class_weight", "both"):
        opts["class_weight"] = [float(v) for v in rng.uniform(0.0, 2.0, classes).astype(np.float32)]
    return opts


def proto_floats(opts):
    """The options as the layer sees them: caffe.proto stores float32."""
    return {k: (float(np.float32(v)) if isinstance(v, float) else v) for k, v in opts.items()}


def check_close(actual, expected, dtype, what, extra=0.0):
    """actual within a few ulp of expected and of the blob's largest value,
    plus `extra` (per element) where a caller knows of a larger error bound."""
    actual = np.asarray(actual, dtype=np.float64)
    scale = np.max(np.abs(expected)) if np.size(expected) else 1.0
    tol = GRAD_RTOL[dtype] * 8 * (np.abs(expected) + scale) + extra
    bad = ~(np.abs(actual - expected) <= tol)
    assert not bad.any(), "%s: %d elements off, worst %r vs %r" % (
        what, bad.sum(), actual[bad][:3], np.asarray(expected)[bad][:3])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("normalization", ["FULL", "VALID", "BATCH_SIZE", "NONE", None])
def test_matches_float64_reference(name, shape, normalization, dtype, device, rng):
    options = OPTIONS[name]
    opts = resolve(options, shape, rng)
    bottoms = make_inputs(rng, shape, dtype, ignore="ignore_label" in opts,
                          weights=options.get("_weights", False))
    ref_opts = dict(proto_floats(opts), normalization=normalization or "BATCH_SIZE")
    if len(shape) < 2:
        ref_opts["axis"] = 0
    loss, element, grad = reference(*bottoms, **ref_opts)
    tops, diffs = caffe_xent.run_layer(layer_text(tops=2, normalization=normalization, **opts),
                                       bottoms, device=device)
    assert tops[0].shape == () and tops[0].dtype == dtype
    assert tops[1].shape == shape
    assert float(tops[0]) == pytest.approx(loss, rel=LOSS_RTOL[dtype], abs=1e-300)
    check_close(tops[1], element, dtype, "element loss")
    check_close(diffs[0], grad, dtype, "gradient")
    assert diffs[1] is None


def test_upstream_default_is_batch_size_normalized(rng):
    x, t = make_inputs(rng, (6, 5), np.float64)
    tops, _ = caffe_xent.run_layer('type: "SigmoidCrossEntropyLoss"', [x, t])
    expected = np.sum(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))) / 6
    assert float(tops[0]) == pytest.approx(expected, rel=1e-13)


def test_neutral_options_give_plain_loss(dtype, rng):
    bottoms = make_inputs(rng, (5, 4, 3), dtype)
    plain, _ = caffe_xent.run_layer(layer_text(), bottoms)
    neutral, _ = caffe_xent.run_layer(layer_text(pos_weight=[1] * 4, class_weight=[1] * 4,
                                                 focal_gamma=0, focal_alpha=-1,
                                                 label_smoothing=0), bottoms)
    assert float(neutral[0]) == pytest.approx(float(plain[0]), rel=LOSS_RTOL[dtype])
    ones, _ = caffe_xent.run_layer(layer_text(), bottoms + [np.ones_like(bottoms[0])])
    assert float(ones[0]) == pytest.approx(float(plain[0]), rel=LOSS_RTOL[dtype])


def test_element_top_gradient_flows(rng):
    x, t = make_inputs(rng, (3, 4), np.float64)
    element_diff = rng.standard_normal((3, 4))
    _, element, grad = reference(x, t, normalization="NONE")
    _, _, unit = reference(x, t, normalization="NONE")
    tops, diffs = caffe_xent.run_layer(layer_text(tops=2, normalization="NONE"), [x, t],
                                       top_diffs=[np.array(2.0), element_diff])
    np.testing.assert_allclose(diffs[0], unit * (2.0 + element_diff), rtol=1e-13, atol=1e-300)


# ---- against PyTorch ---------------------------------------------------------

@pytest.mark.parametrize("with_pos_weight,with_weight", list(itertools.product([False, True], [False, True])))
def test_matches_torch_bce_with_logits(with_pos_weight, with_weight, dtype, rng):
    torch = pytest.importorskip("torch")
    shape = (8, 6, 3)
    x, t = make_inputs(rng, shape, dtype)
    pos_weight = rng.uniform(0.2, 3, 6).astype(np.float32).astype(np.float64) if with_pos_weight else None
    class_weight = rng.uniform(0, 2, 6).astype(np.float32).astype(np.float64) if with_weight else None
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    kwargs = {}
    if pos_weight is not None:
        kwargs["pos_weight"] = torch.tensor(pos_weight.reshape(6, 1))  # class axis 1
    if class_weight is not None:
        kwargs["weight"] = torch.tensor(class_weight.reshape(6, 1))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        xt, torch.tensor(t.astype(np.float64)), reduction="mean", **kwargs)
    expected.backward()
    tops, diffs = caffe_xent.run_layer(
        layer_text(normalization="FULL", pos_weight=[] if pos_weight is None else pos_weight,
                   class_weight=[] if class_weight is None else class_weight), [x, t])
    assert float(tops[0]) == pytest.approx(expected.item(), rel=LOSS_RTOL[dtype])
    check_close(diffs[0], xt.grad.numpy(), dtype, "gradient vs torch autograd")


# ---- extremes ----------------------------------------------------------------

def test_huge_and_infinite_logits_never_nan(dtype, device):
    x = np.array([-np.inf, -1e4, -1e3, -100, -30, 0, 30, 100, 1e3, 1e4, np.inf], dtype=dtype)
    for options in ({}, {"pos_weight": [3.0]}, {"focal_gamma": 2.0, "focal_alpha": 0.25},
                    {"focal_gamma": 0.5}, {"label_smoothing": 0.1}):
        for target in (0.0, 0.3, 1.0):
            t = np.full_like(x, target)
            tops, diffs = caffe_xent.run_layer(layer_text(tops=2, **options), [x, t], device=device)
            assert not np.isnan(tops[1]).any(), (options, target, tops[1])
            assert np.isfinite(diffs[0]).all(), (options, target, diffs[0])
            finite = np.isfinite(x)
            assert np.isfinite(tops[1][finite]).all()
            _, element, grad = reference(x, t, axis=0, **proto_floats(options))
            # The limits at ±inf, and float-exact values for huge finite x
            # (a few subnormal steps where the loss itself is subnormal).
            info = np.finfo(dtype)
            np.testing.assert_allclose(tops[1], element, rtol=4 * info.eps,
                                       atol=4 * info.tiny * info.eps)
            np.testing.assert_allclose(diffs[0] * len(x), grad * len(x), rtol=8 * np.finfo(dtype).eps,
                                       atol=8 * np.finfo(dtype).eps)


NAN_OPTIONS = {
    "plain": {},
    "ignore_label": {"ignore_label": -1},
    "class weight 0": {"class_weight": [0.0, 1.0, 2.0]},
    "pos_weight": {"pos_weight": [3.0]},
    "focal": {"focal_gamma": 2.0},
    "focal 0.5": {"focal_gamma": 0.5},
    "asl": {"focal_gamma": 0.0, "focal_gamma_neg": 4.0, "focal_margin": 0.05},
    "weights bottom": {},
}


@pytest.mark.parametrize("tops", [1, 2], ids=["gradient in forward", "own backward"])
@pytest.mark.parametrize("case", list(NAN_OPTIONS))
def test_nan_propagates_in_every_lane(dtype, device, case, tops, rng):
    """NaN logits in whole vectors and in the padded tail (111 elements:
    several vectors and a tail on every SIMD width) give NaN in their own
    loss and gradient, also where a weight of 0 would scale a finite value to
    0, and nowhere else: float32 lanes carry the NaN through e^-|x| and the
    arithmetic, other paths select it."""
    x = (rng.standard_normal((37, 3)) * 4).astype(dtype)
    t = (rng.random((37, 3)) < 0.3).astype(dtype)
    nan = np.zeros(x.shape, bool)
    nan.flat[[0, 5, 17, 40, 64, 100, 110]] = True  # class 0 at 0: weight 0 there
    x[nan] = np.nan
    if case == "ignore_label":
        t.flat[[1, 20, 109]] = -1  # ignored elements with finite logits
    bottoms = [x, t]
    if case == "weights bottom":
        w = rng.uniform(0, 2, x.shape).astype(dtype)
        w[nan] = 0.0
        bottoms.append(w)
    tops_out, diffs = caffe_xent.run_layer(layer_text(tops=tops, **NAN_OPTIONS[case]), bottoms,
                                           device=device)
    assert np.isnan(tops_out[0]), case
    np.testing.assert_array_equal(np.isnan(diffs[0]), nan)
    assert np.isfinite(diffs[0][~nan]).all()
    if tops == 2:
        np.testing.assert_array_equal(np.isnan(tops_out[1]), nan)


def test_nan_propagates(dtype, device):
    x = np.array([0.5, np.nan, -2.0], dtype=dtype)
    t = np.array([1.0, 0.0, 0.0], dtype=dtype)
    tops, diffs = caffe_xent.run_layer(layer_text(tops=2), [x, t], device=device)
    assert np.isnan(tops[0])
    assert np.isnan(tops[1][1]) and np.isfinite(tops[1][[0, 2]]).all()
    assert np.isnan(diffs[0][1]) and np.isfinite(diffs[0][[0, 2]]).all()
    tops, _ = caffe_xent.run_layer(layer_text(focal_gamma=2.0), [x, t], device=device)
    assert np.isnan(tops[0])


def test_accuracy_against_mpmath(dtype):
    import mpmath  # a test dependency (pyproject's test extra, installed by make)
    mpmath.mp.dps = 40
    xs = np.array([-1e4, -700, -90, -30, -17, -5, -1, -1e-3, 0, 1e-3, 1, 5, 17, 30, 90, 700, 1e4],
                  dtype=dtype)
    for target in (0.0, 0.25, 0.5, 0.999, 1.0):
        t = np.full_like(xs, target)
        tops, diffs = caffe_xent.run_layer(layer_text(tops=2, normalization="NONE"), [xs, t])
        for x, loss, grad in zip(xs, tops[1], diffs[0]):
            mx, mt = mpmath.mpf(float(x)), mpmath.mpf(float(t[0]))  # the target as stored
            sig = 1 / (1 + mpmath.exp(-mx))
            sig_neg = 1 / (1 + mpmath.exp(mx))  # σ(-x) directly: 1 - σ(x) cancels
            exact = mt * mpmath.log1p(mpmath.exp(-mx)) + (1 - mt) * mpmath.log1p(mpmath.exp(mx))
            exact_grad = (1 - mt) * sig - mt * sig_neg
            info = np.finfo(dtype)
            eps, subnormal_step = float(info.eps), float(info.tiny * info.eps)
            # The loss: a sum of non-negative terms, a few ulp of itself
            # (a few subnormal steps where it is subnormal).
            assert abs(float(loss) - float(exact)) <= 4 * eps * float(exact) + 4 * subnormal_step, (x, target)
            # The gradient (1-t)σ(x) - tσ(-x) is a difference: a few ulp of
            # its terms (the best possible near its root, where σ(x) = t).
            terms = float((1 - mt) * sig + mt * sig_neg)
            assert abs(float(grad) - float(exact_grad)) <= 4 * eps * terms + 4 * subnormal_step, (x, target)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pos_weight", [1.0, 3.0], ids=["plain", "pos_weight"])
def test_gradient_accurate_where_its_terms_cancel(dtype, pos_weight, device, rng):
    """∂ℓ/∂x = (1-t)σ(x) - pw·t·σ(-x) at its root: t = σ(x)/(σ(x) + pw·σ(-x))
    rounded to the dtype, so the exact derivative is only what that rounding
    left, far below its two terms.

    Where the layer retakes the difference in double (float64 blobs, and
    every blob on the GPU), the bound is one rounding to the dtype plus
    double's error on the terms: 2 ulp of the value + 8·2^-53·terms. The
    CPU's float32 SIMD path keeps the difference as computed in float32
    (docs/sigmoid_cross_entropy_loss.md, "Accuracy of the gradient"): the
    bracket a - b·e is one fused rounding of terms whose inputs carry ~2 ulp
    (Highway's Exp) and σ(|x|) = 1/(1+e) one more, so 4 float32 ulp of the
    larger term. Either way never worse than PyTorch's σ(x) - t, which loses
    all of σ(-x) for large x."""
    import mpmath
    mpmath.mp.dps = 50
    n = 400
    x = np.concatenate([rng.standard_normal(n) * 4, rng.standard_normal(n) * 1e-3,
                        10.0 ** rng.uniform(-12, -1, n) * rng.choice([-1, 1], n)]).astype(dtype)
    x64 = x.astype(np.float64)
    s, s_neg = 1 / (1 + np.exp(-x64)), 1 / (1 + np.exp(x64))
    t = (s / (s + pos_weight * s_neg)).astype(dtype)
    layer = layer_text(normalization="NONE", pos_weight=[pos_weight] if pos_weight != 1 else ())
    _, diffs = caffe_xent.run_layer(layer, [x, t], device=device)
    eps = float(np.finfo(dtype).eps)
    retaken = dtype == np.float64 or device == "gpu"
    strict = 0
    for xi, ti, got in zip(x, t, diffs[0]):
        mx, mt = mpmath.mpf(float(xi)), mpmath.mpf(float(ti))
        first = (1 - mt) / (1 + mpmath.exp(-mx))
        second = pos_weight * mt / (1 + mpmath.exp(mx))
        exact = float(first - second)
        larger = float(max(first, second))
        if retaken:
            bound = 2 * eps * abs(exact) + 8 * 2.0 ** -53 * float(first + second)
        else:
            bound = 4 * eps * larger
        bound += float(np.finfo(dtype).smallest_subnormal)
        assert abs(float(got) - exact) <= bound, (xi, ti, got, exact)
        strict += 2 * eps * abs(exact) >= 8 * 2.0 ** -53 * float(first + second)
    if dtype == np.float32 and retaken:
        # Not vacuous: for most of these roots (about 80 %) the bound is a few ulp
        # of the value itself, not of the (much larger) terms.
        assert strict >= 2 * len(x) // 3


def test_large_float32_blob_sum_is_accurate(rng):
    n = 1 << 24
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    t = (rng.uniform(size=n) < 0.1).astype(np.float32)
    xd = x.astype(np.float64)
    td = t.astype(np.float64)
    exact = math.fsum(td * np.log1p(np.exp(-np.abs(xd))) + td * np.maximum(-xd, 0)
                      + (1 - td) * (np.maximum(xd, 0) + np.log1p(np.exp(-np.abs(xd)))))
    tops, _ = caffe_xent.run_layer(layer_text(normalization="NONE"), [x.reshape(64, -1), t.reshape(64, -1)],
                                   propagate_down=[False, False])
    assert float(tops[0]) == pytest.approx(exact, rel=1e-6)


def test_same_bits_every_run(rng):
    x, t = make_inputs(rng, (16, 50000), np.float32)
    first, first_diff = caffe_xent.run_layer(layer_text(), [x, t])
    for _ in range(3):
        again, again_diff = caffe_xent.run_layer(layer_text(), [x, t])
        assert again[0].tobytes() == first[0].tobytes()
        assert again_diff[0].tobytes() == first_diff[0].tobytes()


@requires_gpu
@pytest.mark.parametrize("name", list(OPTIONS))
def test_cpu_and_gpu_agree(name, dtype, rng):
    shape = (64, 7, 300)
    options = OPTIONS[name]
    opts = resolve(options, shape, rng)
    bottoms = make_inputs(rng, shape, dtype, ignore="ignore_label" in opts,
                          weights=options.get("_weights", False))
    cpu, cpu_diff = caffe_xent.run_layer(layer_text(**opts), bottoms, device="cpu")
    gpu, gpu_diff = caffe_xent.run_layer(layer_text(**opts), bottoms, device="gpu")
    assert float(gpu[0]) == pytest.approx(float(cpu[0]), rel=1e-6)
    scale = np.max(np.abs(cpu_diff[0]))
    np.testing.assert_allclose(gpu_diff[0], cpu_diff[0], rtol=1e-5, atol=1e-6 * scale)


# ---- bad input: LayerError with a clear message ---------------------------------

BAD = [
    ("one bottom", layer_text(), lambda x, t, w: [x], "needs 2 bottoms"),
    ("four bottoms", layer_text(), lambda x, t, w: [x, t, w, w], "needs 2 bottoms"),
    ("count mismatch", layer_text(), lambda x, t, w: [x, t[:, :2]], "bottom[1] (targets) has 12 elements"),
    ("weights count", layer_text(), lambda x, t, w: [x, t, w[:, :1]], "bottom[2] (weights) has 6 elements"),
    ("target above 1", layer_text(), lambda x, t, w: [x, t + 1.5], "bottom[1] (targets)"),
    ("negative target", layer_text(), lambda x, t, w: [x, t - 2], "outside [0, 1]"),
    ("nan target", layer_text(), lambda x, t, w: [x, np.where(t > 0.5, np.nan, t)], "outside [0, 1]"),
    ("wrong ignore value", layer_text(ignore_label=-1), lambda x, t, w: [x, t - 3], "not ignore_label"),
    ("negative weight", layer_text(), lambda x, t, w: [x, t, -w], "bottom[2] (weights)"),
    ("axis out of range", layer_text(axis=3), lambda x, t, w: [x, t], "axis = 3 is out of range"),
    ("negative axis out of range", layer_text(axis=-4), lambda x, t, w: [x, t], "out of range"),
    ("pos_weight length", layer_text(pos_weight=[1, 2]), lambda x, t, w: [x, t], "pos_weight has 2 values"),
    ("class_weight length", layer_text(class_weight=[1, 2, 3, 4, 5]), lambda x, t, w: [x, t], "class_weight has 5 values"),
    ("negative pos_weight", layer_text(pos_weight=[-1]), lambda x, t, w: [x, t], "pos_weight[0] = -1 is negative"),
    ("negative class_weight", layer_text(class_weight=[1, -2, 1, 1]), lambda x, t, w: [x, t], "class_weight[1]"),
    ("negative gamma", layer_text(focal_gamma=-0.5), lambda x, t, w: [x, t], "focal_gamma = -0.5"),
    ("infinite gamma", layer_text(focal_gamma=float("inf")), lambda x, t, w: [x, t], "focal_gamma = inf"),
    ("alpha above 1", layer_text(focal_alpha=1.5), lambda x, t, w: [x, t], "focal_alpha = 1.5"),
    ("alpha negative", layer_text(focal_alpha=-0.5), lambda x, t, w: [x, t], "focal_alpha"),
    ("smoothing 1", layer_text(label_smoothing=1.0), lambda x, t, w: [x, t], "label_smoothing = 1"),
    ("smoothing negative", layer_text(label_smoothing=-0.1), lambda x, t, w: [x, t], "label_smoothing"),
    ("three tops", layer_text().replace('type:', 'top: "a" top: "b" top: "c" type:'),
     lambda x, t, w: [x, t], "needs 1 top"),
]


@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_layer_error(case, dtype, rng):
    _, text, make, needle = case
    x = rng.standard_normal((2, 4, 3)).astype(dtype)
    t = rng.uniform(size=(2, 4, 3)).astype(dtype)
    w = rng.uniform(0.1, 1, size=(2, 4, 3)).astype(dtype)
    with pytest.raises(caffe_xent.LayerError) as info:
        caffe_xent.run_layer(text, make(x, t, w))
    message = str(info.value)
    assert needle in message
    assert "SigmoidCrossEntropyLoss layer 'xent'" in message


@pytest.mark.parametrize("down", [[True, True], [True, False, True]])
def test_propagate_down_to_targets_or_weights_raises(down, rng):
    x = rng.standard_normal((2, 3))
    bottoms = [x, rng.uniform(size=(2, 3))] + ([rng.uniform(size=(2, 3))] if len(down) == 3 else [])
    with pytest.raises(caffe_xent.LayerError, match=r"cannot back-propagate to bottom\[%d\]" % (len(down) - 1)):
        caffe_xent.run_layer(layer_text(), bottoms, propagate_down=down)


def test_process_survives_errors(rng):
    x, t = make_inputs(rng, (3, 4), np.float32)
    for _ in range(3):
        with pytest.raises(caffe_xent.LayerError):
            caffe_xent.run_layer(layer_text(), [x, t + 2])
    tops, _ = caffe_xent.run_layer(layer_text(), [x, t])
    assert np.isfinite(tops[0])


def test_gpu_request_without_gpu_raises():
    if GPU_AVAILABLE:
        pytest.skip("a GPU is available here; the refusal is for machines without one")
    with pytest.raises(caffe_xent.LayerError, match="gpu"):
        caffe_xent.run_layer(layer_text(), [np.zeros((2, 2)), np.zeros((2, 2))], device="gpu")


# ---- through pycaffe -----------------------------------------------------------

NET = """
name: "multilabel"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 32 dim: 10 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 32 dim: 5 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "xent" type: "SigmoidCrossEntropyLoss" bottom: "fc" bottom: "label" top: "loss"
        sigmoid_cross_entropy_loss_param { pos_weight: 2 focal_gamma: 1 } }
"""


def _problem(rng):
    true_weights = rng.standard_normal((10, 5))
    data = rng.standard_normal((32, 10)).astype(np.float32)
    label = (data @ true_weights > 0).astype(np.float32)
    return data, label


def test_pycaffe_net_forward_backward_and_error(tmp_path, rng):
    caffe = pytest.importorskip("caffe")
    caffe.set_mode_cpu()
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    net = caffe.Net(str(path), caffe.TRAIN)
    data, label = _problem(rng)
    net.blobs["data"].data[...] = data
    net.blobs["label"].data[...] = label
    loss = float(net.forward()["loss"])
    assert np.isfinite(loss) and loss > 0
    net.backward()
    assert np.abs(net.params["fc"][0].diff).sum() > 0
    # Bad targets: a Python exception, and the net keeps working afterwards.
    net.blobs["label"].data[0, 0] = 7
    with pytest.raises(ValueError, match="targets"):
        net.forward()
    net.blobs["label"].data[...] = label
    assert float(net.forward()["loss"]) == pytest.approx(loss, rel=1e-6)


def test_pycaffe_sgd_solver_trains(tmp_path, rng):
    caffe = pytest.importorskip("caffe")
    caffe.set_mode_cpu()
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(
        'net: "%s" base_lr: 0.5 momentum: 0.9 lr_policy: "fixed" max_iter: 200 '
        'display: 0 snapshot_after_train: false solver_mode: CPU' % (tmp_path / "net.prototxt"))
    solver = caffe.SGDSolver(str(tmp_path / "solver.prototxt"))
    data, label = _problem(rng)
    losses = []
    for _ in range(60):
        solver.net.blobs["data"].data[...] = data
        solver.net.blobs["label"].data[...] = label
        solver.step(1)
        losses.append(float(solver.net.blobs["loss"].data))
    assert losses[-1] < 0.5 * losses[0], losses[::10]

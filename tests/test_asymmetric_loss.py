"""The asymmetric form of SigmoidCrossEntropyLoss (ASL: focal_gamma_neg,
focal_margin) through caffe_xent.run_layer.

Held to the independent float64 reference (sigmoid_cross_entropy_loss_reference.py)
with the tolerances of test_sigmoid_cross_entropy_loss.py, plus, with a
margin, what the documented bound adds: the negative term is computed from
p_m = σ(x) - m, and σ(x) carries a few ulp of relative error, so where p_m
is small against σ(x) the layer's value is that of a probability within
MARGIN_ULPS ulp of σ(x) (docs/sigmoid_cross_entropy_loss.md, "The asymmetric
form"). The slack is that change of the float64 reference, per element.
"""
import math
import os
import sys

import numpy as np
import pytest

import caffe_xent
from conftest import requires_gpu

sys.path.insert(0, os.path.dirname(__file__))
from sigmoid_cross_entropy_loss_reference import layer_text, reference  # noqa: E402
from test_sigmoid_cross_entropy_loss import (LOSS_RTOL, check_close, make_inputs,  # noqa: E402
                                             proto_floats, resolve)

# σ(x) within this many ulp of the blob's type (the CPU's SIMD Exp and the
# division 1/(1+e) each add one or two).
MARGIN_ULPS = 4

SHAPES = [(7,), (4, 5), (3, 4, 2, 3), (2, 3, 7, 11), (2, 2, 64)]

OPTIONS = {
    # The paper's defaults (γ+ 0, γ- 4, m 0.05) and timm's (γ+ 1).
    "asl_paper": {"focal_gamma": 0.0, "focal_gamma_neg": 4.0, "focal_margin": 0.05},
    "asl_timm": {"focal_gamma": 1.0, "focal_gamma_neg": 4.0, "focal_margin": 0.05},
    "gamma_neg_only": {"focal_gamma": 2.0, "focal_gamma_neg": 0.0},
    "margin_only": {"focal_margin": 0.2},
    "margin_gamma_zero": {"focal_gamma_neg": 0.0, "focal_margin": 0.3},
    "alpha_pos_weight": {"focal_gamma": 2.0, "focal_gamma_neg": 3.0, "focal_margin": 0.1,
                         "focal_alpha": 0.25, "pos_weight": [2.5]},
    "everything": {"_per_class": "both", "focal_gamma": 1.0, "focal_gamma_neg": 3.0,
                   "focal_margin": 0.1, "focal_alpha": 0.75, "label_smoothing": 0.2,
                   "_weights": True, "ignore_label": -1},
    # Not whole: the scalar element loop for float32 too.
    "fractional": {"focal_gamma": 0.5, "focal_gamma_neg": 2.5, "focal_margin": 0.05},
    "fractional_below_one": {"focal_gamma_neg": 0.5, "focal_margin": 0.1, "ignore_label": -1},
}


def margin_slack(bottoms, ref_opts, dtype):
    """Per element: how far the reference's element loss and gradient move
    when σ(x) moves by MARGIN_ULPS ulp, where the negative term's p_m is
    below 1/2 (there 1 - p_m and p_m come from σ(x); above, every factor
    keeps its relative precision). Zero without a margin."""
    margin = ref_opts.get("focal_margin", 0.0)
    x = bottoms[0].astype(np.float64)
    if not margin:
        return 0.0, 0.0
    delta = MARGIN_ULPS * np.finfo(dtype).eps
    with np.errstate(over="ignore"):
        p = 1 / (1 + np.exp(-x))
    near = (p - margin <= 0.5) & np.isfinite(x)
    # Δp = δ·p moves x by δ·p / (p(1-p)) = δ / (1-p); 1-p >= 1/2 - m here.
    step = np.where(near, delta / np.maximum(1 - p, 1e-3), 0.0)
    rest = [b.astype(np.float64) for b in bottoms[1:]]
    _, up, grad_up = reference(x + step, *rest, **ref_opts)
    _, down, grad_down = reference(x - step, *rest, **ref_opts)
    _, mid, grad_mid = reference(x, *rest, **ref_opts)
    element = np.maximum(np.abs(up - mid), np.abs(down - mid))
    grad = np.maximum(np.abs(grad_up - grad_mid), np.abs(grad_down - grad_mid))
    return np.where(near, element, 0.0), np.where(near, grad, 0.0)


def run_and_reference(opts, bottoms, device, normalization=None, shape=None):
    ref_opts = dict(proto_floats(opts), normalization=normalization or "BATCH_SIZE")
    if shape is not None and len(shape) < 2:
        ref_opts["axis"] = 0
    expected = reference(*bottoms, **ref_opts)
    tops, diffs = caffe_xent.run_layer(layer_text(tops=2, normalization=normalization, **opts),
                                       bottoms, device=device)
    return tops, diffs, expected, ref_opts


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("normalization", ["FULL", "VALID", None])
def test_matches_float64_reference(name, shape, normalization, dtype, device, rng):
    options = OPTIONS[name]
    opts = resolve(options, shape, rng)
    bottoms = make_inputs(rng, shape, dtype, ignore="ignore_label" in opts,
                          weights=options.get("_weights", False))
    tops, diffs, (loss, element, grad), ref_opts = run_and_reference(
        opts, bottoms, device, normalization, shape)
    slack_element, slack_grad = margin_slack(bottoms, ref_opts, dtype)
    assert tops[0].dtype == dtype and tops[1].shape == shape
    assert float(tops[0]) == pytest.approx(loss, rel=LOSS_RTOL[dtype], abs=1e-300)
    check_close(tops[1], element, dtype, "element loss", extra=slack_element)
    check_close(diffs[0], grad, dtype, "gradient", extra=slack_grad)


def test_float32_simd_path_matches_the_scalar_element_loop(rng):
    """Float32 blobs with whole γ+, γ- take the SIMD path (on whichever
    target this process dispatches to: tests/test_simd_targets.py reruns
    this file on each); float64 blobs the scalar element math. The two agree
    to float32's bound."""
    shape = (16, 9, 33)
    for name in ("asl_paper", "asl_timm", "alpha_pos_weight", "everything", "margin_only"):
        options = OPTIONS[name]
        opts = resolve(options, shape, rng)
        b32 = make_inputs(rng, shape, np.float32, ignore="ignore_label" in opts,
                          weights=options.get("_weights", False))
        b64 = [b.astype(np.float64) for b in b32]
        text = layer_text(tops=2, **opts)
        tops32, diffs32 = caffe_xent.run_layer(text, b32)
        tops64, diffs64 = caffe_xent.run_layer(text, b64)
        slack_element, slack_grad = margin_slack(b32, proto_floats(opts), np.float32)
        assert float(tops32[0]) == pytest.approx(float(tops64[0]), rel=LOSS_RTOL[np.float32])
        check_close(tops32[1], tops64[1], np.float32, name + " element loss", extra=slack_element)
        check_close(diffs32[0], diffs64[0], np.float32, name + " gradient", extra=slack_grad)


def test_hard_targets_give_the_focal_loss(dtype, device, rng):
    """γ- = γ+ and m = 0 on 0/1 targets: the asymmetric form is the focal
    loss the layer computes without the options (with α, pos_weight and
    class weights)."""
    shape = (6, 5, 4)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    t = (rng.uniform(size=shape) < 0.4).astype(dtype)
    for gamma in (0.0, 1.0, 2.0, 2.5):
        common = dict(focal_gamma=gamma, focal_alpha=0.25, pos_weight=[3.0],
                      class_weight=[1.0, 0.5, 2.0, 1.5, 0.25])
        focal = caffe_xent.run_layer(layer_text(tops=2, **common), [x, t], device=device)
        asym = caffe_xent.run_layer(layer_text(tops=2, focal_gamma_neg=gamma, **common), [x, t],
                                    device=device)
        assert float(asym[0][0]) == pytest.approx(float(focal[0][0]), rel=LOSS_RTOL[dtype])
        check_close(asym[0][1], focal[0][1], dtype, "element loss, γ = %r" % gamma)
        check_close(asym[1][0], focal[1][0], dtype, "gradient, γ = %r" % gamma)


def test_soft_targets_take_the_expectation_not_the_focal_form(rng):
    """For a soft target the asymmetric form is the expectation over the
    target, τ·(positive term) + (1-τ)·(negative term); the focal form
    modulates the whole cross-entropy by (1-p_t)^γ. They differ."""
    x = np.array([-2.0, -0.5, 0.3, 1.7])
    t = np.array([0.3, 0.5, 0.7, 0.9])
    gamma = 2.0
    tops, _ = caffe_xent.run_layer(layer_text(tops=2, focal_gamma=gamma, focal_gamma_neg=gamma),
                                   [x, t])
    p = 1 / (1 + np.exp(-x))
    expectation = t * (1 - p) ** gamma * -np.log(p) + (1 - t) * p ** gamma * -np.log1p(-p)
    np.testing.assert_allclose(tops[1], expectation, rtol=1e-13)
    focal, _ = caffe_xent.run_layer(layer_text(tops=2, focal_gamma=gamma), [x, t])
    q = t * (1 - p) + (1 - t) * p
    torchvision_form = q ** gamma * (t * -np.log(p) + (1 - t) * -np.log1p(-p))
    np.testing.assert_allclose(focal[1], torchvision_form, rtol=1e-13)
    assert np.all(np.abs(tops[1] - focal[1]) > 1e-3 * focal[1])


# ---- against timm's AsymmetricLossMultiLabel ------------------------------------

def timm_asymmetric_loss(torch, x, y, gamma_neg, gamma_pos, clip, eps=1e-8, weight=None,
                         pos_weight=None):
    """timm's AsymmetricLossMultiLabel (timm/loss/asymmetric_loss.py, with
    disable_torch_grad_focal_loss=False and reduction 'batchmean'), written
    out from its formula for this test (timm is not a dependency):
    p = σ(x), p_neg = min(1 - p + clip, 1), the per-element
    -[y·pos_weight·log max(p, eps) + (1-y)·log max(p_neg, eps)]·(1 - p_t)^γ
    with p_t = p·y + p_neg·(1-y) and γ = γ+·y + γ-·(1-y), times weight,
    summed and divided by the batch size."""
    p = torch.sigmoid(x)
    p_neg = 1 - p
    if clip > 0:
        p_neg = torch.clamp(p_neg + clip, max=1)
    positive = y * torch.log(torch.clamp(p, min=eps))
    if pos_weight is not None:
        positive = positive * pos_weight
    negative = (1 - y) * torch.log(torch.clamp(p_neg, min=eps))
    p_t = p * y + p_neg * (1 - y)
    focusing = torch.pow(1 - p_t, gamma_pos * y + gamma_neg * (1 - y))
    loss = -(positive + negative) * focusing
    if weight is not None:
        loss = loss * weight
    return loss.sum() / x.shape[0]


@pytest.mark.parametrize("gammas", [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (2.0, 1.0, 0.0),
                                    (0.0, 2.0, 0.3)], ids=str)
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_timm_asymmetric_loss(gammas, weighted, dtype, device, rng):
    torch = pytest.importorskip("torch")
    gamma_pos, gamma_neg, margin = gammas
    margin = float(np.float32(margin))  # the proto field is a float, as the layer sees it
    classes = 20
    x = (rng.standard_normal((32, classes)) * 3).astype(dtype)
    # timm clamps p at eps = 1e-8 before the log: logits above -18 keep it inactive.
    x = np.clip(x, -15, 15)
    y = (rng.uniform(size=(32, classes)) < 0.2).astype(dtype)  # multi-hot
    pos_weight = rng.uniform(0.5, 3, classes).astype(np.float32) if weighted else None
    weight = rng.uniform(0.2, 2, classes).astype(np.float32) if weighted else None
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    expected = timm_asymmetric_loss(
        torch, xt, torch.tensor(y.astype(np.float64)), gamma_neg, gamma_pos, margin,
        weight=None if weight is None else torch.tensor(weight.astype(np.float64)),
        pos_weight=None if pos_weight is None else torch.tensor(pos_weight.astype(np.float64)))
    expected.backward()
    opts = dict(focal_gamma=gamma_pos, focal_gamma_neg=gamma_neg, focal_margin=margin)
    if weighted:
        opts.update(pos_weight=[float(v) for v in pos_weight],
                    class_weight=[float(v) for v in weight])
    tops, diffs = caffe_xent.run_layer(layer_text(**opts), [x, y], device=device)
    slack_element, slack_grad = margin_slack([x, y], proto_floats(opts), dtype)
    assert float(tops[0]) == pytest.approx(expected.item(), rel=LOSS_RTOL[dtype])
    check_close(diffs[0], xt.grad.numpy(), dtype, "gradient vs autograd", extra=slack_grad)


# ---- extremes -------------------------------------------------------------------

EXTREME_X = [-np.inf, -1e30, -1e4, -100, -30, -3, 0, 3, 30, 100, 1e4, 1e30, np.inf]


@pytest.mark.parametrize("options", [
    {"focal_gamma": 0.0, "focal_gamma_neg": 4.0, "focal_margin": 0.05},
    {"focal_gamma": 2.0, "focal_gamma_neg": 1.0},
    {"focal_gamma": 1.0, "focal_gamma_neg": 0.0, "focal_margin": 0.5, "pos_weight": [3.0]},
    {"focal_gamma": 0.5, "focal_gamma_neg": 2.5, "focal_margin": 0.1, "label_smoothing": 0.1},
], ids=str)
def test_huge_and_infinite_logits(options, dtype, device):
    x = np.array(EXTREME_X, dtype=dtype)
    for target in (0.0, 0.3, 1.0):
        t = np.full_like(x, target)
        tops, diffs = caffe_xent.run_layer(layer_text(tops=2, **options), [x, t], device=device)
        assert not np.isnan(tops[1]).any(), (target, tops[1])
        assert np.isfinite(tops[1][np.isfinite(x)]).all(), (target, tops[1])
        assert np.isfinite(diffs[0]).all(), (target, diffs[0])
        _, element, grad = reference(x, t, axis=0, **proto_floats(options))
        # The limits at ±inf (+inf for the term whose logarithm diverges, a
        # finite -log(m) with a margin), float-exact values for huge x.
        info = np.finfo(dtype)
        np.testing.assert_allclose(tops[1], element, rtol=16 * info.eps,
                                   atol=4 * info.tiny * info.eps)
        np.testing.assert_allclose(diffs[0] * len(x), grad * len(x), rtol=16 * info.eps,
                                   atol=16 * info.eps)


def test_margin_limit_at_infinity(dtype, device):
    """t = 0, x = +inf: p_m = 1 - m, the loss -log(m)·(1-m)^γ-, gradient 0."""
    margin, gamma_neg = 0.05, 4.0
    x = np.array([np.inf], dtype=dtype)
    t = np.zeros(1, dtype=dtype)
    tops, diffs = caffe_xent.run_layer(
        layer_text(tops=2, focal_gamma_neg=gamma_neg, focal_margin=margin), [x, t], device=device)
    m = float(np.float32(margin))
    assert float(tops[1][0]) == pytest.approx((1 - m) ** gamma_neg * -math.log(m),
                                              rel=4 * float(np.finfo(dtype).eps))
    assert diffs[0][0] == 0


@pytest.mark.parametrize("gamma_neg", [0.0, 1.0, 4.0, 2.5])
def test_probability_at_or_below_the_margin_gives_exactly_zero(gamma_neg, dtype, device, rng):
    """σ(x) <= m: the negative term and its gradient are exactly 0, for a
    negative target; a soft target keeps its positive term only."""
    margin = 0.2
    x = np.concatenate([np.linspace(-40, math.log(0.2 / 0.8) - 1e-3, 50), [-np.inf]]).astype(dtype)
    assert (1 / (1 + np.exp(-x.astype(np.float64))) <= margin).all()
    text = layer_text(tops=2, focal_gamma=2.0, focal_gamma_neg=gamma_neg, focal_margin=margin)
    tops, diffs = caffe_xent.run_layer(text, [x, np.zeros_like(x)], device=device)
    assert np.all(tops[1] == 0) and np.all(diffs[0] == 0)
    assert float(tops[0]) == 0
    t = np.full_like(x, 0.5)
    tops, diffs = caffe_xent.run_layer(text, [x, t], device=device)
    _, element, grad = reference(x, t, axis=0, focal_gamma=2.0, focal_gamma_neg=gamma_neg,
                                 focal_margin=float(np.float32(margin)))
    finite = np.isfinite(x)  # at x = -inf the positive term is +inf, its gradient finite
    assert np.isposinf(tops[1][~finite]).all() and np.isposinf(element[~finite]).all()
    check_close(tops[1][finite], element[finite], dtype, "positive term only")
    check_close(diffs[0], grad, dtype, "its gradient")


def test_nan_logit_propagates_and_ignored_elements_stay_zero(dtype, device):
    x = np.array([0.5, np.nan, -2.0, np.nan], dtype=dtype)
    t = np.array([1.0, 0.0, 0.0, -1.0], dtype=dtype)
    text = layer_text(tops=2, focal_gamma_neg=4.0, focal_margin=0.05, ignore_label=-1)
    tops, diffs = caffe_xent.run_layer(text, [x, t], device=device)
    assert np.isnan(tops[0])
    assert np.isnan(tops[1][1]) and np.isnan(diffs[0][1])
    assert np.isfinite(tops[1][[0, 2]]).all() and np.isfinite(diffs[0][[0, 2]]).all()
    assert tops[1][3] == 0 and diffs[0][3] == 0  # ignored, NaN logit or not


def test_unset_options_are_todays_layer_bit_for_bit(dtype, rng):
    """focal_margin: 0 written out (and focal_gamma_neg unset) is the layer
    without the options, to the bit."""
    shape = (5, 7, 3)
    x, t = make_inputs(rng, shape, dtype)
    for common in ({}, {"focal_gamma": 2.0, "focal_alpha": 0.25, "label_smoothing": 0.1}):
        plain = caffe_xent.run_layer(layer_text(tops=2, **common), [x, t])
        zero = caffe_xent.run_layer(layer_text(tops=2, focal_margin=0.0, **common), [x, t])
        assert np.array_equal(plain[0][1], zero[0][1]) and np.array_equal(plain[1][0], zero[1][0])
        assert float(plain[0][0]) == float(zero[0][0])


# ---- bad parameters ----------------------------------------------------------------

BAD = [
    ({"focal_gamma_neg": -1.0}, "focal_gamma_neg = -1 is invalid"),
    ({"focal_gamma_neg": float("nan")}, "focal_gamma_neg = nan is invalid"),
    ({"focal_gamma_neg": float("inf")}, "focal_gamma_neg = inf is invalid"),
    ({"focal_margin": -0.1}, "focal_margin = -0.1 is invalid"),
    ({"focal_margin": 1.0}, "focal_margin = 1 is invalid"),
    ({"focal_margin": 1.5}, "focal_margin = 1.5 is invalid"),
    ({"focal_margin": float("nan")}, "focal_margin = nan is invalid"),
]


@pytest.mark.parametrize("case", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_parameters_are_refused(case, dtype, rng):
    options, needle = case
    x, t = make_inputs(rng, (2, 3), dtype)
    with pytest.raises(caffe_xent.LayerError) as info:
        caffe_xent.run_layer(layer_text(**options), [x, t])
    assert needle in str(info.value)
    assert "SigmoidCrossEntropyLoss layer 'xent'" in str(info.value)


# ---- CPU and GPU -------------------------------------------------------------------

@requires_gpu
@pytest.mark.parametrize("name", list(OPTIONS))
def test_cpu_and_gpu_agree(name, dtype, rng):
    shape = (64, 7, 300)
    options = OPTIONS[name]
    opts = resolve(options, shape, rng)
    bottoms = make_inputs(rng, shape, dtype, ignore="ignore_label" in opts,
                          weights=options.get("_weights", False))
    cpu, cpu_diff = caffe_xent.run_layer(layer_text(tops=2, **opts), bottoms, device="cpu")
    gpu, gpu_diff = caffe_xent.run_layer(layer_text(tops=2, **opts), bottoms, device="gpu")
    assert float(gpu[0]) == pytest.approx(float(cpu[0]), rel=LOSS_RTOL[dtype])
    slack_element, slack_grad = margin_slack(bottoms, proto_floats(opts), dtype)
    # Each side within its bound of the truth: twice the bound apart.
    check_close(gpu[1], cpu[1], dtype, "element loss", extra=2 * slack_element)
    check_close(gpu_diff[0], cpu_diff[0], dtype, "gradient", extra=2 * slack_grad)



# ---- the numpy Python layer ----------------------------------------------------------

@pytest.mark.parametrize("name", list(OPTIONS))
def test_python_layer_math_matches_the_native_layer(name, rng):
    """caffe_xent.python_layers' numpy math (what the Python layer runs)
    against the float64 native layer and the reference."""
    python_layers = pytest.importorskip("caffe_xent.python_layers")
    shape = (6, 5, 3)
    options = OPTIONS[name]
    opts = resolve(options, shape, rng)
    x, t = make_inputs(rng, shape, np.float64, ignore="ignore_label" in opts)
    loss, grad = python_layers.sigmoid_cross_entropy_loss(x, t, **opts)
    tops, diffs = caffe_xent.run_layer(layer_text(**opts), [x, t])
    ref_loss, _, ref_grad = reference(x, t, **proto_floats(opts))
    assert loss == pytest.approx(float(tops[0]), rel=LOSS_RTOL[np.float64])
    assert loss == pytest.approx(ref_loss, rel=LOSS_RTOL[np.float64])
    check_close(grad, diffs[0], np.float64, "python layer vs native")
    check_close(grad, ref_grad, np.float64, "python layer vs reference")


@pytest.mark.parametrize("case", BAD, ids=[str(b[0]) for b in BAD])
def test_python_layer_refuses_bad_parameters(case):
    python_layers = pytest.importorskip("caffe_xent.python_layers")
    options, needle = case
    field = needle.split(" = ")[0]
    with pytest.raises(ValueError, match=field + " = "):
        python_layers.sigmoid_cross_entropy_loss(np.zeros((2, 3)), np.zeros((2, 3)), **options)

"""Float64 numpy reference of SigmoidCrossEntropyLoss (its formula in
docs/sigmoid_cross_entropy_loss.md), and a prototxt builder for the layer,
for the tests (tests/test_sigmoid_cross_entropy_loss.py and others).

It is kept separate on purpose from the C++ element math and from
caffe_xent.python_layers' _sigmoid_cross_entropy_loss.py, the numpy
implementation shipped to users: written independently, in another form,
it checks both rather than agreeing with them by construction. Do not make
one import the other.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

NORMALIZATIONS = ("FULL", "VALID", "BATCH_SIZE", "NONE")


def layer_text(*, axis: Optional[int] = None, pos_weight: Sequence[float] = (),
               class_weight: Sequence[float] = (), focal_gamma: Optional[float] = None,
               focal_alpha: Optional[float] = None, label_smoothing: Optional[float] = None,
               focal_gamma_neg: Optional[float] = None, focal_margin: Optional[float] = None,
               ignore_label: Optional[int] = None, normalization: Optional[str] = None,
               tops: int = 1, name: str = "xent") -> str:
    """LayerParameter prototxt of a SigmoidCrossEntropyLoss layer."""
    fields = []
    if axis is not None:
        fields.append("axis: %d" % axis)
    fields += ["pos_weight: %r" % float(v) for v in pos_weight]
    fields += ["class_weight: %r" % float(v) for v in class_weight]
    for key, value in (("focal_gamma", focal_gamma), ("focal_alpha", focal_alpha),
                       ("label_smoothing", label_smoothing), ("focal_gamma_neg", focal_gamma_neg),
                       ("focal_margin", focal_margin)):
        if value is not None:
            fields.append("%s: %r" % (key, float(value)))
    loss = []
    if ignore_label is not None:
        loss.append("ignore_label: %d" % ignore_label)
    if normalization is not None:
        loss.append("normalization: %s" % normalization)
    text = 'name: "%s" type: "SigmoidCrossEntropyLoss"' % name
    text += "".join(' top: "%s"' % n for n in ("loss", "element_loss")[:tops])
    if fields:
        text += " sigmoid_cross_entropy_loss_param { %s }" % " ".join(fields)
    if loss:
        text += " loss_param { %s }" % " ".join(loss)
    return text


def _per_class(values, x: np.ndarray, axis: int) -> np.ndarray:
    """Per-class vector broadcast against x along `axis` (1 when empty)."""
    values = np.asarray(values if len(values) else [1.0], dtype=np.float64)
    if x.ndim == 0:
        return values.reshape(())
    shape = [1] * x.ndim
    if values.size > 1:
        shape[axis % x.ndim] = values.size
    return values.reshape(shape)


def softplus(z: np.ndarray) -> np.ndarray:
    """max(z,0) + log1p(exp(-|z|)), never exp of a positive number."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _asymmetric(x, tau, pw, coefficient, focal_gamma, focal_alpha, gamma_neg, margin):
    """The asymmetric form's element loss and d/dx (docs/sigmoid_cross_entropy_loss.md):
    the expectation over the target τ of the positive term
    -α·(1-p)^γ+·log p and the negative term -(1-α)·p_m^γ-·log(1-p_m),
    p_m = max(p - m, 0), written in p and its derivative dp/dx = p(1-p)."""
    alpha_pos = 1.0 if focal_alpha < 0 else focal_alpha
    alpha_neg = 1.0 if focal_alpha < 0 else 1 - focal_alpha
    w_pos = coefficient * alpha_pos * pw * tau
    w_neg = coefficient * alpha_neg * (1 - tau)
    p = np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))
    one_minus_p = np.where(x >= 0, np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))),
                           1 / (1 + np.exp(-np.abs(x))))
    dp = p * one_minus_p
    # -log p and -log(1-p), never through 1 - p (stable at both ends).
    nlog_p = np.logaddexp(0.0, -x)
    nlog_1mp = np.logaddexp(0.0, x)
    focus_pos = one_minus_p ** focal_gamma
    # positive term f(p) = (1-p)^γ+·(-log p): f'(p) = -γ+(1-p)^(γ+-1)(-log p) - (1-p)^γ+/p
    pos = np.where(w_pos == 0, 0.0, w_pos * focus_pos * nlog_p)
    # f'(p)·p(1-p) = -(1-p)^γ+·(γ+·p·(-log p) + (1-p)); p·(-log p) = 0 at p = 0.
    dpos = -w_pos * focus_pos * (focal_gamma * p * np.where(p == 0, 0.0, nlog_p) + one_minus_p)
    if margin == 0:
        shifted = p
        nlog_kept = nlog_1mp
    else:
        shifted = np.maximum(p - margin, 0.0)
        nlog_kept = -np.log(one_minus_p + margin)
    active = shifted > 0
    focus_neg = np.where(active, shifted, 0.0) ** gamma_neg if gamma_neg > 0 else np.ones_like(x)
    neg = np.where((w_neg == 0) | ~active, 0.0, w_neg * focus_neg * nlog_kept)
    # negative term g(d) = d^γ-·(-log(1-d)), d = p_m: g'(d) = γ- d^(γ--1)(-log(1-d)) + d^γ-/(1-d);
    # d/dx = g'(d)·p(1-p) for d > 0, 0 otherwise.
    if margin == 0:
        # d = p: g'(p)·p(1-p) = γ-·p^γ-·(1-p)·(-log(1-p)) + p^(γ-+1), written without
        # dividing by 1-p; (1-p)·(-log(1-p)) = 0 at p = 1.
        tail = np.where(one_minus_p == 0, 0.0, one_minus_p * nlog_1mp)
        dneg = w_neg * (gamma_neg * focus_neg * tail + focus_neg * p)
    else:
        safe = np.where(active, shifted, 1.0)
        first = (gamma_neg * safe ** (gamma_neg - 1) * np.where(active, nlog_kept, 0.0)
                 if gamma_neg > 0 else 0.0)
        dneg = w_neg * np.where(active, (first + focus_neg / (one_minus_p + margin)) * dp, 0.0)
    return pos + neg, dpos + dneg, np.maximum(np.abs(dpos), np.abs(dneg))


def reference(x, t, w=None, *, axis: int = 1, pos_weight=(), class_weight=(),
              focal_gamma: float = 0.0, focal_alpha: float = -1.0,
              label_smoothing: float = 0.0, ignore_label: Optional[int] = None,
              normalization: str = "BATCH_SIZE", terms: bool = False,
              focal_gamma_neg: Optional[float] = None, focal_margin: float = 0.0):
    """Returns (loss, element_loss, dloss/dx) in float64; with terms=True
    also, per element, the larger of the two terms of the gradient's
    difference, coefficient·(1-p_t)^γ·max(a·σ(x), b·σ(-x)), normalized like
    the gradient (the scale of a float32 gradient's error where they cancel);
    in the asymmetric form (focal_gamma_neg set or focal_margin > 0) the
    larger of its positive and negative parts.

    The element loss is written as a sum of non-negative terms,
    pos_weight·τ·softplus(-x) + (1-τ)·softplus(x), equal to the documented
    (1-τ)x + l·softplus(-x); limits at x = ±inf are taken explicitly.
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(x.shape)
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=np.float64).reshape(x.shape)
    pw = _per_class(pos_weight, x, axis)
    cw = _per_class(class_weight, x, axis)
    ignored = (t == ignore_label) if ignore_label is not None else np.zeros(x.shape, bool)
    t = np.where(ignored, 0.0, t)
    with np.errstate(invalid="ignore", over="ignore"):
        tau = t * (1 - label_smoothing) + label_smoothing / 2
        a = 1 - tau
        b = pw * tau
        # 0·inf = 0: an absent term stays absent at x = ±inf.
        bce = np.where(a == 0, 0.0, a * softplus(x)) + np.where(b == 0, 0.0, b * softplus(-x))
        # σ(x) and σ(-x) from e^-|x|: σ(-x) keeps its digits for large x.
        e = np.exp(-np.abs(x))
        sig = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        sig_neg = np.where(x >= 0, e / (1 + e), 1 / (1 + e))
        q = tau * sig_neg + a * sig                # 1 - p_t
        alpha_t = 1.0 if focal_alpha < 0 else focal_alpha * tau + (1 - focal_alpha) * a
        modulator = q ** focal_gamma
        coefficient = cw * w * alpha_t
        element = np.where(coefficient * modulator == 0, 0.0, coefficient * modulator * bce)
        dbce = a * sig - b * sig_neg
        if focal_gamma == 0:
            dmod = np.zeros_like(x)
        else:
            dmod = np.where(q > 0, focal_gamma * modulator * (1 - 2 * tau) * sig * sig_neg
                            / np.where(q > 0, q, 1.0), 0.0)
        grad = coefficient * (modulator * dbce + np.where(dmod == 0, 0.0, dmod * bce))
        nan = np.isnan(x)
        element = np.where(nan, np.nan, element)
        grad = np.where(nan, np.nan, grad)
        larger = np.abs(coefficient * modulator) * np.maximum(a * sig, b * sig_neg)
        if focal_gamma_neg is not None or focal_margin > 0:
            gamma_neg = focal_gamma if focal_gamma_neg is None else focal_gamma_neg
            # larger: the gradient's positive or negative part, whichever is larger
            element, grad, larger = _asymmetric(x, tau, pw, cw * w, focal_gamma, focal_alpha,
                                                gamma_neg, focal_margin)
            element = np.where(nan, np.nan, element)
            grad = np.where(nan, np.nan, grad)
    element = np.where(ignored, 0.0, element)
    grad = np.where(ignored, 0.0, grad)
    larger = np.where(ignored, 0.0, larger)
    count = x.size
    normalizer = {"FULL": count, "VALID": count - int(ignored.sum()),
                  "BATCH_SIZE": x.shape[0] if x.ndim else 1, "NONE": 1}[normalization]
    normalizer = max(1, normalizer)
    loss = float(np.sum(element)) / normalizer
    if terms:
        return loss, element, grad / normalizer, larger / normalizer
    return loss, element, grad / normalizer

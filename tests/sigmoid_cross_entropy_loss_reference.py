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
               ignore_label: Optional[int] = None, normalization: Optional[str] = None,
               tops: int = 1, name: str = "xent") -> str:
    """LayerParameter prototxt of a SigmoidCrossEntropyLoss layer."""
    fields = []
    if axis is not None:
        fields.append("axis: %d" % axis)
    fields += ["pos_weight: %r" % float(v) for v in pos_weight]
    fields += ["class_weight: %r" % float(v) for v in class_weight]
    for key, value in (("focal_gamma", focal_gamma), ("focal_alpha", focal_alpha),
                       ("label_smoothing", label_smoothing)):
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


def reference(x, t, w=None, *, axis: int = 1, pos_weight=(), class_weight=(),
              focal_gamma: float = 0.0, focal_alpha: float = -1.0,
              label_smoothing: float = 0.0, ignore_label: Optional[int] = None,
              normalization: str = "BATCH_SIZE", terms: bool = False):
    """Returns (loss, element_loss, dloss/dx) in float64; with terms=True
    also, per element, the larger of the two terms of the gradient's
    difference, coefficient·(1-p_t)^γ·max(a·σ(x), b·σ(-x)), normalized like
    the gradient (the scale of a float32 gradient's error where they cancel).

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

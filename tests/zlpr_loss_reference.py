"""Float64 numpy reference of ZLPRLoss (its formula in docs/zlpr_loss.md),
and a prototxt builder for the layer, for the tests.

Written from the formula, apart from the C++ row math on purpose: the
layer subtracts a shift and sums shifted exps in double; this file reduces
each side with numpy's pairwise ``logaddexp`` over the side's values and a
zero, and takes the gradient as ``exp(v - side loss)``. Do not make one
import the other.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

NORMALIZATIONS = ("VALID", "BATCH_SIZE", "FULL", "NONE")


def layer_text(*, axis: Optional[int] = None, ignore_label: Optional[int] = None,
               normalization: Optional[str] = None, tops=("loss",), name: str = "zlpr") -> str:
    """LayerParameter prototxt of a ZLPRLoss layer."""
    text = 'name: "%s" type: "ZLPRLoss" bottom: "x" bottom: "t" %s' % (
        name, " ".join('top: "%s"' % top for top in tops))
    if axis is not None:
        text += " zlpr_loss_param { axis: %d }" % axis
    loss = []
    if ignore_label is not None:
        loss.append("ignore_label: %d" % ignore_label)
    if normalization is not None:
        loss.append("normalization: %s" % normalization)
    if loss:
        text += " loss_param { %s }" % " ".join(loss)
    return text


def reference(x, t, *, axis: int = 1, ignore_label: Optional[int] = None,
              normalization: str = "VALID"):
    """Loss, gradient and row losses of the layer, in float64.

    Returns ``(loss, grad, row_losses)``; ``row_losses`` has the shape of x
    without ``axis`` (not normalized).
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    axis = axis % x.ndim
    xm = np.moveaxis(x, axis, -1)
    tm = np.moveaxis(t, axis, -1)
    kept = np.ones(tm.shape, bool) if ignore_label is None else tm != ignore_label
    positive = kept & (tm == 1)
    negative = kept & (tm == 0)
    with np.errstate(invalid="ignore", over="ignore"):
        # v = x on the negatives, -x on the positives, -inf elsewhere (no term).
        neg_v = np.where(negative, xm, -np.inf)
        pos_v = np.where(positive, -xm, -np.inf)
        # log(1 + sum e^v) = logaddexp over (0, v_1, ..., v_k)
        neg_loss = np.logaddexp.reduce(neg_v, axis=-1, initial=0.0)
        pos_loss = np.logaddexp.reduce(pos_v, axis=-1, initial=0.0)
        row_losses = neg_loss + pos_loss
        # d/dv log(1 + sum e^v) = e^v / (1 + sum e^v) = e^(v - side loss)
        grad = (np.where(negative, np.exp(neg_v - neg_loss[..., None]), 0.0)
                - np.where(positive, np.exp(pos_v - pos_loss[..., None]), 0.0))
    counted = kept.any(-1)
    normalizer = {"VALID": counted.sum(), "BATCH_SIZE": x.shape[0] if x.ndim else 1,
                  "FULL": counted.size, "NONE": 1}[normalization]
    normalizer = max(1.0, float(normalizer))
    return (row_losses.sum() / normalizer, np.moveaxis(grad / normalizer, -1, axis), row_losses)

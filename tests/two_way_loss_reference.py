"""Float64 numpy reference of TwoWayLoss (its formula in
docs/two_way_loss.md), and a prototxt builder for the layer, for the tests.

Written from the formula, apart from the C++ line math on purpose: each
side's log-sum-exp is numpy's ``logaddexp`` reduction over the side's
values (-inf elsewhere), the softplus ``logaddexp(0, a)``, the gradient
``sigmoid(a) exp(v - LSE)``. Do not make one import the other.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

NORMALIZATIONS = ("VALID", "BATCH_SIZE", "FULL", "NONE")


def layer_text(*, axis: Optional[int] = None, positive_temperature: Optional[float] = None,
               negative_temperature: Optional[float] = None, ignore_label: Optional[int] = None,
               normalization: Optional[str] = None, name: str = "twoway") -> str:
    """LayerParameter prototxt of a TwoWayLoss layer."""
    fields = []
    for key, value in (("axis", axis), ("positive_temperature", positive_temperature),
                       ("negative_temperature", negative_temperature)):
        if value is not None:
            fields.append("%s: %r" % (key, value))
    text = 'name: "%s" type: "TwoWayLoss" bottom: "x" bottom: "t" top: "loss"' % name
    if fields:
        text += " two_way_loss_param { %s }" % " ".join(fields)
    loss = []
    if ignore_label is not None:
        loss.append("ignore_label: %d" % ignore_label)
    if normalization is not None:
        loss.append("normalization: %s" % normalization)
    if loss:
        text += " loss_param { %s }" % " ".join(loss)
    return text


def _lines(x, positive, negative, tp, tn):
    """Per line (last axis): loss softplus(a) (0 without a positive or a
    negative), whether it counts (has a positive), and d loss / d x."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        neg_v = np.where(negative, x / tn, -np.inf)
        pos_v = np.where(positive, -x / tp, -np.inf)
        neg_lse = np.logaddexp.reduce(neg_v, axis=-1)
        pos_lse = np.logaddexp.reduce(pos_v, axis=-1)
        counted = positive.any(-1)
        live = counted & negative.any(-1)
        a = np.where(live, tn * neg_lse + tp * pos_lse, 0.0)
        loss = np.where(live, np.logaddexp(0.0, a), 0.0)
        e = np.exp(-np.abs(a))  # sigma(a) without cancellation on either side
        sigma = np.where(live, np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e)), 0.0)[..., None]
        grad = (np.where(negative, sigma * np.exp(neg_v - neg_lse[..., None]), 0.0)
                - np.where(positive, sigma * np.exp(pos_v - pos_lse[..., None]), 0.0))
    return loss, counted, grad


def reference(x, t, *, axis: int = 1, positive_temperature: float = 4.0,
              negative_temperature: float = 1.0, ignore_label: Optional[int] = None,
              normalization: str = "VALID"):
    """Loss and gradient of the layer in float64: ``(loss, grad)``."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    axis = axis % x.ndim
    moved = np.moveaxis(x, axis, -1)
    C = moved.shape[-1]
    lines = int(np.prod(moved.shape[:-1]))  # rows (explicit: -1 is ambiguous when C = 0)
    xm = moved.reshape(lines, C)
    tm = np.moveaxis(t, axis, -1).reshape(lines, C)
    kept = np.ones(tm.shape, bool) if ignore_label is None else tm != ignore_label
    positive, negative = kept & (tm == 1), kept & (tm == 0)
    tp, tn = float(np.float32(positive_temperature)), float(np.float32(negative_temperature))
    row_loss, row_counted, row_grad = _lines(xm, positive, negative, tp, tn)
    col_loss, col_counted, col_grad = _lines(xm.T, positive.T, negative.T, tp, tn)
    batch = x.shape[0]
    z_rows = {"VALID": row_counted.sum(), "FULL": xm.shape[0], "BATCH_SIZE": batch,
              "NONE": 1}[normalization]
    z_cols = {"VALID": col_counted.sum(), "FULL": C, "BATCH_SIZE": batch, "NONE": 1}[normalization]
    z_rows, z_cols = max(1.0, float(z_rows)), max(1.0, float(z_cols))
    loss = row_loss.sum() / z_rows + col_loss.sum() / z_cols
    grad = row_grad / z_rows + col_grad.T / z_cols
    return loss, np.moveaxis(grad.reshape(moved.shape), -1, axis)

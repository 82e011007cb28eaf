"""MultiLabelSoftmaxLoss in float64 numpy: the math of the Python layer of that name.

The native layer's formulas, vectorized: per row, the softmax cross-entropy
against targets normalized by their count or sum (Mahajan et al. 2018), with
class weights and label smoothing, in the shifted form that never
overflows; and its gradient.

This is caffe-xent's own numpy implementation, shipped to users. The test
suite's reference, tests/multi_label_softmax_loss_reference.py, is kept
separate on purpose: written independently (with other formulas), it checks
both this module and the native layer rather than agreeing with them by
construction. Do not make one import the other.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, TypedDict, Union, Unpack

import numpy as np
import numpy.typing as npt

from ._options import check_options, fail, normalizer_for, per_class, scale

#: Options of MultiLabelSoftmaxLoss and their defaults (those of the native layer).
MULTI_LABEL_SOFTMAX_LOSS_DEFAULTS: Dict[str, Any] = {
    "ignore_label": None, "normalization": "VALID", "normalize": None, "axis": 1,
    "target_normalization": "COUNT", "class_weight": None, "label_smoothing": 0.0,
}


class MultiLabelSoftmaxLossOptions(TypedDict, total=False):
    """The keyword options of :func:`multi_label_softmax_loss` (the layer's JSON keys)."""

    ignore_label: Optional[int]
    normalization: Optional[str]
    normalize: Optional[bool]
    axis: int
    target_normalization: str
    class_weight: Union[float, List[float], None]
    label_smoothing: float


def row_losses(layer: str, opts: Dict[str, Any], x: np.ndarray, t: np.ndarray
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Row losses, dloss/dx (top diff 1, unnormalized), probabilities and the normalizer.

    ``opts`` come from :func:`check_options` with
    :data:`MULTI_LABEL_SOFTMAX_LOSS_DEFAULTS`.
    """
    if x.shape != t.shape:
        fail(layer, "bottom[1] (targets) has shape %s but bottom[0] (scores) has %s; they must be "
             "equal" % (tuple(t.shape), tuple(x.shape)))
    ndim = x.ndim
    if not -ndim <= opts["axis"] < ndim:
        fail(layer, "axis %d is out of range for bottom[0] (scores) of shape %s (%d axes)"
             % (opts["axis"], tuple(x.shape), ndim))
    axis = opts["axis"] % ndim
    classes = x.shape[axis]
    if classes == 0:
        fail(layer, "bottom[0] (scores) of shape %s has no classes along axis %d" % (tuple(x.shape), axis))
    if opts["ignore_label"] == 0:
        fail(layer, "ignore_label = 0 is refused: 0 is the target of a negative class, so every row "
             "with a negative class would be ignored")
    w = per_class(layer, "class_weight", opts["class_weight"], classes)
    rows_x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1).reshape(-1, classes)
    rows_t = np.moveaxis(np.asarray(t, dtype=np.float64), axis, -1).reshape(-1, classes)
    ignore = opts["ignore_label"]
    is_ignore = (rows_t == ignore) if ignore is not None else np.zeros(rows_t.shape, dtype=bool)
    invalid = (rows_t != 0) & ~is_ignore & ~(rows_t > 0)           # negative or NaN
    if invalid.any():
        flat = np.moveaxis(invalid.reshape(np.moveaxis(x, axis, -1).shape), -1, axis).reshape(-1)
        index = int(np.flatnonzero(flat)[0])
        fail(layer, "bottom[1] (targets) has value %r at flat index %d (shape %s); targets must be "
             ">= 0%s" % (float(np.asarray(t).reshape(-1)[index]), index, tuple(t.shape),
                          " or equal to ignore_label" if ignore is not None else ""))
    positive = (rows_t > 0) & ~is_ignore
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(rows_x, axis=1, keepdims=True)                  # NaN propagates
        same = rows_x == m
        gap = np.where(same, 0.0, m - rows_x)                     # m - x_c, inf - inf := 0 at the max
        shifted = np.where(same, 1.0, np.exp(rows_x - m))         # e^(x_c - m); the max gives 1
        sum_exp = shifted.sum(axis=1)                             # S >= 1
        wt = np.where(positive, w * rows_t, 0.0)                  # w_c t_c over positives
        weighted = wt.sum(axis=1)
        weighted_gap = scale(wt, gap).sum(axis=1)                # sum w t (m - x), 0 * inf = 0
        count = positive.sum(axis=1).astype(np.float64)           # M
        target_sum = np.where(positive, rows_t, 0.0).sum(axis=1)
        valid = (count > 0) & ~is_ignore.any(axis=1)
        norm = {"COUNT": count, "SUM": target_sum, "NONE": np.ones_like(count)}[opts["target_normalization"]]
        eps = opts["label_smoothing"]
        a = np.where(valid, (1.0 - eps) / np.where(valid, norm, 1.0), 0.0)  # (1-eps)/norm
        b = np.where(valid, eps / classes, 0.0)                             # eps/C
        q_total = np.where(valid, a * weighted + eps, 0.0)                  # Q = sum_c q_c
        loss = q_total * np.log(sum_exp) + a * weighted_gap                 # Q log S + sum q (m - x)
        if eps != 0.0:
            loss = loss + b * gap.sum(axis=1)
        loss = np.where(valid, loss, 0.0)
        prob = shifted / sum_exp[:, None]
        q = np.where(rows_t != 0, a[:, None] * w * np.where(positive, rows_t, 0.0), 0.0) + b[:, None]
        grad = np.where(valid[:, None], q_total[:, None] * prob - q, 0.0)   # Q p_c - q_c
    moved = np.moveaxis(x, axis, -1).shape
    grad = np.moveaxis(grad.reshape(moved), -1, axis)
    prob = np.moveaxis(prob.reshape(moved), -1, axis)
    normalizer = normalizer_for(opts["normalization"], rows_x.shape[0], np.count_nonzero(valid),
                                x.shape[0])
    return loss, grad, prob, normalizer


def multi_label_softmax_loss(x: npt.ArrayLike, t: npt.ArrayLike,
                             **options: Unpack[MultiLabelSoftmaxLossOptions]
                             ) -> Tuple[float, np.ndarray]:
    """The MultiLabelSoftmaxLoss in float64 numpy: ``(loss, dloss/dx)``.

    ``options`` are the Python layer's keys (see :mod:`caffe_xent.python_layers`); the
    gradient is for a top diff (loss weight) of 1. Raises ValueError on bad
    input, as the layers do.
    """
    layer = "MultiLabelSoftmaxLoss"
    opts = check_options(layer, options, MULTI_LABEL_SOFTMAX_LOSS_DEFAULTS)
    loss, grad, _, normalizer = row_losses(layer, opts, np.asarray(x, dtype=np.float64),
                                           np.asarray(t))
    return float(np.sum(loss) / normalizer), grad / normalizer

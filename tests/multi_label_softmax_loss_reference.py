"""Float64 reference of MultiLabelSoftmaxLoss for the tests.

:func:`reference` is the layer's formula (docs/multi_label_softmax_loss.md)
written with numpy, in float64.

It is kept separate on purpose from caffe_xent.python_layers'
_multi_label_softmax_loss.py, the numpy implementation shipped to users:
written independently, in another form, it checks that module and the
native layer rather than agreeing with them by construction. Do not make
one import the other.

What the original Python layer computes (the baseline the layer must agree
with for multi-hot targets) lives in
bench/multi_label_softmax_loss_original_layer.py, where the benchmark times it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

TARGET_NORMALIZATIONS = ("COUNT", "SUM", "NONE")
NORMALIZATIONS = ("VALID", "BATCH_SIZE", "FULL", "NONE")


def reference(x, t, *, axis: int = 1, target_normalization: str = "COUNT",
              class_weight: Optional[Sequence[float]] = None, label_smoothing: float = 0.0,
              ignore_label: Optional[int] = None, normalization: str = "VALID"):
    """Loss, gradient and gradient scale of the layer, in float64.

    Returns ``(loss, grad, magnitude)``: ``magnitude`` is
    ``(Q p + q + Q) / normalizer`` per element, the size of the terms whose
    rounding makes up the error of a float32 gradient (tests derive their
    tolerances from it).
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    axis = axis % x.ndim
    xm = np.moveaxis(x, axis, -1)
    tm = np.moveaxis(t, axis, -1)
    C = xm.shape[-1]
    w = np.ones(C) if not class_weight else np.broadcast_to(np.asarray(class_weight, float), (C,))
    positives = (tm > 0).sum(-1)
    valid = positives > 0
    if ignore_label is not None:
        valid &= ~(tm == ignore_label).any(-1)
    norm = {"COUNT": positives.astype(float), "SUM": tm.sum(-1),
            "NONE": np.ones(positives.shape)}[target_normalization]
    norm = np.where(valid, norm, 1.0)
    t_clean = np.where(valid[..., None], tm, 0.0)
    q = (1 - label_smoothing) * w * t_clean / norm[..., None] + label_smoothing / C
    q = np.where(valid[..., None], q, 0.0)
    m = xm.max(-1, keepdims=True)
    log_sum_exp = m + np.log(np.exp(xm - m).sum(-1, keepdims=True))
    log_p = xm - log_sum_exp
    row_loss = -(q * log_p).sum(-1)
    q_total = q.sum(-1, keepdims=True)
    p = np.exp(log_p)
    rows = int(np.prod(xm.shape[:-1]))
    normalizer = {"VALID": valid.sum(), "BATCH_SIZE": x.shape[0], "FULL": rows,
                  "NONE": 1}[normalization]
    normalizer = max(1.0, float(normalizer))
    grad = (q_total * p - q) / normalizer
    magnitude = (q_total * p + q + q_total) / normalizer
    return (row_loss.sum() / normalizer, np.moveaxis(grad, -1, axis),
            np.moveaxis(magnitude, -1, axis))

"""Float64 references of MultiLabelSoftmaxLoss for the tests and the benchmark.

- :func:`reference` is the layer's formula (docs/multi_label_softmax_loss.md)
  written with numpy, in float64;
- :func:`seed_layer_forward_backward` re-implements, loop by loop, what the
  original Python layer (Mahajan et al. 2018 softmax loss as a pycaffe layer,
  the one users ran before the native layer) computes: its semantics, not
  its text. It is the baseline the
  layer must agree with for multi-hot targets (COUNT), and the slow baseline
  of the benchmark.
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


def seed_layer_forward_backward(scores, labels):
    """What the original Python layer computes for (N, C) scores: forward loss
    and backward gradient, with per-element loops as in that layer.

    Forward: softmax with the row max subtracted; per row the loss adds
    -log p_c * t_c / M over the classes with t_c != 0 (M = number of non-zero
    targets); the sum is divided by N. Backward: p, then for each class with
    t_c != 0 the value s (p - 1) + (1 - s) p with s = 1/M (= p - 1/M: the
    target values are not used), all divided by N.
    """
    scores = np.array(scores, dtype=np.float64)  # a copy: the seed shifted its bottom in place
    labels = np.asarray(labels, dtype=np.float64)
    num, classes = scores.shape
    scores -= scores.max(axis=1, keepdims=True)
    exp_scores = np.exp(scores)
    probs = exp_scores / exp_scores.sum(axis=1, keepdims=True)
    row_losses = np.zeros(num)
    for r in range(num):
        scale = 1.0 / float(np.count_nonzero(labels[r, :]))
        for c in range(classes):
            if labels[r, c] != 0:
                row_losses[r] += -np.log(probs[r, c]) * labels[r, c] * scale
    loss = row_losses.sum() / num
    delta = probs.copy()
    for r in range(num):
        scale = 1.0 / float(np.count_nonzero(labels[r, :]))
        for c in range(classes):
            if labels[r, c] != 0:
                delta[r, c] = scale * (delta[r, c] - 1) + (1 - scale) * delta[r, c]
    return loss, delta / num

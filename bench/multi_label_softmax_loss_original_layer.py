"""The original Python layer of the multi-label softmax loss, loop by loop.

Before the native MultiLabelSoftmaxLoss, users ran the softmax loss of
Mahajan et al. 2018 as a pycaffe Python layer. :func:`original_layer_forward_backward`
re-implements what that layer computes (its semantics, not its text), with
its per-element loops: the benchmark's slowest peer
(bench_multi_label_softmax_loss.py), and the baseline the native layer must
agree with for multi-hot targets (tests/test_multi_label_softmax_loss.py).
"""
from __future__ import annotations

import numpy as np


def original_layer_forward_backward(scores, labels):
    """What the original Python layer computes for (N, C) scores: forward loss
    and backward gradient, with per-element loops as in that layer.

    Forward: softmax with the row max subtracted; per row the loss adds
    -log p_c * t_c / M over the classes with t_c != 0 (M = number of non-zero
    targets); the sum is divided by N. Backward: p, then for each class with
    t_c != 0 the value s (p - 1) + (1 - s) p with s = 1/M (= p - 1/M: the
    target values are not used), all divided by N.
    """
    scores = np.array(scores, dtype=np.float64)  # a copy: the original shifted its bottom in place
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

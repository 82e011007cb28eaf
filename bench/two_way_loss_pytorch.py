"""The two-way multi-label loss as PyTorch users run it: timm's
formulation, re-written here.

timm's ``TwoWayLoss`` (timm/loss/two_way_loss.py), which its docstring says
matches the paper's code (github.com/tk1980/TwoWayMultiLabelLoss,
utils/criterion.py), for (N, C) logits: positives are targets > 0.5; the
positives' logits -x/Tp and the negatives' x/Tn, each with the other
entries replaced by a finite mask value (-1e4), go through a logsumexp over
the classes of each sample and over the samples of each class, times its
temperature; each direction adds softplus(hard negative + hard positive)
averaged over the samples (classes) that have a positive. Tp = 4, Tn = 1.
(The paper's code adds -100 to the masked entries instead of replacing
them, and takes y > 0 as positive, y == 0 as negative, y < 0 as neither.)

:func:`two_way_timm` is that computation (its semantics, not its text):
the PyTorch peer of bench_two_way_loss.py and the reference implementation
the native layer is checked against (tests/test_two_way_loss.py).
"""
from __future__ import annotations

MASK = -1e4  # timm's finite fill of the other side's entries


def two_way_timm(x, t, tp=4.0, tn=1.0):
    """Sample-wise plus class-wise two-way loss of (N, C) torch tensors."""
    import torch
    import torch.nn.functional as F
    positive = t > 0.5
    pos_values = (-x / tp).masked_fill(~positive, MASK)
    neg_values = (x / tn).masked_fill(positive, MASK)
    total = x.new_zeros(())
    for dim in (1, 0):  # 1: each sample over its classes; 0: each class over the batch
        lines = positive.any(dim=dim)
        hard_pos = tp * torch.logsumexp(pos_values, dim=dim)
        hard_neg = tn * torch.logsumexp(neg_values, dim=dim)
        total = total + F.softplus(hard_neg + hard_pos)[lines].sum() / lines.sum().clamp(min=1)
    return total

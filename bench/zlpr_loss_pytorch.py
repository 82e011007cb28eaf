"""The ZLPR loss as PyTorch users run it: timm's formulation, re-written here.

timm's ``ZlprLoss`` (timm/loss/zlpr_loss.py) computes, for (N, C) logits,
each side as a ``logsumexp`` over the side's logits with the other side's
entries masked to -inf and one zero column appended, and averages the row
losses over the batch; targets above 0.5 are positives. Su's Keras original
(bert4keras ``multilabel_categorical_crossentropy``) is the same loss with
the masked entries pushed down by 1e12 instead of -inf.

:func:`zlpr_timm` is that computation (its semantics, not its text): the
PyTorch peer of bench_zlpr_loss.py and the reference implementation the
native layer is checked against, loss and autograd gradient
(tests/test_zlpr_loss.py).
"""
from __future__ import annotations


def zlpr_timm(x, t):
    """Mean over rows of log(1 + sum_neg e^x) + log(1 + sum_pos e^-x), for
    (N, C) torch tensors (targets > 0.5 are positives), as timm evaluates it."""
    import torch
    positive = t > 0.5
    zero = x.new_zeros(x.shape[:-1] + (1,))
    neg = torch.cat([x.masked_fill(positive, float("-inf")), zero], dim=-1)
    pos = torch.cat([(-x).masked_fill(~positive, float("-inf")), zero], dim=-1)
    return (torch.logsumexp(neg, dim=-1) + torch.logsumexp(pos, dim=-1)).mean()

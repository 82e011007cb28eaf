"""Class weights and positive weights for imbalanced data, as prototxt-ready numbers.

- :func:`class_weights` turns per-class counts into ``class_weight`` values:
  the log-ratio recipes (weights >= 1 for recall, or scaled to a maximum of
  1 for precision), inverse frequency, or the effective number of samples
  of Cui et al. (CVPR 2019);
- :func:`pos_weight` turns a multi-label target matrix into ``pos_weight``
  values: negatives / positives per class (PyTorch's documented recipe for
  ``BCEWithLogitsLoss(pos_weight=...)``).

The methods timm's loss factory offers (its ``timm/loss/class_weights.py``:
``neg_pos``, ``inv_freq``, ``effective_num``, each with a power and a cap)
are :func:`pos_weight` with ``power`` and ``cap``, and the ``inv_freq`` and
``effective_num`` recipes of :func:`class_weights`; with the same counts and
parameters they give timm's values (timm counts a class without positives as
one positive; here it takes the weight of the rarest class that has some,
as the other recipes do).

The command ``caffe-xent class-weights FILE.h5 --dataset label`` prints
each as lines to paste into a prototxt.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import numpy.typing as npt

__all__ = ["class_weights", "pos_weight", "RECIPES", "DEFAULT_BETA"]

#: The recipes of :func:`class_weights`.
RECIPES: Tuple[str, ...] = ("recall", "precision", "inv_freq", "effective_num")
#: The recipes that take ``power`` (and ``beta``: ``effective_num`` only).
_POWER_RECIPES = ("inv_freq", "effective_num")
#: β of ``effective_num`` when none is given (timm's default; Cui et al. try
#: 0.9, 0.99, 0.999 and 0.9999).
DEFAULT_BETA = 0.999


def _counts(counts: npt.ArrayLike) -> np.ndarray:
    array = np.asarray(counts, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError("class_weights: counts must be a non-empty 1-D sequence (one count per "
                         "class), got shape %s" % (array.shape,))
    if not np.all(np.isfinite(array)):
        raise ValueError("class_weights: counts must be finite, got %s at class %d"
                         % (array[~np.isfinite(array)][0], np.flatnonzero(~np.isfinite(array))[0]))
    if np.any(array < 0):
        bad = int(np.flatnonzero(array < 0)[0])
        raise ValueError("class_weights: counts must be >= 0, class %d has %g" % (bad, array[bad]))
    if not np.any(array > 0):
        raise ValueError("class_weights: every count is 0; there is nothing to weight")
    return array


def _check_power(power: float, where: str) -> float:
    power = float(power)
    if not (math.isfinite(power) and power >= 0):
        raise ValueError("%s: power must be finite and >= 0, got %r" % (where, power))
    return power


def _apply_cap(weights: np.ndarray, cap: Optional[float], where: str) -> np.ndarray:
    """Every weight at most cap (None: no cap)."""
    if cap is None:
        return weights
    cap = float(cap)
    if not cap > 0:  # NaN too
        raise ValueError("%s: cap must be > 0, got %r" % (where, cap))
    return np.minimum(weights, cap)


def class_weights(counts: npt.ArrayLike, *, recipe: str = "recall",
                  power: Optional[float] = None, beta: Optional[float] = None,
                  cap: Optional[float] = None) -> np.ndarray:
    """Per-class weights from per-class counts, for ``class_weight`` (both layers).

    Args:
        counts: one count (or frequency; fractional counts are fine) per
            class, each >= 0, not all 0.
        recipe: one of

            - ``"recall"`` (default): ``log(total / count)`` clipped below at
              1, so every weight is >= 1 and rare classes weigh more (fewer
              false negatives);
            - ``"precision"``: ``log(total / count)`` divided by its
              maximum, so the rarest class gets 1 and common classes less
              (fewer false positives);
            - ``"inv_freq"``: inverse frequency, ``(total / count) ** power``
              scaled to mean 1 (timm's ``inv_freq``);
            - ``"effective_num"``: the inverse of the effective number of
              samples of Cui et al., "Class-Balanced Loss Based on Effective
              Number of Samples" (CVPR 2019, arXiv:1901.05555):
              ``E_n = (1 - beta ** n) / (1 - beta)``, weight
              ``((1 - beta) / (1 - beta ** n)) ** power`` scaled to mean 1
              (the paper scales the weights to sum to the number of
              classes; timm's ``effective_num``). ``beta = 0`` weighs every
              class alike, ``beta -> 1`` tends to inverse frequency.
        power: exponent of ``inv_freq`` and ``effective_num`` (default 1;
            0.5 is a softer, square-root re-weighting; 0 gives all ones).
            timm applies its power to ``inv_freq`` (and ``neg_pos``) only:
            power 1 gives its ``effective_num`` values.
        beta: β of ``effective_num``, in [0, 1) as in the paper (default
            :data:`DEFAULT_BETA` = 0.999).
        cap: every weight at most this (> 0), applied last, after the
            scaling to mean 1 (as timm's ``max_weight``); None: no cap.

    Returns:
        float64 array, one weight per class.

    A class with a zero count gets the weight of the rarest class that does
    occur (its weight would be infinite; it has no examples in the data
    counted, so the value only matters should it appear later, and then as
    the rarest class). With a single class present, recall and precision
    give 1 everywhere (every log ratio is 0).

    Example (counts of 4 classes; the log recipe's usual worked example,
    whose printed values 3.41, 2.57, 1.00, 1.50 and 1.00, 0.755, 0.117, 0.442
    are these numbers truncated, not rounded)::

        >>> class_weights([1000, 2300, 20310, 6700]).round(4)
        array([3.4115, 2.5786, 1.    , 1.5094])
        >>> class_weights([1000, 2300, 20310, 6700], recipe="precision").round(4)
        array([1.    , 0.7559, 0.1174, 0.4424])
        >>> class_weights([10, 40], recipe="inv_freq")   # 1/10 : 1/40 = 4 : 1, mean 1
        array([1.6, 0.4])
        >>> class_weights([1, 2], recipe="effective_num", beta=0.5)  # 1/E_n: 1 : 2/3
        array([1.2, 0.8])

    Raises:
        ValueError: negative, non-finite or all-zero counts, an unknown
            recipe, power or beta given to a recipe that has none, a
            negative or non-finite power, beta outside [0, 1), cap <= 0.
    """
    where = "class_weights"
    if recipe not in RECIPES:
        raise ValueError("%s: recipe must be one of %s, got %r" % (where, ", ".join(RECIPES), recipe))
    if power is not None and recipe not in _POWER_RECIPES:
        raise ValueError("%s: recipe %r takes no power (inv_freq and effective_num do)" % (where, recipe))
    if beta is not None and recipe != "effective_num":
        raise ValueError("%s: recipe %r takes no beta (effective_num does)" % (where, recipe))
    power = _check_power(1.0 if power is None else power, where)
    array = _counts(counts)
    present = array > 0
    if recipe in ("recall", "precision"):
        logs = np.empty_like(array)
        logs[present] = np.log(array.sum() / array[present])  # >= 0: total >= every count
        logs[~present] = logs[present].max()                  # zero count: as the rarest present class
        if recipe == "recall":
            weights = np.maximum(logs, 1.0)
        else:
            top = logs.max()
            weights = logs / top if top > 0 else np.ones_like(logs)
        return _apply_cap(weights, cap, where)
    n = np.where(present, array, array[present].min())  # zero count: as the rarest present class
    if recipe == "inv_freq":
        base = array.sum() / n
    else:
        beta = DEFAULT_BETA if beta is None else float(beta)
        if not 0.0 <= beta < 1.0:  # NaN too
            raise ValueError("%s: beta must be in [0, 1), got %r" % (where, beta))
        # 1 - beta**n without cancellation for beta near 1 and small n
        # (beta = 0: log 0 = -inf, expm1(-inf) = -1, so 1 - 0**n = 1).
        with np.errstate(divide="ignore"):
            one_minus_beta_n = -np.expm1(n * np.log(beta))
        base = (1.0 - beta) / one_minus_beta_n
    weights = base ** power
    return _apply_cap(weights / weights.mean(), cap, where)


def pos_weight(labels: npt.ArrayLike, *, axis: int = 1,
               ignore_label: Optional[float] = None, power: float = 1.0,
               cap: Optional[float] = None) -> np.ndarray:
    """Per-class ``pos_weight`` = (negatives / positives) ** power, from multi-label targets.

    Args:
        labels: targets in [0, 1] (multi-hot or soft), class axis ``axis``;
            a 1-D array is one class. Soft targets count fractionally:
            positives = sum(t), negatives = sum(1 - t).
        axis: the class axis (as the layer's ``axis``); every other axis is summed over.
        ignore_label: elements equal to it are not counted.
        power: exponent of the ratio (0.5: a softer, square-root
            re-weighting; 0: all ones). timm's ``neg_pos`` method.
        cap: every value at most this (> 0), applied last (timm's
            ``max_weight``); None: no cap.

    Returns:
        float64 array, one value per class, for
        ``sigmoid_cross_entropy_loss_param { pos_weight: ... }``.

    A class with no positives or no negatives gets 1 (neutral): the ratio is
    undefined without positives, and 0 (no negatives) would switch the
    positive term of that class off.

    Example: 100 positive and 300 negative examples give 3.0, as in
    PyTorch's ``BCEWithLogitsLoss`` documentation.

    Raises:
        ValueError: targets outside [0, 1] (other than ignore_label), NaN, an
            axis out of range, an empty array, a negative or non-finite
            power, cap <= 0.
    """
    power = _check_power(power, "pos_weight")
    t = np.asarray(labels, dtype=np.float64)
    if t.size == 0:
        raise ValueError("pos_weight: labels are empty")
    if t.ndim == 1:
        t = t[:, None]
        axis = 1
    if not -t.ndim <= axis < t.ndim:
        raise ValueError("pos_weight: axis %d is out of range for labels of shape %s" % (axis, t.shape))
    t = np.moveaxis(t, axis, -1).reshape(-1, t.shape[axis])
    counted = np.ones(t.shape, dtype=bool) if ignore_label is None else t != ignore_label
    bad = counted & ~((t >= 0) & (t <= 1))
    if bad.any():
        raise ValueError("pos_weight: labels must be in [0, 1]%s; found %g (%d such values)" % (
            "" if ignore_label is None else " or equal to ignore_label %g" % ignore_label,
            t[bad][0], np.count_nonzero(bad)))
    positives = np.where(counted, t, 0.0).sum(axis=0)
    negatives = np.where(counted, 1.0 - t, 0.0).sum(axis=0)
    out = np.ones(t.shape[1])
    usable = (positives > 0) & (negatives > 0)
    out[usable] = (negatives[usable] / positives[usable]) ** power
    return _apply_cap(out, cap, "pos_weight")

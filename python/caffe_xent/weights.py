"""Class weights and positive weights for imbalanced data, as prototxt-ready numbers.

- :func:`class_weights` turns per-class counts into ``class_weight`` values
  with the log-ratio recipe (weights >= 1 for recall, or scaled to a maximum
  of 1 for precision).
- :func:`pos_weight` turns a multi-label target matrix into ``pos_weight``
  values: negatives / positives per class (PyTorch's documented recipe for
  ``BCEWithLogitsLoss(pos_weight=...)``).

The command ``caffe-xent class-weights FILE.h5 --dataset label`` prints
either as lines to paste into a prototxt.
"""
from __future__ import annotations

from typing import Literal, Optional, Tuple

import numpy as np
import numpy.typing as npt

__all__ = ["class_weights", "pos_weight", "RECIPES"]

#: The recipes of :func:`class_weights`.
RECIPES: Tuple[str, ...] = ("recall", "precision")


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


def class_weights(counts: npt.ArrayLike, *,
                  recipe: Literal["recall", "precision"] = "recall") -> np.ndarray:
    """Per-class weights from per-class counts: ``log(total / count)``, then a recipe.

    Args:
        counts: one count (or frequency) per class, each >= 0, not all 0.
        recipe: ``"recall"``: clip below at 1, so every weight is >= 1 and
            rare classes weigh more (fewer false negatives);
            ``"precision"``: divide the unclipped logs by their maximum, so the
            rarest class gets 1 and common classes less (fewer false positives).

    Returns:
        float64 array, one weight per class, for ``class_weight`` (both layers).

    A class with a zero count gets the weight of the rarest class that does
    occur (its log ratio would be infinite; it has no examples in the data
    counted, so the value only matters should it appear later, and then as
    the rarest class). With a single class present every log ratio is 0:
    recall gives 1 everywhere, precision gives 1 everywhere.

    Example (counts of 4 classes; the recipe's usual worked example, whose
    printed values 3.41, 2.57, 1.00, 1.50 and 1.00, 0.755, 0.117, 0.442 are these
    numbers truncated, not rounded)::

        >>> class_weights([1000, 2300, 20310, 6700]).round(4)
        array([3.4115, 2.5786, 1.    , 1.5094])
        >>> class_weights([1000, 2300, 20310, 6700], recipe="precision").round(4)
        array([1.    , 0.7559, 0.1174, 0.4424])

    Raises:
        ValueError: negative, non-finite or all-zero counts, an unknown recipe.
    """
    if recipe not in RECIPES:
        raise ValueError("class_weights: recipe must be one of %s, got %r" % (", ".join(RECIPES), recipe))
    array = _counts(counts)
    present = array > 0
    logs = np.empty_like(array)
    logs[present] = np.log(array.sum() / array[present])  # >= 0: total >= every count
    logs[~present] = logs[present].max()                  # zero count: as the rarest present class
    if recipe == "recall":
        return np.maximum(logs, 1.0)
    top = logs.max()
    return logs / top if top > 0 else np.ones_like(logs)


def pos_weight(labels: npt.ArrayLike, *, axis: int = 1,
               ignore_label: Optional[float] = None) -> np.ndarray:
    """Per-class ``pos_weight`` = negatives / positives, from multi-label targets.

    Args:
        labels: targets in [0, 1] (multi-hot or soft), class axis ``axis``;
            a 1-D array is one class. Soft targets count fractionally:
            positives = sum(t), negatives = sum(1 - t).
        axis: the class axis (as the layer's ``axis``); every other axis is summed over.
        ignore_label: elements equal to it are not counted.

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
            axis out of range, an empty array.
    """
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
    out[usable] = negatives[usable] / positives[usable]
    return out

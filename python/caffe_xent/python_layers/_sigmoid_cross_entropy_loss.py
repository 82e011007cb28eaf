"""SigmoidCrossEntropyLoss in float64 numpy: the math of the Python layer of that name.

The native layer's formulas (``sigmoid_cross_entropy_loss_math.hpp``), vectorized: the
accurate form of the binary cross-entropy with pos_weight, class and element
weights, label smoothing and the focal term (and its asymmetric form, ASL), and
its gradient.

This is caffe-xent's own numpy implementation, shipped to users. The test
suite's reference, tests/sigmoid_cross_entropy_loss_reference.py, is kept
separate on purpose: written independently (with other formulas), it checks
both this module and the native layer rather than agreeing with them by
construction. Do not make one import the other.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, TypedDict, Union, Unpack

import numpy as np
import numpy.typing as npt

from ._options import check_options, fail, normalizer_for, per_class, scale

#: Options of SigmoidCrossEntropyLoss and their defaults (those of the native layer).
SIGMOID_CROSS_ENTROPY_LOSS_DEFAULTS: Dict[str, Any] = {
    "ignore_label": None, "normalization": "BATCH_SIZE", "normalize": None, "axis": 1,
    "pos_weight": None, "class_weight": None, "focal_gamma": 0.0, "focal_alpha": -1.0,
    "label_smoothing": 0.0, "focal_gamma_neg": None, "focal_margin": 0.0,
}


class SigmoidCrossEntropyLossOptions(TypedDict, total=False):
    """The keyword options of :func:`sigmoid_cross_entropy_loss` (the layer's JSON keys)."""

    ignore_label: Optional[int]
    normalization: Optional[str]
    normalize: Optional[bool]
    axis: int
    pos_weight: Union[float, List[float], None]
    class_weight: Union[float, List[float], None]
    focal_gamma: float
    focal_alpha: float
    label_smoothing: float
    focal_gamma_neg: Optional[float]
    focal_margin: float


class BlobGeometry:
    """Checked options and blob geometry of one sigmoid cross-entropy evaluation."""

    def __init__(self, layer: str, opts: Dict[str, Any], x_shape: Tuple[int, ...], axis_given: bool):
        ndim = len(x_shape)
        classes, inner, axis = 1, 1, 0
        if axis_given or ndim >= 2:  # the native rule: a 1-axis x with the default axis has C = 1
            if not -ndim <= opts["axis"] < ndim:
                fail(layer, "axis = %d is out of range for bottom[0] (logits) of shape %s (%d axes)"
                     % (opts["axis"], tuple(x_shape), ndim))
            axis = opts["axis"] % ndim
            classes = x_shape[axis]
            inner = int(np.prod(x_shape[axis + 1:], dtype=np.int64))
        self.axis, self.classes, self.inner = axis, max(classes, 1), inner
        self.batch = x_shape[0] if ndim > 0 else 1
        self.pos_weight = per_class(layer, "pos_weight", opts["pos_weight"], self.classes)
        self.class_weight = per_class(layer, "class_weight", opts["class_weight"], self.classes)


def _element_math(x: np.ndarray, tau: np.ndarray, pos_weight: np.ndarray, weight: np.ndarray,
                  gamma: float, alpha: float) -> Tuple[np.ndarray, np.ndarray]:
    """Element loss and dloss/dx in float64 (the native sigmoid_cross_entropy_loss_math.hpp, vectorized).

    bce = l*log1p(e^-|x|) + (x >= 0 ? a*x : b*|x|) with a = 1-tau, b = pos_weight*tau,
    l = a + b: a sum of non-negative terms, no cancellation.
    """
    a = 1.0 - tau                                   # weight of softplus(x)  = -log(1 - sigma(x))
    b = pos_weight * tau                            # weight of softplus(-x) = -log sigma(x)
    positive = x >= 0
    abs_x = np.abs(x)
    e = np.exp(-abs_x)                              # e^-|x| in [0, 1]: never exp of a positive number
    bce = (a + b) * np.log1p(e) + np.where(positive, scale(a, abs_x), scale(b, abs_x))
    r = 1.0 / (1.0 + e)                             # sigma(|x|)
    if gamma == 0.0 and alpha < 0.0:
        grad = weight * (r * np.where(positive, a - b * e, a * e - b))  # a*sigma(x) - b*sigma(-x)
        return scale(weight, bce), grad
    sigma_pos = np.where(positive, r, e * r)        # sigma(x)
    sigma_neg = np.where(positive, e * r, r)        # sigma(-x) = 1 - sigma(x), without cancellation
    alpha_t = 1.0 if alpha < 0.0 else alpha * tau + (1.0 - alpha) * a
    q = tau * sigma_neg + a * sigma_pos             # 1 - p_t, a sum of terms >= 0
    modulator = np.ones_like(q) if gamma == 0.0 else q ** gamma          # (1 - p_t)^gamma
    coefficient = weight * alpha_t
    dbce = a * sigma_pos - b * sigma_neg
    # d(1-p_t)^gamma/dx = gamma (1-p_t)^gamma (1-2tau) sigma(x) sigma(-x) / (1-p_t); 0 where 1-p_t = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        dmodulator = np.where((q == 0) | (gamma == 0.0), 0.0,
                              gamma * modulator * (1.0 - 2.0 * tau) * (sigma_pos * sigma_neg / q))
    grad = coefficient * (modulator * dbce + scale(dmodulator, bce))
    return scale(coefficient * modulator, bce), grad


def _asymmetric_math(x: np.ndarray, tau: np.ndarray, pos_weight: np.ndarray, weight: np.ndarray,
                     gamma: float, alpha: float, gamma_neg: float, margin: float
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """The asymmetric form (ASL): element loss and dloss/dx in float64 (the native
    AsymmetricElement, vectorized).

    loss = c_pos*sigma(-x)^gamma*softplus(-x) + c_neg*p_m^gamma_neg*(-log(1-p_m)), with
    c_pos = weight*alpha*pos_weight*tau, c_neg = weight*(1-alpha)*(1-tau) (alpha off: 1, 1),
    p_m = max(sigma(x) - margin, 0) and 1 - p_m = sigma(-x) + margin (never 1 - sigma(x)).
    """
    alpha_on = alpha >= 0.0
    c_pos = weight * (alpha if alpha_on else 1.0) * (pos_weight * tau)
    c_neg = weight * ((1.0 - alpha) if alpha_on else 1.0) * (1.0 - tau)
    positive = x >= 0
    abs_x = np.abs(x)
    e = np.exp(-abs_x)
    log1p_e = np.log1p(e)
    r = 1.0 / (1.0 + e)
    sigma_pos = np.where(positive, r, e * r)
    sigma_neg = np.where(positive, e * r, r)
    softplus_neg = np.where(positive, log1p_e, abs_x + log1p_e)      # -log sigma(x)
    mod_pos = np.ones_like(x) if gamma == 0.0 else sigma_neg ** gamma
    # d/dx of the positive term: -c_pos*mod_pos*(sigma(-x) + gamma*sigma(x)*softplus(-x))
    d_pos = -c_pos * mod_pos * (sigma_neg + scale(gamma * sigma_pos, softplus_neg))
    if margin == 0.0:
        shifted = sigma_pos
        log_neg = np.where(positive, abs_x + log1p_e, log1p_e)       # softplus(x) = -log sigma(-x)
        mod_neg = np.ones_like(x) if gamma_neg == 0.0 else shifted ** gamma_neg
        d_neg = c_neg * mod_neg * (sigma_pos + scale(gamma_neg * sigma_neg, log_neg))
    else:
        shifted = np.where(sigma_pos > margin, sigma_pos - margin, 0.0)   # p_m
        kept = sigma_neg + margin                                         # 1 - p_m
        # -log1p(-p_m) while p_m <= 1/2, -log(1 - p_m) above (each keeps its digits)
        with np.errstate(divide="ignore"):
            log_neg = np.where(shifted <= 0.5, -np.log1p(-np.minimum(shifted, 0.5)), -np.log(kept))
        mod_neg = np.ones_like(x) if gamma_neg == 0.0 else shifted ** gamma_neg
        active = shifted > 0
        safe = np.where(active, shifted, 1.0)
        focus = 0.0 if gamma_neg == 0.0 else gamma_neg * mod_neg * (log_neg / safe)
        d_neg = np.where(active, c_neg * (sigma_pos * sigma_neg) * (focus + mod_neg / kept), 0.0)
    loss = scale(c_pos * mod_pos, softplus_neg) + scale(c_neg * mod_neg, log_neg)
    return loss, d_pos + d_neg


def element_losses(layer: str, opts: Dict[str, Any], x: np.ndarray, t: np.ndarray,
                   w: Optional[np.ndarray], axis_given: bool) -> Tuple[np.ndarray, np.ndarray, float]:
    """Element losses, element gradients (unnormalized, top diff 1, both flat) and the normalizer.

    ``opts`` come from :func:`check_options` with
    :data:`SIGMOID_CROSS_ENTROPY_LOSS_DEFAULTS`; ``axis_given``: whether the
    options named ``axis`` (a 1-axis x has one class unless they did).
    """
    if t.size != x.size:
        fail(layer, "bottom[1] (targets) has %d elements (shape %s) but bottom[0] (logits) has %d "
             "(shape %s); they must have the same count" % (t.size, t.shape, x.size, x.shape))
    if w is not None and w.size != x.size:
        fail(layer, "bottom[2] (weights) has %d elements (shape %s) but bottom[0] (logits) has %d "
             "(shape %s); they must have the same count" % (w.size, w.shape, x.size, x.shape))
    geometry = BlobGeometry(layer, opts, x.shape, axis_given)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    ignore = opts["ignore_label"]
    ignored = (t == ignore) if ignore is not None else np.zeros(t.shape, dtype=bool)
    bad = ~ignored & ~((t >= 0) & (t <= 1))
    if bad.any():
        fail(layer, "bottom[1] (targets) has %d values outside [0, 1] (or NaN)%s; first at flat "
             "index %d: %r" % (np.count_nonzero(bad), (" that are not ignore_label (%d)" % ignore)
                               if ignore is not None else "; set ignore_label to skip elements",
                               np.flatnonzero(bad)[0], float(t[bad][0])))
    weight_elements = np.ones_like(x)
    if w is not None:
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        bad_w = ~(w >= 0)
        if bad_w.any():
            fail(layer, "bottom[2] (weights) has %d negative (or NaN) values; weights must be >= 0"
                 % np.count_nonzero(bad_w))
        weight_elements = w
    cls = (np.arange(x.size) // geometry.inner) % geometry.classes
    eps = opts["label_smoothing"]
    tau = np.where(ignored, 0.0, t) * (1.0 - eps) + eps / 2.0       # tau = t(1-eps) + eps/2
    weight = geometry.class_weight[cls] * weight_elements
    with np.errstate(invalid="ignore", over="ignore"):
        if opts["focal_gamma_neg"] is not None or opts["focal_margin"] > 0:
            gamma_neg = opts["focal_gamma"] if opts["focal_gamma_neg"] is None else opts["focal_gamma_neg"]
            loss, grad = _asymmetric_math(x, tau, geometry.pos_weight[cls], weight,
                                          opts["focal_gamma"], opts["focal_alpha"], gamma_neg,
                                          opts["focal_margin"])
        else:
            loss, grad = _element_math(x, tau, geometry.pos_weight[cls], weight,
                                       opts["focal_gamma"], opts["focal_alpha"])
    nan = np.isnan(x)                               # NaN in, NaN out (the selects above may hide it)
    loss[nan] = np.nan
    grad[nan] = np.nan
    loss[ignored] = 0.0                             # ignored elements: 0, even where x is NaN
    grad[ignored] = 0.0
    normalizer = normalizer_for(opts["normalization"], x.size, np.count_nonzero(~ignored), geometry.batch)
    return loss, grad, normalizer


def sigmoid_cross_entropy_loss(x: npt.ArrayLike, t: npt.ArrayLike, w: Optional[npt.ArrayLike] = None,
                               **options: Unpack[SigmoidCrossEntropyLossOptions]
                               ) -> Tuple[float, np.ndarray]:
    """The SigmoidCrossEntropyLoss in float64 numpy: ``(loss, dloss/dx)``.

    ``options`` are the Python layer's keys (see :mod:`caffe_xent.python_layers`); the
    gradient is for a top diff (loss weight) of 1. Raises ValueError on bad
    input, as the layers do.
    """
    layer = "SigmoidCrossEntropyLoss"
    opts = check_options(layer, options, SIGMOID_CROSS_ENTROPY_LOSS_DEFAULTS)
    x = np.asarray(x, dtype=np.float64)
    loss, grad, normalizer = element_losses(layer, opts, x, np.asarray(t), None if w is None
                                            else np.asarray(w), "axis" in options)
    return float(np.sum(loss) / normalizer), (grad / normalizer).reshape(x.shape)

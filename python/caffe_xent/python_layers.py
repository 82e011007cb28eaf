"""Caffe Python layers (``type: 'Python'``) computing caffe-xent's two losses in numpy.

They give the same loss and gradient as the native layers
``SigmoidCrossEntropyLoss`` and ``MultiLabelSoftmaxLoss`` (to float rounding:
the math runs in float64 here), for setups that must stay on Python layers.
Prefer the native layers where you can: they are faster, run on the GPU and
need no ``loss_weight`` line.

Options are given as JSON in ``python_param.param_str``; the keys mirror the
proto fields of the native layers (``loss_param`` and
``sigmoid_cross_entropy_loss_param`` / ``multi_label_softmax_loss_param``):

=====================  ==========  ==========  =====================================
key                    Sigmoid     MultiLabel  meaning
=====================  ==========  ==========  =====================================
ignore_label           unset       unset       targets equal to it are ignored (int)
normalization          BATCH_SIZE  VALID       "FULL", "VALID", "BATCH_SIZE", "NONE"
normalize              unset       unset       deprecated bool: true = VALID,
                                               false = BATCH_SIZE (if no normalization)
axis                   1           1           class (softmax) axis; negative from the end
pos_weight             1           --          number or one per class, >= 0
class_weight           1           1           number or one per class, >= 0
focal_gamma            0           --          focal exponent, >= 0
focal_alpha            -1 (off)    --          in [0, 1], or -1
label_smoothing        0           0           in [0, 1)
target_normalization   --          "COUNT"     "COUNT", "SUM", "NONE"
=====================  ==========  ==========  =====================================

Real-valued options are rounded to float32 as the proto fields are, so a
float64 computation here matches the native layer bit-for-bit in its inputs.
Unknown keys, values of the wrong type or out of range, and bad blobs raise
``ValueError`` naming the layer (``SigmoidCrossEntropyLoss (Python layer)``)
and the problem; NaN in the logits gives a NaN loss (never ``exit()``).

A Python layer is not a LossLayer to Caffe: give ``loss_weight: 1`` in the
prototxt (or the net ignores the loss and its gradient), and with two tops
give it once per top (``loss_weight: 1 loss_weight: 0``); Caffe aborts on a
single loss_weight for two tops before the layer can object. The diff Caffe
puts on each top (the loss weight) scales the gradient.

Prototxt::

    layer {
      name: "loss" type: "Python" bottom: "score" bottom: "label" top: "loss"
      python_param {
        module: "caffe_xent.python_layers" layer: "SigmoidCrossEntropyLoss"
        param_str: '{"pos_weight": [3.0, 1.0], "normalization": "VALID"}'
      }
      loss_weight: 1
    }

NetSpec::

    import json
    from caffe import layers as L
    n.loss = L.Python(n.score, n.label, loss_weight=1,
                      python_param=dict(module="caffe_xent.python_layers",
                                        layer="MultiLabelSoftmaxLoss",
                                        param_str=json.dumps({"label_smoothing": 0.1})))

The numpy math is also available without Caffe:
:func:`sigmoid_cross_entropy_loss` and :func:`multi_label_softmax_loss`.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

try:  # the module's numpy functions work without pycaffe
    import caffe as _caffe
    _LayerBase = _caffe.Layer
except ImportError:  # pragma: no cover - caffe is part of this build
    _LayerBase = object

__all__ = ["SigmoidCrossEntropyLoss", "MultiLabelSoftmaxLoss",
           "sigmoid_cross_entropy_loss", "multi_label_softmax_loss",
           "SIGMOID_DEFAULTS", "MULTILABEL_DEFAULTS"]

_NORMALIZATIONS = ("FULL", "VALID", "BATCH_SIZE", "NONE")
_TARGET_NORMALIZATIONS = ("COUNT", "SUM", "NONE")

#: Options of SigmoidCrossEntropyLoss and their defaults (those of the native layer).
SIGMOID_DEFAULTS: Dict[str, Any] = {
    "ignore_label": None, "normalization": "BATCH_SIZE", "normalize": None, "axis": 1,
    "pos_weight": None, "class_weight": None, "focal_gamma": 0.0, "focal_alpha": -1.0,
    "label_smoothing": 0.0,
}
#: Options of MultiLabelSoftmaxLoss and their defaults (those of the native layer).
MULTILABEL_DEFAULTS: Dict[str, Any] = {
    "ignore_label": None, "normalization": "VALID", "normalize": None, "axis": 1,
    "target_normalization": "COUNT", "class_weight": None, "label_smoothing": 0.0,
}


def _fail(layer: str, message: str) -> None:
    raise ValueError("%s: %s" % (layer, message))


def _float32(value: float) -> float:
    """A real option as the proto stores it (float32)."""
    return float(np.float32(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _options(layer: str, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> Dict[str, Any]:
    """Checks option names, types and ranges; returns the options with defaults filled in."""
    if not isinstance(given, Mapping):
        _fail(layer, "options must be a JSON object (dict), got %s" % type(given).__name__)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        _fail(layer, "unknown option%s %s; known: %s" % (
            "s" if len(unknown) > 1 else "", ", ".join(map(repr, unknown)),
            ", ".join(sorted(defaults))))
    opts = dict(defaults)
    opts.update(given)
    if given.get("normalization") is None and given.get("normalize") is not None:
        if not isinstance(given["normalize"], bool):
            _fail(layer, "normalize = %r must be true or false" % (given["normalize"],))
        opts["normalization"] = "VALID" if given["normalize"] else "BATCH_SIZE"
    if opts["normalization"] is None:
        opts["normalization"] = defaults["normalization"]
    if opts["normalization"] not in _NORMALIZATIONS:
        _fail(layer, "normalization = %r is invalid; use one of %s"
              % (opts["normalization"], ", ".join(_NORMALIZATIONS)))
    if opts["ignore_label"] is not None:
        value = opts["ignore_label"]
        if not _is_number(value) or float(value) != int(value):
            _fail(layer, "ignore_label = %r must be an integer (as loss_param.ignore_label)" % (value,))
        opts["ignore_label"] = int(value)
    if not isinstance(opts["axis"], (int, np.integer)) or isinstance(opts["axis"], bool):
        _fail(layer, "axis = %r must be an integer" % (opts["axis"],))
    for key in ("focal_gamma", "focal_alpha", "label_smoothing"):
        if key in opts:
            if not _is_number(opts[key]):
                _fail(layer, "%s = %r must be a number" % (key, opts[key]))
            opts[key] = _float32(opts[key])
    for key in ("pos_weight", "class_weight"):
        if key in opts and opts[key] is not None:
            values = opts[key] if isinstance(opts[key], (list, tuple)) else [opts[key]]
            if not all(_is_number(v) for v in values):
                _fail(layer, "%s = %r must be a number or a list of numbers" % (key, opts[key]))
            array = np.array([_float32(v) for v in values], dtype=np.float64)
            bad = np.flatnonzero(~(array >= 0))
            if bad.size:
                _fail(layer, "%s[%d] = %g is negative; weights must be >= 0"
                      % (key, bad[0], array[bad[0]]))
            opts[key] = array
    if "focal_gamma" in defaults and not opts["focal_gamma"] >= 0:
        _fail(layer, "focal_gamma = %r is invalid; it must be >= 0" % opts["focal_gamma"])
    if "focal_alpha" in defaults:
        alpha = opts["focal_alpha"]
        if not (alpha == -1.0 or 0.0 <= alpha <= 1.0):
            _fail(layer, "focal_alpha = %r is invalid; it must be in [0, 1], or -1 (off)" % alpha)
    if not 0.0 <= opts["label_smoothing"] < 1.0:
        _fail(layer, "label_smoothing = %r is invalid; it must be in [0, 1)" % opts["label_smoothing"])
    if "target_normalization" in defaults and opts["target_normalization"] not in _TARGET_NORMALIZATIONS:
        _fail(layer, "target_normalization = %r is invalid; use one of %s"
              % (opts["target_normalization"], ", ".join(_TARGET_NORMALIZATIONS)))
    return opts


def _per_class(layer: str, key: str, values: Optional[np.ndarray], classes: int) -> np.ndarray:
    """The native rule: none -> 1 for every class, one value broadcasts, else exactly C."""
    if values is None or values.size == 0:
        return np.ones(classes)
    if values.size == 1:
        return np.full(classes, values[0])
    if values.size != classes:
        _fail(layer, "%s has %d values; give none, one (broadcast) or %d (one per class along "
              "the class axis)" % (key, values.size, classes))
    return values


def _normalizer(mode: str, full: float, valid: float, batch: float) -> float:
    """Upstream's rules, max(1, .) so that an all-ignored batch divides by 1, not 0."""
    value = {"FULL": full, "VALID": valid, "BATCH_SIZE": batch, "NONE": 1.0}[mode]
    return max(1.0, float(value))


def _scale(weight: np.ndarray, value: np.ndarray) -> np.ndarray:
    """weight * value with 0 * inf = 0: a zero weight means the term is absent."""
    weight, value = np.broadcast_arrays(weight, value)
    out = np.zeros(weight.shape)
    np.multiply(weight, value, out=out, where=weight != 0)
    return out


# ---- SigmoidCrossEntropyLoss ------------------------------------------------------------------

class _SigmoidSetup:
    """Checked options and blob geometry of one sigmoid cross-entropy evaluation."""

    def __init__(self, layer: str, opts: Dict[str, Any], x_shape: Tuple[int, ...], axis_given: bool):
        ndim = len(x_shape)
        classes, inner, axis = 1, 1, 0
        if axis_given or ndim >= 2:  # the native rule: a 1-axis x with the default axis has C = 1
            if not -ndim <= opts["axis"] < ndim:
                _fail(layer, "axis = %d is out of range for bottom[0] (logits) of shape %s (%d axes)"
                      % (opts["axis"], tuple(x_shape), ndim))
            axis = opts["axis"] % ndim
            classes = x_shape[axis]
            inner = int(np.prod(x_shape[axis + 1:], dtype=np.int64))
        self.axis, self.classes, self.inner = axis, max(classes, 1), inner
        self.batch = x_shape[0] if ndim > 0 else 1
        self.pos_weight = _per_class(layer, "pos_weight", opts["pos_weight"], self.classes)
        self.class_weight = _per_class(layer, "class_weight", opts["class_weight"], self.classes)


def _sigmoid_elements(x: np.ndarray, tau: np.ndarray, pos_weight: np.ndarray, weight: np.ndarray,
                      gamma: float, alpha: float) -> Tuple[np.ndarray, np.ndarray]:
    """Element loss and dloss/dx in float64 (the native sigmoid_xent_math.hpp, vectorized).

    bce = l*log1p(e^-|x|) + (x >= 0 ? a*x : b*|x|) with a = 1-tau, b = pos_weight*tau,
    l = a + b: a sum of non-negative terms, no cancellation.
    """
    a = 1.0 - tau                                   # weight of softplus(x)  = -log(1 - sigma(x))
    b = pos_weight * tau                            # weight of softplus(-x) = -log sigma(x)
    positive = x >= 0
    abs_x = np.abs(x)
    e = np.exp(-abs_x)                              # e^-|x| in [0, 1]: never exp of a positive number
    bce = (a + b) * np.log1p(e) + np.where(positive, _scale(a, abs_x), _scale(b, abs_x))
    r = 1.0 / (1.0 + e)                             # sigma(|x|)
    if gamma == 0.0 and alpha < 0.0:
        grad = weight * (r * np.where(positive, a - b * e, a * e - b))  # a*sigma(x) - b*sigma(-x)
        return _scale(weight, bce), grad
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
    grad = coefficient * (modulator * dbce + _scale(dmodulator, bce))
    return _scale(coefficient * modulator, bce), grad


def _sigmoid_compute(layer: str, opts: Dict[str, Any], x: np.ndarray, t: np.ndarray,
                     w: Optional[np.ndarray], axis_given: bool):
    """Element losses, element gradients (unnormalized, top diff 1) and the normalizer."""
    if t.size != x.size:
        _fail(layer, "bottom[1] (targets) has %d elements (shape %s) but bottom[0] (logits) has %d "
              "(shape %s); they must have the same count" % (t.size, t.shape, x.size, x.shape))
    if w is not None and w.size != x.size:
        _fail(layer, "bottom[2] (weights) has %d elements (shape %s) but bottom[0] (logits) has %d "
              "(shape %s); they must have the same count" % (w.size, w.shape, x.size, x.shape))
    geometry = _SigmoidSetup(layer, opts, x.shape, axis_given)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    ignore = opts["ignore_label"]
    ignored = (t == ignore) if ignore is not None else np.zeros(t.shape, dtype=bool)
    bad = ~ignored & ~((t >= 0) & (t <= 1))
    if bad.any():
        _fail(layer, "bottom[1] (targets) has %d values outside [0, 1] (or NaN)%s; first at flat "
              "index %d: %r" % (np.count_nonzero(bad), (" that are not ignore_label (%d)" % ignore)
                                if ignore is not None else "; set ignore_label to skip elements",
                                np.flatnonzero(bad)[0], float(t[bad][0])))
    weight_elements = np.ones_like(x)
    if w is not None:
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        bad_w = ~(w >= 0)
        if bad_w.any():
            _fail(layer, "bottom[2] (weights) has %d negative (or NaN) values; weights must be >= 0"
                  % np.count_nonzero(bad_w))
        weight_elements = w
    cls = (np.arange(x.size) // geometry.inner) % geometry.classes
    eps = opts["label_smoothing"]
    tau = np.where(ignored, 0.0, t) * (1.0 - eps) + eps / 2.0       # tau = t(1-eps) + eps/2
    weight = geometry.class_weight[cls] * weight_elements
    with np.errstate(invalid="ignore", over="ignore"):
        loss, grad = _sigmoid_elements(x, tau, geometry.pos_weight[cls], weight,
                                       opts["focal_gamma"], opts["focal_alpha"])
    nan = np.isnan(x)                               # NaN in, NaN out (the selects above may hide it)
    loss[nan] = np.nan
    grad[nan] = np.nan
    loss[ignored] = 0.0                             # ignored elements: 0, even where x is NaN
    grad[ignored] = 0.0
    normalizer = _normalizer(opts["normalization"], x.size, np.count_nonzero(~ignored), geometry.batch)
    return loss, grad, normalizer


def sigmoid_cross_entropy_loss(x, t, w=None, **options) -> Tuple[float, np.ndarray]:
    """The SigmoidCrossEntropyLoss in float64 numpy: ``(loss, dloss/dx)``.

    ``options`` are the Python layer's keys (see the module docstring); the
    gradient is for a top diff (loss weight) of 1. Raises ValueError on bad
    input, as the layers do.
    """
    layer = "SigmoidCrossEntropyLoss"
    opts = _options(layer, options, SIGMOID_DEFAULTS)
    x = np.asarray(x, dtype=np.float64)
    loss, grad, normalizer = _sigmoid_compute(layer, opts, x, np.asarray(t), None if w is None
                                              else np.asarray(w), "axis" in options)
    return float(np.sum(loss) / normalizer), (grad / normalizer).reshape(x.shape)


def _zero_target_diffs(propagate_down, bottom) -> None:
    """Targets and weights get no gradient: a zero diff where Caffe asks for one.

    The native layers refuse such a request; a Python layer cannot, because it
    cannot tell Caffe (AllowForceBackward) that these bottoms take no
    gradient, so ``force_backward: true`` asks for every bottom's gradient.
    """
    for i in range(1, len(bottom)):
        if propagate_down[i]:
            bottom[i].diff[...] = 0


class _JsonLayer(_LayerBase):
    """Shared plumbing: JSON options from param_str, messages naming the layer."""

    _type = ""
    _defaults: Dict[str, Any] = {}

    def _name(self) -> str:
        return "%s (Python layer)" % self._type

    def _parse(self) -> Dict[str, Any]:
        text = getattr(self, "param_str", "") or ""
        given: Any = {}
        if text.strip():
            try:
                given = json.loads(text)
            except json.JSONDecodeError as error:
                _fail(self._name(), "param_str is not valid JSON (%s): %r" % (error, text))
        opts = _options(self._name(), given, self._defaults)
        self._given = dict(given)
        return opts

    def _check_blobs(self, bottom, top, bottoms: Tuple[int, ...], tops: Tuple[int, ...],
                     bottom_help: str, top_help: str) -> None:
        if len(bottom) not in bottoms:
            _fail(self._name(), "needs %s, got %d bottoms" % (bottom_help, len(bottom)))
        if len(top) not in tops:
            _fail(self._name(), "needs %s, got %d tops" % (top_help, len(top)))


class SigmoidCrossEntropyLoss(_JsonLayer):
    """Sigmoid cross-entropy loss as a Caffe Python layer (numpy, float64 math).

    Same loss, gradient, options and refusals as the native
    ``SigmoidCrossEntropyLoss`` (docs/sigmoid_cross_entropy_loss.md)::

        ell = class_weight * w * alpha_t * (1 - p_t)^gamma * [(1 - tau) x + l softplus(-x)]
        tau = t (1 - eps) + eps/2,   l = 1 + (pos_weight - 1) tau,   loss = sum(ell) / normalizer

    Bottoms: logits x (any shape), targets t (same count, in [0, 1] or
    ignore_label), optional per-element weights w >= 0. Tops: the loss
    (scalar), optionally the per-element losses (shape of x, not normalized).
    Default normalization: BATCH_SIZE. Gradient: top diff / normalizer times
    dell/dx (plus the per-element top's diff, if any).

    Prototxt::

        layer {
          name: "loss" type: "Python" bottom: "score" bottom: "label" top: "loss"
          python_param { module: "caffe_xent.python_layers" layer: "SigmoidCrossEntropyLoss"
                         param_str: '{"pos_weight": 3, "focal_gamma": 2}' }
          loss_weight: 1
        }

    NetSpec::

        n.loss = L.Python(n.score, n.label, loss_weight=1, python_param=dict(
            module="caffe_xent.python_layers", layer="SigmoidCrossEntropyLoss",
            param_str=json.dumps({"pos_weight": 3, "focal_gamma": 2})))
    """

    _type = "SigmoidCrossEntropyLoss"
    _defaults = SIGMOID_DEFAULTS

    def setup(self, bottom, top):
        self._check_blobs(bottom, top, (2, 3), (1, 2),
                          "2 bottoms (logits, targets) or 3 (logits, targets, weights)",
                          "1 top (loss) or 2 (loss, per-element loss)")
        self._opts = self._parse()
        self._axis_given = "axis" in self._given

    def reshape(self, bottom, top):
        if bottom[1].count != bottom[0].count:
            _fail(self._name(), "bottom[1] (targets) has %d elements (shape %s) but bottom[0] (logits) "
                  "has %d (shape %s); they must have the same count"
                  % (bottom[1].count, tuple(bottom[1].data.shape), bottom[0].count,
                     tuple(bottom[0].data.shape)))
        _SigmoidSetup(self._name(), self._opts, bottom[0].data.shape, self._axis_given)
        top[0].reshape()  # a scalar, as the native layer's loss top
        if len(top) == 2:
            top[1].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        w = bottom[2].data if len(bottom) == 3 else None
        loss, grad, normalizer = _sigmoid_compute(self._name(), self._opts, bottom[0].data,
                                                  bottom[1].data, w, self._axis_given)
        self._grad, self._normalizer = grad, normalizer
        top[0].data[...] = np.sum(loss) / normalizer  # float64 sum, rounded once
        if len(top) == 2:
            top[1].data[...] = loss.reshape(top[1].data.shape)

    def backward(self, top, propagate_down, bottom):
        _zero_target_diffs(propagate_down, bottom)
        if not propagate_down[0]:
            return
        scale = float(top[0].diff.reshape(-1)[0]) / self._normalizer  # loss_weight / normalizer
        if len(top) == 2:
            scale = scale + top[1].diff.reshape(-1).astype(np.float64)
        bottom[0].diff[...] = (scale * self._grad).reshape(bottom[0].diff.shape)


# ---- MultiLabelSoftmaxLoss --------------------------------------------------------------------

def _multilabel_compute(layer: str, opts: Dict[str, Any], x: np.ndarray, t: np.ndarray):
    """Row losses, dloss/dx (top diff 1, unnormalized), probabilities and the normalizer."""
    if x.shape != t.shape:
        _fail(layer, "bottom[1] (targets) has shape %s but bottom[0] (scores) has %s; they must be "
              "equal" % (tuple(t.shape), tuple(x.shape)))
    ndim = x.ndim
    if not -ndim <= opts["axis"] < ndim:
        _fail(layer, "axis %d is out of range for bottom[0] (scores) of shape %s (%d axes)"
              % (opts["axis"], tuple(x.shape), ndim))
    axis = opts["axis"] % ndim
    classes = x.shape[axis]
    if classes == 0:
        _fail(layer, "bottom[0] (scores) of shape %s has no classes along axis %d" % (tuple(x.shape), axis))
    if opts["ignore_label"] == 0:
        _fail(layer, "ignore_label = 0 is refused: 0 is the target of a negative class, so every row "
              "with a negative class would be ignored")
    w = _per_class(layer, "class_weight", opts["class_weight"], classes)
    rows_x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1).reshape(-1, classes)
    rows_t = np.moveaxis(np.asarray(t, dtype=np.float64), axis, -1).reshape(-1, classes)
    ignore = opts["ignore_label"]
    is_ignore = (rows_t == ignore) if ignore is not None else np.zeros(rows_t.shape, dtype=bool)
    invalid = (rows_t != 0) & ~is_ignore & ~(rows_t > 0)           # negative or NaN
    if invalid.any():
        flat = np.moveaxis(invalid.reshape(np.moveaxis(x, axis, -1).shape), -1, axis).reshape(-1)
        index = int(np.flatnonzero(flat)[0])
        _fail(layer, "bottom[1] (targets) has value %r at flat index %d (shape %s); targets must be "
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
        weighted_gap = _scale(wt, gap).sum(axis=1)                # sum w t (m - x), 0 * inf = 0
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
    normalizer = _normalizer(opts["normalization"], rows_x.shape[0], np.count_nonzero(valid),
                             x.shape[0])
    return loss, grad, prob, normalizer


def multi_label_softmax_loss(x, t, **options) -> Tuple[float, np.ndarray]:
    """The MultiLabelSoftmaxLoss in float64 numpy: ``(loss, dloss/dx)``.

    ``options`` are the Python layer's keys (see the module docstring); the
    gradient is for a top diff (loss weight) of 1. Raises ValueError on bad
    input, as the layers do.
    """
    layer = "MultiLabelSoftmaxLoss"
    opts = _options(layer, options, MULTILABEL_DEFAULTS)
    loss, grad, _, normalizer = _multilabel_compute(layer, opts, np.asarray(x, dtype=np.float64),
                                                    np.asarray(t))
    return float(np.sum(loss) / normalizer), grad / normalizer


class MultiLabelSoftmaxLoss(_JsonLayer):
    """Multi-label softmax cross-entropy (Mahajan et al. 2018) as a Caffe Python layer.

    Same loss, gradient, options and refusals as the native
    ``MultiLabelSoftmaxLoss`` (docs/multi_label_softmax_loss.md)::

        q_rc = (1 - eps) class_weight_c t_rc / norm_r + eps / C
        ell_r = -sum_c q_rc log softmax(x_r)_c,   loss = sum_r ell_r / normalizer

    with norm_r the number of positive targets (COUNT), their sum (SUM) or 1
    (NONE). A row with no positive target, or with a target equal to
    ignore_label, is ignored. Bottoms: scores x and targets t of the same
    shape (targets >= 0). Tops: the loss, optionally the softmax
    probabilities (no gradient). Default normalization: VALID (rows not ignored).

    Prototxt::

        layer {
          name: "loss" type: "Python" bottom: "score" bottom: "labels" top: "loss"
          python_param { module: "caffe_xent.python_layers" layer: "MultiLabelSoftmaxLoss"
                         param_str: '{"target_normalization": "SUM", "label_smoothing": 0.1}' }
          loss_weight: 1
        }

    NetSpec::

        n.loss = L.Python(n.score, n.labels, loss_weight=1, python_param=dict(
            module="caffe_xent.python_layers", layer="MultiLabelSoftmaxLoss",
            param_str=json.dumps({"target_normalization": "SUM"})))
    """

    _type = "MultiLabelSoftmaxLoss"
    _defaults = MULTILABEL_DEFAULTS

    def setup(self, bottom, top):
        self._check_blobs(bottom, top, (2,), (1, 2), "2 bottoms (scores, targets)",
                          "1 top (loss) or 2 (loss, probabilities)")
        self._opts = self._parse()
        if self._opts["ignore_label"] == 0:
            _fail(self._name(), "ignore_label = 0 is refused: 0 is the target of a negative class, "
                  "so every row with a negative class would be ignored")

    def reshape(self, bottom, top):
        x_shape, t_shape = tuple(bottom[0].data.shape), tuple(bottom[1].data.shape)
        if x_shape != t_shape:
            _fail(self._name(), "bottom[1] (targets) has shape %s but bottom[0] (scores) has %s; "
                  "they must be equal" % (t_shape, x_shape))
        if not -len(x_shape) <= self._opts["axis"] < len(x_shape):
            _fail(self._name(), "axis %d is out of range for bottom[0] (scores) of shape %s (%d axes)"
                  % (self._opts["axis"], x_shape, len(x_shape)))
        classes = x_shape[self._opts["axis"] % len(x_shape)]
        _per_class(self._name(), "class_weight", self._opts["class_weight"], classes)
        top[0].reshape()
        if len(top) == 2:
            top[1].reshape(*x_shape)

    def forward(self, bottom, top):
        loss, grad, prob, normalizer = _multilabel_compute(self._name(), self._opts,
                                                           bottom[0].data, bottom[1].data)
        self._grad, self._normalizer = grad, normalizer
        top[0].data[...] = np.sum(loss) / normalizer
        if len(top) == 2:
            top[1].data[...] = prob

    def backward(self, top, propagate_down, bottom):
        _zero_target_diffs(propagate_down, bottom)
        if not propagate_down[0]:
            return
        scale = float(top[0].diff.reshape(-1)[0]) / self._normalizer  # loss_weight / normalizer
        bottom[0].diff[...] = scale * self._grad

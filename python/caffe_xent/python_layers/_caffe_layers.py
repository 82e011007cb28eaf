"""Caffe plumbing of the numpy Python layers: the ``caffe.Layer`` classes.

JSON options from ``python_param.param_str``, blob counts and shapes checked
in setup/reshape with messages naming the layer, the loss math of
_sigmoid_cross_entropy_loss.py and _multi_label_softmax_loss.py in forward,
the saved gradient scaled by the top diff (the loss weight) in backward.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Sequence, Tuple

import numpy as np

from ._multi_label_softmax_loss import MULTI_LABEL_SOFTMAX_LOSS_DEFAULTS, row_losses
from ._options import check_options, fail, per_class
from ._sigmoid_cross_entropy_loss import (SIGMOID_CROSS_ENTROPY_LOSS_DEFAULTS, BlobGeometry,
                                          element_losses)

try:  # the numpy functions work without pycaffe; the layers need it
    import caffe as _caffe
    _LayerBase: Any = _caffe.Layer
except ImportError:  # pragma: no cover - caffe is part of this build
    _LayerBase = object

__all__ = ["SigmoidCrossEntropyLoss", "MultiLabelSoftmaxLoss"]


def _zero_target_diffs(propagate_down: Sequence[bool], bottom: Sequence[Any]) -> None:
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

    param_str: str  # set by Caffe from python_param.param_str
    phase: int  # set by Caffe: caffe.TRAIN or caffe.TEST
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
                fail(self._name(), "param_str is not valid JSON (%s): %r" % (error, text))
        opts = check_options(self._name(), given, self._defaults)
        self._given = dict(given)
        return opts

    def _check_blobs(self, bottom: Sequence[Any], top: Sequence[Any], bottoms: Tuple[int, ...],
                     tops: Tuple[int, ...], bottom_help: str, top_help: str) -> None:
        if len(bottom) not in bottoms:
            fail(self._name(), "needs %s, got %d bottoms" % (bottom_help, len(bottom)))
        if len(top) not in tops:
            fail(self._name(), "needs %s, got %d tops" % (top_help, len(top)))


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
    _defaults = SIGMOID_CROSS_ENTROPY_LOSS_DEFAULTS

    def setup(self, bottom: Sequence[Any], top: Sequence[Any]) -> None:
        self._check_blobs(bottom, top, (2, 3), (1, 2),
                          "2 bottoms (logits, targets) or 3 (logits, targets, weights)",
                          "1 top (loss) or 2 (loss, per-element loss)")
        self._opts = self._parse()
        self._axis_given = "axis" in self._given

    def reshape(self, bottom: Sequence[Any], top: Sequence[Any]) -> None:
        if bottom[1].count != bottom[0].count:
            fail(self._name(), "bottom[1] (targets) has %d elements (shape %s) but bottom[0] (logits) "
                 "has %d (shape %s); they must have the same count"
                 % (bottom[1].count, tuple(bottom[1].data.shape), bottom[0].count,
                    tuple(bottom[0].data.shape)))
        BlobGeometry(self._name(), self._opts, bottom[0].data.shape, self._axis_given)
        top[0].reshape()  # a scalar, as the native layer's loss top
        if len(top) == 2:
            top[1].reshape(*bottom[0].data.shape)

    def forward(self, bottom: Sequence[Any], top: Sequence[Any]) -> None:
        w = bottom[2].data if len(bottom) == 3 else None
        loss, grad, normalizer = element_losses(self._name(), self._opts, bottom[0].data,
                                                bottom[1].data, w, self._axis_given)
        self._grad, self._normalizer = grad, normalizer
        top[0].data[...] = np.sum(loss) / normalizer  # float64 sum, rounded once
        if len(top) == 2:
            top[1].data[...] = loss.reshape(top[1].data.shape)

    def backward(self, top: Sequence[Any], propagate_down: Sequence[bool],
                 bottom: Sequence[Any]) -> None:
        _zero_target_diffs(propagate_down, bottom)
        if not propagate_down[0]:
            return
        scale = float(top[0].diff.reshape(-1)[0]) / self._normalizer  # loss_weight / normalizer
        if len(top) == 2:
            scale = scale + top[1].diff.reshape(-1).astype(np.float64)
        bottom[0].diff[...] = (scale * self._grad).reshape(bottom[0].diff.shape)


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
    _defaults = MULTI_LABEL_SOFTMAX_LOSS_DEFAULTS

    def setup(self, bottom: Sequence[Any], top: Sequence[Any]) -> None:
        self._check_blobs(bottom, top, (2,), (1, 2), "2 bottoms (scores, targets)",
                          "1 top (loss) or 2 (loss, probabilities)")
        self._opts = self._parse()
        if self._opts["ignore_label"] == 0:
            fail(self._name(), "ignore_label = 0 is refused: 0 is the target of a negative class, "
                 "so every row with a negative class would be ignored")

    def reshape(self, bottom: Sequence[Any], top: Sequence[Any]) -> None:
        x_shape, t_shape = tuple(bottom[0].data.shape), tuple(bottom[1].data.shape)
        if x_shape != t_shape:
            fail(self._name(), "bottom[1] (targets) has shape %s but bottom[0] (scores) has %s; "
                 "they must be equal" % (t_shape, x_shape))
        if not -len(x_shape) <= self._opts["axis"] < len(x_shape):
            fail(self._name(), "axis %d is out of range for bottom[0] (scores) of shape %s (%d axes)"
                 % (self._opts["axis"], x_shape, len(x_shape)))
        classes = x_shape[self._opts["axis"] % len(x_shape)]
        per_class(self._name(), "class_weight", self._opts["class_weight"], classes)
        top[0].reshape()
        if len(top) == 2:
            top[1].reshape(*x_shape)

    def forward(self, bottom: Sequence[Any], top: Sequence[Any]) -> None:
        loss, grad, prob, normalizer = row_losses(self._name(), self._opts,
                                                  bottom[0].data, bottom[1].data)
        self._grad, self._normalizer = grad, normalizer
        top[0].data[...] = np.sum(loss) / normalizer
        if len(top) == 2:
            top[1].data[...] = prob

    def backward(self, top: Sequence[Any], propagate_down: Sequence[bool],
                 bottom: Sequence[Any]) -> None:
        _zero_target_diffs(propagate_down, bottom)
        if not propagate_down[0]:
            return
        scale = float(top[0].diff.reshape(-1)[0]) / self._normalizer  # loss_weight / normalizer
        bottom[0].diff[...] = scale * self._grad

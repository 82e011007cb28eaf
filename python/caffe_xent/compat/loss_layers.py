"""The original ``loss_layers`` module of Python loss layers, fixed: ``module: 'loss_layers'`` prototxts run unchanged.

``CustomSigmoidCrossEntropyLossLayer`` is what the original prototxts name::

    python_param { module: 'loss_layers' layer: 'CustomSigmoidCrossEntropyLossLayer' }

It keeps that layer's intended semantics and fixes its defects:

- loss: the *sum* over all elements of max(x, 0) - x t + log(1 + e^-|x|)
  (the original layer did not normalize; here ``normalization`` is NONE),
  computed in float64 with the accurate form of the native layer;
- gradient: sigma(x) - t per element, now multiplied by the top diff (the
  ``loss_weight``), which the original layer ignored (it gave the same gradient
  for loss_weight 1 and 0.1);
- NaN logits give a NaN loss; the original layer called ``exit()``, killing the
  process (and a notebook's kernel) without a message;
- targets outside [0, 1] and blobs of different counts raise ``ValueError``;
  the original layer silently computed nonsense for the former and needed
  ``numpy`` and ``scipy`` imports it did not have;
- the loss top keeps the original shape (1,), so code reading
  ``net.blobs['loss_opt'].data[0]`` still works.

Options of :class:`caffe_xent.python_layers.SigmoidCrossEntropyLoss` may be
given as JSON in ``param_str`` (for example ``'{"pos_weight": 3}'``); only
the default of ``normalization`` differs (NONE here, BATCH_SIZE there).

This file works as ``caffe_xent.compat.loss_layers`` and, with this folder on
``PYTHONPATH`` (or installed at the top level), as ``loss_layers``. The
one-line move to the native layer, which is faster and runs on the GPU::

    type: 'SigmoidCrossEntropyLoss'  loss_param { normalization: NONE }

(drop ``python_param``; ``loss_weight: 1`` may stay). The native loss top is
a scalar (shape ()), read it as ``float(net.blobs['loss_opt'].data)``.
"""
from __future__ import annotations

from typing import Any, Sequence

from caffe_xent.python_layers import SIGMOID_CROSS_ENTROPY_LOSS_DEFAULTS, SigmoidCrossEntropyLoss

__all__ = ["CustomSigmoidCrossEntropyLossLayer"]


class CustomSigmoidCrossEntropyLossLayer(SigmoidCrossEntropyLoss):
    """The original sigmoid layer with its intended semantics: summed sigmoid cross-entropy,
    gradient (sigma(x) - t) times the top diff. See the module docstring."""

    _type = "CustomSigmoidCrossEntropyLossLayer"
    _defaults = dict(SIGMOID_CROSS_ENTROPY_LOSS_DEFAULTS, normalization="NONE")

    def reshape(self, bottom: Sequence[Any], top: Sequence[Any]) -> None:
        super().reshape(bottom, top)
        top[0].reshape(1)  # the original loss shape, kept for code that indexes it

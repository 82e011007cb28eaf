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
focal_gamma_neg        unset       --          ASL: exponent of negatives, >= 0
                                               (unset: focal_gamma)
focal_margin           0           --          ASL: probability margin, in [0, 1)
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

The package, one module a job: ``_options`` parses and checks the options,
``_sigmoid_cross_entropy_loss`` and ``_multi_label_softmax_loss`` hold the
numpy math of each loss, ``_caffe_layers`` the ``caffe.Layer`` classes. The
numpy math is independent of the test suite's references
(tests/*_reference.py) on purpose: each checks the other and the native layers.
"""
from __future__ import annotations

from ._caffe_layers import MultiLabelSoftmaxLoss, SigmoidCrossEntropyLoss
from ._multi_label_softmax_loss import (MULTI_LABEL_SOFTMAX_LOSS_DEFAULTS, MultiLabelSoftmaxLossOptions,
                                        multi_label_softmax_loss)
from ._sigmoid_cross_entropy_loss import (SIGMOID_CROSS_ENTROPY_LOSS_DEFAULTS,
                                          SigmoidCrossEntropyLossOptions, sigmoid_cross_entropy_loss)

__all__ = ["SigmoidCrossEntropyLoss", "MultiLabelSoftmaxLoss",
           "sigmoid_cross_entropy_loss", "multi_label_softmax_loss",
           "SIGMOID_CROSS_ENTROPY_LOSS_DEFAULTS", "MULTI_LABEL_SOFTMAX_LOSS_DEFAULTS",
           "SigmoidCrossEntropyLossOptions", "MultiLabelSoftmaxLossOptions"]

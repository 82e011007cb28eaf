"""caffe-xent: accurate, fast cross-entropy losses for Caffe.

The custom Caffe build itself is the ``caffe`` package (pycaffe); this package
holds the tools around it:

- :func:`run_layer` runs one layer on numpy arrays (CPU or GPU), for tests and
  experiments, and :func:`time_layer` times its Forward and Backward;
- :func:`gpu_available` tells whether the GPU path can run here, and
  :func:`simd_target` which SIMD path the CPU runs (``CAFFE_XENT_SIMD``
  chooses another);
- :class:`LayerError` is what a layer's refusal of its input becomes;
- :func:`class_weights` and :func:`pos_weight` compute ``class_weight`` and
  ``pos_weight`` values for imbalanced data (log-ratio recipes, inverse
  frequency, effective number of samples, negatives / positives, each with
  a power and a cap where it applies; also as the command
  ``caffe-xent class-weights FILE.h5 --dataset label``);
- :mod:`caffe_xent.python_layers` holds numpy Python layers
  (``type: 'Python'``) with the native layers' loss and gradient, and
  :mod:`caffe_xent.compat.loss_layers` the drop-in replacement for the original
  ``loss_layers.CustomSigmoidCrossEntropyLossLayer``.

The native layers in a prototxt::

    layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "score" bottom: "label"
            top: "loss" sigmoid_cross_entropy_loss_param { pos_weight: 3 } }
    layer { name: "loss" type: "MultiLabelSoftmaxLoss" bottom: "score" bottom: "labels"
            top: "loss" multi_label_softmax_loss_param { label_smoothing: 0.1 } }

and with NetSpec (``from caffe import layers as L``)::

    n.loss = L.SigmoidCrossEntropyLoss(n.score, n.label,
                                       sigmoid_cross_entropy_loss_param=dict(pos_weight=[3]))
    n.loss = L.MultiLabelSoftmaxLoss(n.score, n.labels,
                                     multi_label_softmax_loss_param=dict(label_smoothing=0.1))

Errors of both layers reach pycaffe as ``ValueError`` (from ``caffe.Net(...)``,
``net.forward()``, ``net.backward()``); the interpreter and other nets go on.
"""
from . import _openmp
from ._errors import LayerError

with _openmp.default_while_loading():  # libcaffe's libgomp: a short spin unless chosen (_openmp.py)
    from ._run import gpu_available, run_layer, simd_target, time_layer
from .weights import class_weights, pos_weight

__all__ = ["LayerError", "class_weights", "gpu_available", "pos_weight", "run_layer",
           "simd_target", "time_layer"]
__version__ = "0.1.0"

"""caffe-xent: accurate, fast cross-entropy losses for Caffe.

The custom Caffe build itself is the ``caffe`` package (pycaffe); this package
holds the tools around it:

- :func:`run_layer` runs one layer on numpy arrays (CPU or GPU), for tests and
  experiments;
- :func:`gpu_available` tells whether the GPU path can run here;
- :class:`LayerError` is what a layer's refusal of its input becomes.
"""
from ._errors import LayerError
from ._run import gpu_available, run_layer

__all__ = ["LayerError", "gpu_available", "run_layer"]
__version__ = "0.1.0"

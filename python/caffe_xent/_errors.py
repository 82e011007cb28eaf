"""Exceptions of caffe_xent (kept in a module of their own so the native
harness can import them while the package is still initialising)."""


class LayerError(ValueError):
    """A layer refused its input or parameters, or the device is unavailable.

    The message names the layer and the problem. The Python process and any
    other net are unaffected.
    """

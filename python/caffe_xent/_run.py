"""caffe_xent.run_layer and time_layer: one Caffe layer on numpy arrays, CPU or GPU."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _harness
from ._errors import LayerError

__all__ = ["run_layer", "time_layer", "gpu_available", "simd_target"]

_RUNNERS = {np.dtype(np.float32): _harness.run_layer_float,
            np.dtype(np.float64): _harness.run_layer_double}
_TIMERS = {np.dtype(np.float32): _harness.time_layer_float,
           np.dtype(np.float64): _harness.time_layer_double}

# A Caffe Blob holds at most INT_MAX elements, in at most 32 axes.
_BLOB_MAX_COUNT = 2**31 - 1
_BLOB_MAX_AXES = 32


def _check_blob_shape(name: str, array: np.ndarray) -> None:
    """Refuses a shape no Caffe Blob can hold, before any copy is made."""
    if array.ndim > _BLOB_MAX_AXES:
        raise LayerError("%s has %d axes; a Caffe blob has at most %d"
                         % (name, array.ndim, _BLOB_MAX_AXES))
    count = 1
    for dim in array.shape:
        count *= dim
    if count > _BLOB_MAX_COUNT:
        raise LayerError("%s has shape %s, %d elements; a Caffe blob holds at most "
                         "INT_MAX = %d: split it" % (name, tuple(array.shape), count, _BLOB_MAX_COUNT))


def gpu_available() -> bool:
    """True when this build has CUDA kernels and a CUDA device is visible."""
    return bool(_harness.cuda_build()) and _harness.gpu_count() > 0


def simd_target() -> str:
    """The SIMD target the layers' CPU paths use (Highway's name: AVX3 is
    AVX-512, then AVX2, SSE4, SSSE3, SCALAR).

    The best one the CPU runs, unless the environment variable
    ``CAFFE_XENT_SIMD`` named another before caffe_xent (or caffe) was first
    imported; a name the CPU cannot run is ignored with a line on stderr.
    """
    return _harness.simd_target()


def run_layer(layer: str, bottoms: Sequence[np.ndarray], *, device: str = "cpu",
              top_diffs: Optional[Sequence[np.ndarray]] = None,
              propagate_down: Optional[Sequence[bool]] = None
              ) -> Tuple[List[np.ndarray], List[Optional[np.ndarray]]]:
    """Run one layer: SetUp, Reshape, Forward, then Backward.

    Args:
        layer: one LayerParameter in prototxt text, for example
            ``'type: "SigmoidCrossEntropyLoss" loss_param { normalization: FULL }'``.
        bottoms: numpy arrays; all float32 runs ``Layer<float>``, all float64
            runs ``Layer<double>``.
        device: ``"cpu"`` or ``"gpu"``.
        top_diffs: gradients arriving at the tops. Default: the loss weights
            Caffe itself would use (1.0 in a loss layer's first top), zeros
            elsewhere.
        propagate_down: one bool per bottom. Default: every bottom the layer
            allows gradients into.

    Returns:
        ``(tops, bottom_diffs)``: lists of numpy arrays; ``None`` in
        ``bottom_diffs`` where a bottom was not propagated to.

    Raises:
        LayerError: bad input or parameters (the message names the layer and
            the problem), mixed dtypes, or a GPU requested where none is usable.
    """
    arrays, dtype = _checked(layer, bottoms, device)
    diffs = [np.asarray(d) for d in (top_diffs or [])]
    for i, diff in enumerate(diffs):
        _check_blob_shape("top_diffs[%d]" % i, diff)
    diffs = [np.asarray(d, dtype=dtype) for d in diffs]
    down = [bool(p) for p in propagate_down] if propagate_down is not None else []
    if propagate_down is not None and len(down) != len(arrays):
        raise LayerError("propagate_down has %d entries for %d bottoms" % (len(down), len(arrays)))
    return _RUNNERS[dtype](layer, arrays, device == "gpu", diffs, down)


def time_layer(layer: str, bottoms: Sequence[np.ndarray], *, device: str = "cpu",
               iters: int = 10, repeats: int = 5) -> Dict[str, List[float]]:
    """Time Forward and Backward of one layer on data already on the device.

    SetUp, one untimed Forward and Backward (which moves the bottoms to the
    GPU), then ``repeats`` rounds of ``iters`` Forward calls and ``iters``
    Backward calls, each round ending with a device synchronize. Gradients go
    to every bottom the layer allows, with the default top diffs.

    Returns:
        ``{"forward": [...], "backward": [...]}``: seconds per call, one
        mean per round (take the median or the minimum over rounds).

    Raises:
        LayerError: as :func:`run_layer`.
    """
    arrays, dtype = _checked(layer, bottoms, device)
    return _TIMERS[dtype](layer, arrays, device == "gpu", int(iters), int(repeats))


def _checked(layer: Any, bottoms: Sequence[np.ndarray], device: str
             ) -> Tuple[List[np.ndarray], np.dtype]:
    """The bottoms as arrays of one float dtype, after the checks both entry
    points share; LayerError where they fail."""
    if not isinstance(layer, str):
        raise LayerError("layer must be prototxt text (str), got %s" % type(layer).__name__)
    if device not in ("cpu", "gpu"):
        raise LayerError('device must be "cpu" or "gpu", got %r' % (device,))
    if device == "gpu" and not gpu_available():
        raise LayerError("device='gpu' requested, but " + (
            "this caffe-xent was built without CUDA" if not _harness.cuda_build()
            else "no CUDA device is available"))
    arrays = [np.asarray(b) for b in bottoms]
    if not arrays:
        raise LayerError("a layer needs at least one bottom array")
    for i, array in enumerate(arrays):
        _check_blob_shape("bottom[%d]" % i, array)
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) != 1:
        raise LayerError("bottoms must all be float32 or all float64, got %s"
                         % ", ".join(sorted(str(d) for d in dtypes)))
    dtype = dtypes.pop()
    if dtype not in _RUNNERS:
        raise LayerError("bottoms must be float32 or float64, got %s" % dtype)
    return arrays, dtype

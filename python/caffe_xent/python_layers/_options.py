"""Options of the numpy Python layers: JSON keys checked as the native layers check their proto fields.

:func:`check_options` validates names, types and ranges and fills in the
defaults; :func:`per_class` and :func:`normalizer_for` apply the native layers'
rules for per-class weights and for the normalization modes. Messages name
the layer, as the native layers' do; every refusal is a ``ValueError``.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, NoReturn, Optional

import numpy as np

NORMALIZATIONS = ("FULL", "VALID", "BATCH_SIZE", "NONE")
TARGET_NORMALIZATIONS = ("COUNT", "SUM", "NONE")


def fail(layer: str, message: str) -> NoReturn:
    raise ValueError("%s: %s" % (layer, message))


def float32(value: float) -> float:
    """A real option as the proto stores it (float32)."""
    return float(np.float32(value))


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_options(layer: str, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> Dict[str, Any]:
    """Checks option names, types and ranges; returns the options with defaults filled in."""
    if not isinstance(given, Mapping):
        fail(layer, "options must be a JSON object (dict), got %s" % type(given).__name__)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        fail(layer, "unknown option%s %s; known: %s" % (
            "s" if len(unknown) > 1 else "", ", ".join(map(repr, unknown)),
            ", ".join(sorted(defaults))))
    opts = dict(defaults)
    opts.update(given)
    if given.get("normalization") is None and given.get("normalize") is not None:
        if not isinstance(given["normalize"], bool):
            fail(layer, "normalize = %r must be true or false" % (given["normalize"],))
        opts["normalization"] = "VALID" if given["normalize"] else "BATCH_SIZE"
    if opts["normalization"] is None:
        opts["normalization"] = defaults["normalization"]
    if opts["normalization"] not in NORMALIZATIONS:
        fail(layer, "normalization = %r is invalid; use one of %s"
             % (opts["normalization"], ", ".join(NORMALIZATIONS)))
    if opts["ignore_label"] is not None:
        value = opts["ignore_label"]
        if not is_number(value) or float(value) != int(value):
            fail(layer, "ignore_label = %r must be an integer (as loss_param.ignore_label)" % (value,))
        opts["ignore_label"] = int(value)
    if not isinstance(opts["axis"], (int, np.integer)) or isinstance(opts["axis"], bool):
        fail(layer, "axis = %r must be an integer" % (opts["axis"],))
    for key in ("focal_gamma", "focal_alpha", "label_smoothing", "focal_margin"):
        if key in opts:
            if not is_number(opts[key]):
                fail(layer, "%s = %r must be a number" % (key, opts[key]))
            opts[key] = float32(opts[key])
    for key in ("pos_weight", "class_weight"):
        if key in opts and opts[key] is not None:
            values = opts[key] if isinstance(opts[key], (list, tuple)) else [opts[key]]
            if not all(is_number(v) for v in values):
                fail(layer, "%s = %r must be a number or a list of numbers" % (key, opts[key]))
            array = np.array([float32(v) for v in values], dtype=np.float64)
            bad = np.flatnonzero(~(array >= 0))
            if bad.size:
                fail(layer, "%s[%d] = %g is negative; weights must be >= 0"
                     % (key, bad[0], array[bad[0]]))
            opts[key] = array
    if "focal_gamma" in defaults and not opts["focal_gamma"] >= 0:
        fail(layer, "focal_gamma = %r is invalid; it must be >= 0" % opts["focal_gamma"])
    if "focal_gamma_neg" in defaults and opts["focal_gamma_neg"] is not None:
        if not is_number(opts["focal_gamma_neg"]):
            fail(layer, "focal_gamma_neg = %r must be a number" % (opts["focal_gamma_neg"],))
        opts["focal_gamma_neg"] = float32(opts["focal_gamma_neg"])
        if not 0 <= opts["focal_gamma_neg"] < np.inf:
            fail(layer, "focal_gamma_neg = %r is invalid; it must be finite and >= 0, or unset "
                 "(negatives use focal_gamma)" % opts["focal_gamma_neg"])
    if "focal_margin" in defaults and not 0.0 <= opts["focal_margin"] < 1.0:
        fail(layer, "focal_margin = %r is invalid; it must be in [0, 1)" % opts["focal_margin"])
    if "focal_alpha" in defaults:
        alpha = opts["focal_alpha"]
        if not (alpha == -1.0 or 0.0 <= alpha <= 1.0):
            fail(layer, "focal_alpha = %r is invalid; it must be in [0, 1], or -1 (off)" % alpha)
    if not 0.0 <= opts["label_smoothing"] < 1.0:
        fail(layer, "label_smoothing = %r is invalid; it must be in [0, 1)" % opts["label_smoothing"])
    if "target_normalization" in defaults and opts["target_normalization"] not in TARGET_NORMALIZATIONS:
        fail(layer, "target_normalization = %r is invalid; use one of %s"
             % (opts["target_normalization"], ", ".join(TARGET_NORMALIZATIONS)))
    return opts


def per_class(layer: str, key: str, values: Optional[np.ndarray], classes: int) -> np.ndarray:
    """The native rule: none -> 1 for every class, one value broadcasts, else exactly C."""
    if values is None or values.size == 0:
        return np.ones(classes)
    if values.size == 1:
        return np.full(classes, values[0])
    if values.size != classes:
        fail(layer, "%s has %d values; give none, one (broadcast) or %d (one per class along "
             "the class axis)" % (key, values.size, classes))
    return values


def normalizer_for(mode: str, full: float, valid: float, batch: float) -> float:
    """Upstream's rules, max(1, .) so that an all-ignored batch divides by 1, not 0."""
    value = {"FULL": full, "VALID": valid, "BATCH_SIZE": batch, "NONE": 1.0}[mode]
    return max(1.0, float(value))


def scale(weight: np.ndarray, value: np.ndarray) -> np.ndarray:
    """weight * value with 0 * inf = 0: a zero weight (of a class, an element, a
    target) means the term is absent."""
    weight, value = np.broadcast_arrays(weight, value)
    out = np.zeros(weight.shape)
    np.multiply(weight, value, out=out, where=weight != 0)
    return out

"""The ``caffe-xent`` command.

``caffe-xent class-weights FILE.h5 --dataset label [--recipe RECIPE]
[--power P] [--beta B] [--cap MAX]`` reads a label array from an HDF5 file
(Caffe's HDF5Data format) and prints the lines to paste into a prototxt:

- ``--recipe recall`` (default), ``precision``, ``inv_freq`` or
  ``effective_num``: ``class_weight:`` lines from the per-class counts
  (:func:`caffe_xent.class_weights`; ``--power`` for the last two, ``--beta``
  for ``effective_num``);
- ``--recipe ratio``: ``pos_weight:`` lines, (negatives / positives) ** power
  per class (:func:`caffe_xent.pos_weight`; timm's ``neg_pos``), for
  SigmoidCrossEntropyLoss.

``--cap`` caps every value (after the scaling to mean 1 of ``inv_freq`` and
``effective_num``).

Counting: a label array of shape (N,) or (N, 1) holds class indices (the
labels of SoftmaxWithLoss), counted per class; an array (N, C, ...) holds
multi-label targets with the class axis 1, and a class's count is the sum of
its targets (the number of positives for multi-hot targets). With ``ratio``
the array is always read as targets in [0, 1] ((N,) and (N, 1): one class).
Elements equal to ``--ignore-label`` are not counted.

Exit codes: 0 success; 2 a missing file or dataset, an unreadable file,
labels that cannot be counted, or bad arguments (message on stderr).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

import numpy as np

from .weights import DEFAULT_BETA, RECIPES, class_weights, pos_weight

__all__ = ["main"]

_PROG = "caffe-xent"


class _UsageError(Exception):
    """Bad input: printed as a message, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=_PROG, description="Tools of caffe-xent.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    weights = commands.add_parser(
        "class-weights", help="print class_weight / pos_weight lines for a prototxt",
        description="Read labels from an HDF5 file and print prototxt lines: class_weight "
                    "(recipes recall, precision) or pos_weight (recipe ratio).")
    weights.add_argument("file", metavar="FILE.h5", help="HDF5 file (Caffe's HDF5Data format)")
    weights.add_argument("--dataset", default="label", help="dataset holding the labels (default: label)")
    weights.add_argument("--recipe", choices=RECIPES + ("ratio",), default="recall",
                         help="recall: log(total/count) clipped below at 1; precision: "
                              "log(total/count) / max; inv_freq: (total/count)**power, mean 1; "
                              "effective_num: ((1-beta)/(1-beta**count))**power, mean 1 (Cui et al. "
                              "2019); ratio: pos_weight = (negatives/positives)**power "
                              "(default: recall)")
    weights.add_argument("--power", type=float, default=None,
                         help="exponent of inv_freq, effective_num and ratio (default 1; 0.5 is "
                              "softer)")
    weights.add_argument("--beta", type=float, default=None,
                         help="beta of effective_num, in [0, 1) (default %g)" % DEFAULT_BETA)
    weights.add_argument("--cap", type=float, default=None,
                         help="largest value printed (default: no cap)")
    weights.add_argument("--ignore-label", type=float, default=None,
                         help="label value that is not counted (as loss_param.ignore_label)")
    return parser


def _read_labels(path: str, dataset: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise _UsageError("no such file: %s" % path)
    try:
        import h5py
    except ImportError:
        raise _UsageError("reading HDF5 needs h5py: pip install h5py") from None
    try:
        with h5py.File(path, "r") as handle:
            if dataset not in handle:
                names: List[str] = []
                handle.visititems(lambda name, item: names.append(name)
                                  if isinstance(item, h5py.Dataset) else None)
                raise _UsageError("%s has no dataset %r; datasets: %s"
                                  % (path, dataset, ", ".join(names) or "none"))
            item = handle[dataset]
            if not isinstance(item, h5py.Dataset):
                raise _UsageError("%s: %r is a group, not a dataset" % (path, dataset))
            return np.asarray(item[()], dtype=np.float64)
    except OSError as error:
        raise _UsageError("cannot read %s as HDF5: %s" % (path, error)) from None


def _class_counts(labels: np.ndarray, ignore_label: Optional[float]) -> np.ndarray:
    counted = np.ones(labels.shape, dtype=bool) if ignore_label is None else labels != ignore_label
    if labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1):
        indices = labels.reshape(-1)[counted.reshape(-1)]
        if indices.size == 0:
            raise _UsageError("no labels to count")
        if not np.all((indices >= 0) & (indices == np.round(indices))):
            raise _UsageError("labels of shape %s are read as class indices and must be integers "
                              ">= 0 (use --ignore-label for a marker value)" % (labels.shape,))
        return np.bincount(indices.astype(np.int64)).astype(np.float64)
    if labels.ndim < 2:
        raise _UsageError("labels must be (N,), (N, 1) class indices or (N, C, ...) targets, got "
                          "shape %s" % (labels.shape,))
    values = np.where(counted, labels, 0.0)
    if np.any(values < 0) or np.any(np.isnan(values)):
        raise _UsageError("targets must be >= 0 (use --ignore-label for a marker value)")
    return np.moveaxis(values, 1, -1).reshape(-1, labels.shape[1]).sum(axis=0)


def _format(value: float) -> str:
    return "%.6g" % value


def _class_weights(args: argparse.Namespace) -> int:
    labels = _read_labels(args.file, args.dataset)
    source = "%s:%s, shape %s" % (args.file, args.dataset, "x".join(map(str, labels.shape)))
    settings = [("power", args.power), ("beta", args.beta), ("cap", args.cap)]
    try:
        if args.recipe == "ratio":
            if args.beta is not None:
                raise ValueError("recipe ratio takes no beta (effective_num does)")
            values = pos_weight(labels, ignore_label=args.ignore_label,
                                power=1.0 if args.power is None else args.power, cap=args.cap)
            field = "pos_weight"
        else:
            values = class_weights(_class_counts(labels, args.ignore_label), recipe=args.recipe,
                                   power=args.power, beta=args.beta, cap=args.cap)
            field = "class_weight"
    except ValueError as error:
        raise _UsageError(str(error)) from None
    given = "".join(", %s %s" % (name, _format(value)) for name, value in settings if value is not None)
    print("# %s from %s (recipe %s%s, %d classes), caffe-xent"
          % (field, source, args.recipe, given, values.size))
    for value in values:
        print("%s: %s" % (field, _format(value)))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command; returns the exit code (the console script exits with it)."""
    args = _parser().parse_args(argv)  # argparse itself exits 2 on bad arguments
    try:
        if args.command == "class-weights":
            return _class_weights(args)
    except _UsageError as error:
        print("%s %s: error: %s" % (_PROG, args.command, error), file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse requires a known command


if __name__ == "__main__":
    sys.exit(main())

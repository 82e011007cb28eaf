"""Benchmark of TwoWayLoss, forward + backward, CPU.

Peers at three shapes (ImageNet-like 1000 classes, a 17000-tag vocabulary, a
21-class segmentation map), float32, 0/1 targets with 10 % positives:
  ours   TwoWayLoss in a pycaffe Net (Input bottoms, force_backward)
  torch  timm's formulation (two_way_loss_pytorch.py: masked logsumexp per
         side over each sample's classes and each class's samples, softplus,
         means over the lines with a positive), forward + autograd backward;
         the class axis moved last for the segmentation map (its pixels are
         the samples of the class-wise term, as in the layer)

Prints a markdown table (M elements/s and ratios) to stdout, the section
that bench/run.py puts in docs/benchmarks.md:
  [OMP_NUM_THREADS=k] .venv/bin/python bench/bench_two_way_loss.py [--repeat N] [--shapes 256x1000,...]
OMP_NUM_THREADS, when set, applies to Caffe's OpenMP and to torch.set_num_threads.
Each peer and shape runs in its own fresh interpreter (_hard_target_bench.py).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _hard_target_bench as common  # noqa: E402
from two_way_loss_pytorch import two_way_timm  # noqa: E402

THIS = os.path.abspath(__file__)


def markdown(repeat, shapes=None, timeout=900):
    """The section (see _hard_target_bench.markdown)."""
    return common.markdown(THIS, "timm's formulation", repeat, shapes, timeout)


if __name__ == "__main__":
    common.main(THIS, __doc__, "TwoWayLoss", two_way_timm)

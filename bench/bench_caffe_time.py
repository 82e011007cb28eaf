"""`caffe time` on the loss layers: how Caffe users measure a layer.

    python bench/bench_caffe_time.py [--iterations 20] [--simd-targets AVX3,AVX2]

A net of DummyData layers (logits N(0, 4²); targets uniform in [0, 1], or
hard: 0/1 with 10 % positives from an HDF5Data layer), a
learnable Scale of 1 on the logits (so they need a gradient) and one loss
layer at (1024, 4096), timed by the custom
`caffe time` (the tool beside this interpreter). Its per-layer lines give
the loss layer's own forward and backward time (the data layers are not
counted, nor the Scale layer). ZLPRLoss and TwoWayLoss take hard targets
only (they refuse soft ones). Run once per SIMD target (CAFFE_XENT_SIMD), from the best the CPU
has down to AVX2. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import measured_simd_targets  # noqa: E402

SHAPE = (1024, 4096)
LOSSES = ("SigmoidCrossEntropyLoss", "MultiLabelSoftmaxLoss", "ZLPRLoss", "TwoWayLoss")
HARD_ONLY = ("ZLPRLoss", "TwoWayLoss")  # losses whose targets are 0/1 only


def hard_targets(tmp):
    """An HDF5Data source of 0/1 targets, 10 % positive (caffe time calls every
    layer's Backward, so no layer without one, such as Threshold, may make them)."""
    import h5py
    import numpy as np
    path = os.path.join(tmp, "targets.h5")
    with h5py.File(path, "w") as f:
        f["t"] = (np.random.default_rng(1).random(SHAPE, dtype=np.float32) < 0.1).astype(np.float32)
    with open(os.path.join(tmp, "targets.txt"), "w") as f:
        f.write(path + "\n")
    return os.path.join(tmp, "targets.txt")


def net_text(loss, hard_source):
    dims = " ".join("dim: %d" % d for d in SHAPE)
    if hard_source:
        targets = ('layer { name: "t" type: "HDF5Data" top: "t" hdf5_data_param { source: "%s" '
                   'batch_size: %d } }\n' % (hard_source, SHAPE[0]))
    else:
        targets = ('layer { name: "t" type: "DummyData" top: "t" dummy_data_param { shape { %s } '
                   'data_filler { type: "uniform" min: 0 max: 1 } } }\n' % dims)
    label = "t"
    # A Scale layer with a learnable factor of 1 makes the logits need a
    # gradient; its time is its own line in caffe time's output.
    return ('name: "time_%s"\n'
            'layer { name: "x0" type: "DummyData" top: "x0" dummy_data_param { shape { %s } '
            'data_filler { type: "gaussian" std: 4 } } }\n'
            'layer { name: "x" type: "Scale" bottom: "x0" top: "x" '
            'scale_param { axis: 0 num_axes: 0 filler { type: "constant" value: 1 } } }\n%s'
            'layer { name: "loss" type: "%s" bottom: "x" bottom: "%s" top: "loss" }\n'
            % (loss, dims, targets, loss, label))


def caffe_time(tool, model, iterations, simd):
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0", CAFFE_XENT_SIMD=simd)
    proc = subprocess.run([tool, "time", "-model", model, "-iterations", str(iterations)],
                          capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError("caffe time exited %d: %s" % (proc.returncode, proc.stderr.strip()[-300:]))
    forward = re.search(r"\]\s+loss\s+forward: ([\d.]+) ms", proc.stderr)
    backward = re.search(r"\]\s+loss\s+backward: ([\d.]+) ms", proc.stderr)
    if not (forward and backward):
        raise RuntimeError("no per-layer times for 'loss' in caffe time's output")
    return float(forward.group(1)), float(backward.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--simd-targets", default=None,
                        help="comma-separated (default: the best this CPU runs down to AVX2)")
    args = parser.parse_args()
    import caffe_xent
    targets = (args.simd_targets.split(",") if args.simd_targets
               else measured_simd_targets(caffe_xent._harness.simd_targets()))
    tool = os.path.join(os.path.dirname(sys.executable), "caffe")
    print("`caffe time -iterations %d`, the loss layer's own average forward and backward "
          "per iteration, %d × %d float32 (M el/s = elements ÷ (forward + backward)):"
          % (args.iterations, *SHAPE))
    print()
    print("| layer | targets | SIMD | forward ms | backward ms | M el/s |")
    print("|---|---|---|---:|---:|---:|")
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        source = hard_targets(tmp)
        for loss in LOSSES:
            for hard in (True,) if loss in HARD_ONLY else (True, False):
                model = os.path.join(tmp, "%s_%s.prototxt" % (loss, "hard" if hard else "soft"))
                with open(model, "w") as f:
                    f.write(net_text(loss, source if hard else None))
                for target in targets:
                    label = "0/1, 10 % positive" if hard else "uniform [0, 1]"
                    try:
                        forward, backward = caffe_time(tool, model, args.iterations, target)
                    except (RuntimeError, subprocess.TimeoutExpired) as error:
                        notes.append("- %s, %s, %s: %s" % (loss, label, target, error))
                        continue
                    rate = SHAPE[0] * SHAPE[1] / ((forward + backward) * 1e-3) / 1e6
                    print("| %s | %s | %s | %.2f | %.2f | %.0f |" % (loss, label, target, forward, backward, rate))
    if notes:
        print()
        print("\n".join(notes))


if __name__ == "__main__":
    main()

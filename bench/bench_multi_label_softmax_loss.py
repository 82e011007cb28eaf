"""Benchmark of MultiLabelSoftmaxLoss, forward + backward, CPU.

Peers at three shapes (ImageNet-like 1000 classes, a 17000-tag vocabulary, a
21-class segmentation map), float32:
  ours      MultiLabelSoftmaxLoss in a pycaffe Net (Input bottoms, force_backward)
  torch     torch.nn.functional.cross_entropy with probability targets
            (targets pre-divided by M), forward + autograd backward
  upstream  Caffe's single-label SoftmaxWithLoss in the same Net setup (for scale)
  python_layer  the original Python layer's semantics (per-element loops), 2-D only

Prints a markdown table (M elements/s and ratios) to stdout, the section
that bench/run.py puts in docs/benchmarks.md:
  [OMP_NUM_THREADS=k] .venv/bin/python bench/bench_multi_label_softmax_loss.py [--repeat N]
                                                                  [--shapes 256x1000,...]
OMP_NUM_THREADS, when set, applies to Caffe's OpenMP and to torch.set_num_threads.

Each peer and shape runs in its own fresh interpreter (a worker: this file
with the first argument `worker`, the protocol of _common.py): Caffe's
libgomp and PyTorch's bundled OpenMP runtime in one process each keep
threads spinning, and on a busy 2-core machine that once cut both to ~1 %
of their speed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (best_time, extra_simd_targets, is_worker_call, serve_worker,  # noqa: E402
                     threads_line, throughput_run)
from multi_label_softmax_loss_original_layer import original_layer_forward_backward  # noqa: E402

THIS = os.path.abspath(__file__)

SHAPES = [(256, 1000), (64, 17000), (8, 21, 128, 128)]
PEERS = ("ours", "torch", "upstream", "python_layer")


def make_data(shape):
    """The same data in every worker: the generator is seeded by the shape."""
    rng = np.random.default_rng(list(shape))
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    t = (rng.random(shape) < 0.01).astype(np.float32)
    xm = np.moveaxis(t, 1, -1)
    first = rng.integers(0, xm.shape[-1], size=xm.shape[:-1])
    np.put_along_axis(xm, first[..., None], 1.0, axis=-1)  # a positive in every row
    return x, t


def caffe_net(layer_text, shapes, tmp):
    import caffe
    inputs = "".join("shape { %s }" % " ".join("dim: %d" % d for d in s) for s in shapes)
    net_text = ('force_backward: true\n'
                'layer { name: "in" type: "Input" top: "x" top: "t" input_param { %s } }\n'
                'layer { name: "loss" bottom: "x" bottom: "t" top: "loss" %s }\n'
                % (inputs, layer_text))
    path = os.path.join(tmp, "net_%d.prototxt" % abs(hash(layer_text + inputs)))
    with open(path, "w") as f:
        f.write(net_text)
    return caffe.Net(path, caffe.TRAIN)  # a training step: the phase the loss runs in


def bench_ours(x, t, repeats, tmp):
    net = caffe_net('type: "MultiLabelSoftmaxLoss"', [x.shape, t.shape], tmp)
    net.blobs["x"].data[...] = x
    net.blobs["t"].data[...] = t
    seconds = best_time(lambda: (net.forward(), net.backward()), repeats)
    assert np.any(net.blobs["x"].diff != 0), "backward did not run"
    return seconds


def bench_upstream(x, t, repeats, tmp):
    labels = np.argmax(t, axis=1)[:, None].astype(np.float32)
    net = caffe_net('type: "SoftmaxWithLoss"', [x.shape, labels.shape], tmp)
    net.blobs["x"].data[...] = x
    net.blobs["t"].data[...] = labels
    return best_time(lambda: (net.forward(), net.backward()), repeats)


def bench_torch(x, t, repeats):
    import torch
    tx = torch.from_numpy(x).requires_grad_(True)
    tt = torch.from_numpy(t / t.sum(1, keepdims=True))

    def run():
        tx.grad = None
        torch.nn.functional.cross_entropy(tx, tt).backward()
    return best_time(run, repeats)


def worker_throughput(args):
    """One peer at one shape, in this (fresh) process: seconds per step."""
    peer, repeats = args.peer, args.repeat
    x, t = make_data(tuple(int(v) for v in args.shape.split("x")))
    result = {}
    if peer == "torch":
        import torch
        if "OMP_NUM_THREADS" in os.environ:  # the same thread count as Caffe's
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        result["version"] = torch.__version__
        result["seconds"] = bench_torch(x, t, repeats)
    elif peer == "python_layer":
        result["seconds"] = best_time(lambda: original_layer_forward_backward(x, t), 1)
    else:
        import caffe
        import caffe_xent
        caffe.set_mode_cpu()
        with tempfile.TemporaryDirectory() as tmp:
            bench = bench_ours if peer == "ours" else bench_upstream
            result["seconds"] = bench(x, t, repeats, tmp)
        result["simd_target"] = caffe_xent.simd_target()
    return result


WORKERS = {"throughput": worker_throughput}


def worker_arguments(parser):
    parser.add_argument("--peer", choices=PEERS, default="ours")
    parser.add_argument("--shape", default="x".join(map(str, SHAPES[0])), help="e.g. 256x1000")
    parser.add_argument("--repeat", type=int, default=10)


def shapes_text(shapes=SHAPES):
    return ",".join("x".join(map(str, s)) for s in shapes)


def markdown(repeat, shapes=None, simd_targets=None, timeout=900):
    """The section: a line on threads and load, the table, notes on peers
    that did not run. shapes: "256x1000,..." (default SHAPES); simd_targets:
    the targets to run ours on besides the default, a list (default: every
    one this CPU runs from the best down to AVX2, as an `info` worker
    reports them); timeout: seconds for each worker."""
    notes = []
    if simd_targets is None:
        simd_targets = extra_simd_targets(THIS, notes)
    extra_targets = [t for t in simd_targets if t]
    head = threads_line()
    rows, torch_version, default_target = [], "not installed", "?"
    for text in (shapes or shapes_text()).split(","):
        n = np.prod([int(v) for v in text.split("x")]) / 1e6
        rates = {}
        runs = [(peer, None) for peer in PEERS]
        runs += [("ours", target) for target in extra_targets]
        for peer, target in runs:
            if peer == "python_layer" and len(text.split("x")) != 2:
                continue
            key = peer if target is None else "ours " + target
            result = throughput_run(THIS, peer, text, repeat, target, timeout, notes)
            if result is None:
                rates[key] = float("nan")
                continue
            if peer == "ours" and target is None:
                default_target = result.get("simd_target", "?")
            torch_version = result.get("version", torch_version)
            rates[key] = n / result["seconds"]
        ours = rates["ours"]
        if "python_layer" in rates:
            python_text, python_ratio = "%.1f" % rates["python_layer"], "%.0f×" % (ours / rates["python_layer"])
        else:
            python_text, python_ratio = "n/a (2-D only)", "n/a"
        per_target = "".join(" %.0f | %.2f× |" % (rates["ours " + t], rates["ours " + t] / rates["torch"])
                             for t in extra_targets)
        rows.append("| %s | %.0f | %.0f | %.2f× | %.0f | %.1f× | %s | %s |%s"
                    % (text, ours, rates["torch"], ours / rates["torch"], rates["upstream"],
                       ours / rates["upstream"], python_text, python_ratio, per_target))
    lines = [head, "",
             "| shape | ours (%s) M el/s | PyTorch %s M el/s | ours / PyTorch | upstream SoftmaxWithLoss "
             "M el/s | ours / upstream | original Python layer M el/s | ours / it |%s"
             % (default_target, torch_version,
                "".join(" ours %s M el/s | %s / PyTorch |" % (t, t) for t in extra_targets)),
             "|---|---|---|---|---|---|---|---|" + "---|---|" * len(extra_targets)]
    lines += rows
    if notes:
        lines += [""] + notes
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per figure (best is kept)")
    parser.add_argument("--shapes", default=shapes_text())
    parser.add_argument("--simd-targets", default=None,
                        help="comma-separated SIMD targets to run ours on besides the default "
                             "(default: every one this CPU runs from the best down to AVX2)")
    args = parser.parse_args()
    targets = None if args.simd_targets is None else args.simd_targets.split(",")
    print(markdown(args.repeat, args.shapes, targets))


if __name__ == "__main__":
    if is_worker_call():
        serve_worker(THIS, WORKERS, worker_arguments)
    else:
        main()

"""What the benchmarks of the hard-target losses (bench_zlpr_loss.py,
bench_two_way_loss.py) share: the data, the two peers (ours in a pycaffe
Net, PyTorch's reference formulation with autograd) and the markdown table.

Each script names its layer and its PyTorch function and hands its own
path to :func:`markdown`, whose workers run that script (the protocol of
_common.py: every peer and shape in a fresh interpreter).
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from _common import (best_time, extra_simd_targets, is_worker_call, serve_worker, threads_line,
                     throughput_run)
from bench_multi_label_softmax_loss import caffe_net

SHAPES = [(256, 1000), (64, 17000), (8, 21, 128, 128)]
PEERS = ("ours", "torch")


def make_data(shape):
    """Scores N(0, 3²) and 0/1 targets, 10 % positive; the same data in every
    worker (the generator starts from the shape)."""
    rng = np.random.default_rng(list(shape))
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    t = (rng.random(shape) < 0.1).astype(np.float32)
    return x, t


def bench_ours(layer_type, x, t, repeats, tmp):
    net = caffe_net('type: "%s"' % layer_type, [x.shape, t.shape], tmp)
    net.blobs["x"].data[...] = x
    net.blobs["t"].data[...] = t
    seconds = best_time(lambda: (net.forward(), net.backward()), repeats)
    assert np.any(net.blobs["x"].diff != 0), "backward did not run"
    return seconds


def bench_torch(torch_loss, x, t, repeats):
    """torch_loss((rows, C) logits, (rows, C) targets): the class axis is
    moved last and the rest flattened into rows (a segmentation map's
    pixels are rows)."""
    import torch
    tx = torch.from_numpy(x).requires_grad_(True)
    tt = torch.from_numpy(t).movedim(1, -1).reshape(-1, t.shape[1])

    def run():
        tx.grad = None
        torch_loss(tx.movedim(1, -1).reshape(-1, x.shape[1]), tt).backward()
    return best_time(run, repeats)


def worker_throughput(args, layer_type, torch_loss):
    """One peer at one shape, in this (fresh) process: seconds per step."""
    x, t = make_data(tuple(int(v) for v in args.shape.split("x")))
    result = {}
    if args.peer == "torch":
        import torch
        if "OMP_NUM_THREADS" in os.environ:  # the same thread count as Caffe's
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        result["version"] = torch.__version__
        result["seconds"] = bench_torch(torch_loss, x, t, args.repeat)
    else:
        import caffe
        import caffe_xent
        caffe.set_mode_cpu()
        with tempfile.TemporaryDirectory() as tmp:
            result["seconds"] = bench_ours(layer_type, x, t, args.repeat, tmp)
        result["simd_target"] = caffe_xent.simd_target()
    return result


def worker_arguments(parser):
    parser.add_argument("--peer", choices=PEERS, default="ours")
    parser.add_argument("--shape", default="x".join(map(str, SHAPES[0])), help="e.g. 256x1000")
    parser.add_argument("--repeat", type=int, default=10)


def shapes_text(shapes=SHAPES):
    return ",".join("x".join(map(str, s)) for s in shapes)


def markdown(script, peer_label, repeat, shapes=None, timeout=900, simd_targets=None):
    """The section: a line on threads and load, the table, notes on peers
    that did not run. shapes: "256x1000,..." (default SHAPES); simd_targets:
    the targets to run ours on besides the default, a list (default: every
    one this CPU runs from the best down to AVX2, as an `info` worker
    reports them); timeout: seconds for each worker of `script`."""
    notes = []
    if simd_targets is None:
        simd_targets = extra_simd_targets(script, notes)
    head = threads_line()
    rows, torch_version, target = [], "not installed", "?"
    for text in (shapes or shapes_text()).split(","):
        n = np.prod([int(v) for v in text.split("x")]) / 1e6
        rates = {}
        for peer, simd in [(peer, None) for peer in PEERS] + [("ours", t) for t in simd_targets]:
            key = peer if simd is None else "ours " + simd
            result = throughput_run(script, peer, text, repeat, simd, timeout, notes)
            if result is None:
                rates[key] = float("nan")
                continue
            torch_version = result.get("version", torch_version)
            if simd is None:
                target = result.get("simd_target", target)
            rates[key] = n / result["seconds"]
        per_target = "".join(" %.0f | %.2f× |" % (rates["ours " + t], rates["ours " + t] / rates["torch"])
                             for t in simd_targets)
        rows.append("| %s | %.0f | %.0f | %.2f× |%s"
                    % (text, rates["ours"], rates["torch"], rates["ours"] / rates["torch"], per_target))
    lines = [head, "",
             "| shape | ours (%s) M el/s | PyTorch %s (%s) M el/s | ours / PyTorch |%s"
             % (target, torch_version, peer_label,
                "".join(" ours %s M el/s | %s / PyTorch |" % (t, t) for t in simd_targets)),
             "|---|---|---|---|" + "---|---|" * len(simd_targets)]
    lines += rows
    if notes:
        lines += [""] + notes
    return "\n".join(lines)


def main(script, doc, layer_type, torch_loss, peer_label="timm's formulation"):
    """A benchmark script's entry point: a worker call runs one peer at one
    shape; otherwise the table is printed (--repeat, --shapes)."""
    if is_worker_call():
        serve_worker(script, {"throughput": lambda args: worker_throughput(
            args, layer_type, torch_loss)}, worker_arguments)
        return
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per figure (best is kept)")
    parser.add_argument("--shapes", default=shapes_text())
    args = parser.parse_args()
    print(markdown(script, peer_label, args.repeat, args.shapes))

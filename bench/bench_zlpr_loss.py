"""Benchmark of ZLPRLoss, forward + backward, CPU.

Peers at three shapes (ImageNet-like 1000 classes, a 17000-tag vocabulary, a
21-class segmentation map), float32, 0/1 targets with 10 % positives:
  ours   ZLPRLoss in a pycaffe Net (Input bottoms, force_backward)
  torch  timm's formulation (zlpr_loss_pytorch.py: masked logsumexp with a
         zero column per side, mean over rows), forward + autograd backward;
         the class axis moved last for the segmentation map

Prints a markdown table (M elements/s and ratios) to stdout, the section
that bench/run.py puts in docs/benchmarks.md:
  [OMP_NUM_THREADS=k] .venv/bin/python bench/bench_zlpr_loss.py [--repeat N] [--shapes 256x1000,...]
OMP_NUM_THREADS, when set, applies to Caffe's OpenMP and to torch.set_num_threads.

Each peer and shape runs in its own fresh interpreter (a worker, the
protocol of _common.py), as in bench_multi_label_softmax_loss.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import WorkerError, best_time, failure, is_worker_call, run_worker, serve_worker  # noqa: E402
from bench_multi_label_softmax_loss import caffe_net  # noqa: E402
from zlpr_loss_pytorch import zlpr_timm  # noqa: E402

THIS = os.path.abspath(__file__)

SHAPES = [(256, 1000), (64, 17000), (8, 21, 128, 128)]
PEERS = ("ours", "torch")


def make_data(shape):
    """The same data in every worker: the generator is seeded by the shape."""
    rng = np.random.default_rng(list(shape))
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    t = (rng.random(shape) < 0.1).astype(np.float32)
    return x, t


def bench_ours(x, t, repeats, tmp):
    net = caffe_net('type: "ZLPRLoss"', [x.shape, t.shape], tmp)
    net.blobs["x"].data[...] = x
    net.blobs["t"].data[...] = t
    seconds = best_time(lambda: (net.forward(), net.backward()), repeats)
    assert np.any(net.blobs["x"].diff != 0), "backward did not run"
    return seconds


def bench_torch(x, t, repeats):
    import torch
    tx = torch.from_numpy(x).requires_grad_(True)
    tt = torch.from_numpy(t)

    def run():
        tx.grad = None
        zlpr_timm(tx.movedim(1, -1), tt.movedim(1, -1)).backward()
    return best_time(run, repeats)


def worker_throughput(args):
    """One peer at one shape, in this (fresh) process: seconds per step."""
    x, t = make_data(tuple(int(v) for v in args.shape.split("x")))
    result = {}
    if args.peer == "torch":
        import torch
        if "OMP_NUM_THREADS" in os.environ:  # the same thread count as Caffe's
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        result["version"] = torch.__version__
        result["seconds"] = bench_torch(x, t, args.repeat)
    else:
        import caffe
        import caffe_xent
        caffe.set_mode_cpu()
        with tempfile.TemporaryDirectory() as tmp:
            result["seconds"] = bench_ours(x, t, args.repeat, tmp)
        result["simd_target"] = caffe_xent.simd_target()
    return result


def worker_arguments(parser):
    parser.add_argument("--peer", choices=PEERS, default="ours")
    parser.add_argument("--shape", default="x".join(map(str, SHAPES[0])), help="e.g. 256x1000")
    parser.add_argument("--repeat", type=int, default=10)


def shapes_text(shapes=SHAPES):
    return ",".join("x".join(map(str, s)) for s in shapes)


def markdown(repeat, shapes=None, timeout=900):
    """The section: a line on threads and load, the table, notes on peers
    that did not run. shapes: "256x1000,..." (default SHAPES); timeout:
    seconds for each worker. The layer has no SIMD path: one column of ours."""
    notes = []
    head = ("CPU threads: OMP_NUM_THREADS=%s, os.cpu_count()=%d, load average %s"
            % (os.environ.get("OMP_NUM_THREADS", "unset"), os.cpu_count(),
               " ".join("%.1f" % v for v in os.getloadavg())))
    rows, torch_version = [], "not installed"
    for text in (shapes or shapes_text()).split(","):
        n = np.prod([int(v) for v in text.split("x")]) / 1e6
        rates = {}
        for peer in PEERS:
            try:
                result = run_worker(THIS, "throughput", "--peer", peer, "--shape", text,
                                    "--repeat", repeat, timeout=timeout)
            except WorkerError as error:
                notes.append("- %s at %s: %s" % (peer, text, failure(error)))
                rates[peer] = float("nan")
                continue
            torch_version = result.get("version", torch_version)
            rates[peer] = n / result["seconds"]
        rows.append("| %s | %.0f | %.0f | %.2f× |"
                    % (text, rates["ours"], rates["torch"], rates["ours"] / rates["torch"]))
    lines = [head, "",
             "| shape | ours M el/s | PyTorch %s (timm's formulation) M el/s | ours / PyTorch |"
             % torch_version,
             "|---|---|---|---|"]
    lines += rows
    if notes:
        lines += [""] + notes
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per figure (best is kept)")
    parser.add_argument("--shapes", default=shapes_text())
    args = parser.parse_args()
    print(markdown(args.repeat, args.shapes))


if __name__ == "__main__":
    if is_worker_call():
        serve_worker(THIS, {"throughput": worker_throughput}, worker_arguments)
    else:
        main()

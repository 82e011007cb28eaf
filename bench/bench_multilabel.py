"""Benchmark of MultiLabelSoftmaxLoss, forward + backward, CPU.

Peers at the issue's shapes, float32:
  ours      MultiLabelSoftmaxLoss in a pycaffe Net (Input bottoms, force_backward)
  torch     torch.nn.functional.cross_entropy with probability targets
            (targets pre-divided by M), forward + autograd backward
  upstream  Caffe's single-label SoftmaxWithLoss in the same Net setup (for scale)
  seeds     the seeds' Python layer semantics (per-element loops), 2-D only

Prints a markdown table (M elements/s and ratios) to stdout:
  [OMP_NUM_THREADS=k] .venv/bin/python bench/bench_multilabel.py [--repeats N] [--shapes 256x1000,...]
OMP_NUM_THREADS, when set, applies to Caffe's OpenMP and to torch.set_num_threads.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from multilabel_reference import seed_layer_forward_backward  # noqa: E402

SHAPES = [(256, 1000), (64, 17000), (8, 21, 128, 128)]


def best_time(fn, repeats):
    """Best wall time of `repeats` runs after one warm-up run."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def make_data(shape, rng):
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
    return caffe.Net(path, caffe.TEST)


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in SHAPES))
    args = parser.parse_args()
    import caffe
    caffe.set_mode_cpu()
    print("CPU threads: OMP_NUM_THREADS=%s, os.cpu_count()=%d, load average %s"
          % (os.environ.get("OMP_NUM_THREADS", "unset"), os.cpu_count(),
             " ".join("%.1f" % v for v in os.getloadavg())))
    try:
        import torch
        torch_version = torch.__version__
        if "OMP_NUM_THREADS" in os.environ:  # the same thread count for both
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    except ImportError:
        torch = None
        torch_version = "not installed"
    rng = np.random.default_rng(0)
    print("| shape | ours M el/s | PyTorch %s M el/s | ours / PyTorch | upstream SoftmaxWithLoss "
          "M el/s | ours / upstream | seeds' Python layer M el/s | ours / seeds |" % torch_version)
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for text in args.shapes.split(","):
            shape = tuple(int(v) for v in text.split("x"))
            x, t = make_data(shape, rng)
            n = x.size / 1e6
            ours = n / bench_ours(x, t, args.repeats, tmp)
            peer = n / bench_torch(x, t, args.repeats) if torch else float("nan")
            upstream = n / bench_upstream(x, t, args.repeats, tmp)
            if len(shape) == 2:
                seeds = n / best_time(lambda: seed_layer_forward_backward(x, t), 1)
                seeds_text, seeds_ratio = "%.1f" % seeds, "%.0f×" % (ours / seeds)
            else:
                seeds_text, seeds_ratio = "n/a (2-D only)", "n/a"
            print("| %s | %.0f | %.0f | %.2f× | %.0f | %.1f× | %s | %s |"
                  % (text, ours, peer, ours / peer, upstream, ours / upstream, seeds_text,
                     seeds_ratio))


if __name__ == "__main__":
    main()

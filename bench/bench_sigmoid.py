"""Throughput of SigmoidCrossEntropyLoss forward+backward, float32, CPU.

Ours through pycaffe (caffe.Net with Input layers, so no copies are timed),
PyTorch's binary_cross_entropy_with_logits when torch is installed, and a
numpy layer in the seeds' style. Prints M elements/s (best of --repeat).

    PYTHONPATH=<stage> python bench/bench_sigmoid.py [--sizes 18 22 24]

Not yet here (see issue 3): upstream's pristine layer, the GPU columns, the
mpmath accuracy table and writing docs/benchmarks.md.
"""
import argparse
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Net setup logs (before caffe loads)

NET = """
force_backward: true
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: %d dim: %d } } }
layer { name: "t" type: "Input" top: "t" input_param { shape { dim: %d dim: %d } } }
layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "loss" }
"""


def best(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_ours(x, t, repeat):
    import caffe
    caffe.set_mode_cpu()
    rows, cols = x.shape
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(NET % (rows, cols, rows, cols))
    net = caffe.Net(f.name, caffe.TRAIN)
    os.unlink(f.name)
    net.blobs["x"].data[...] = x
    net.blobs["t"].data[...] = t

    def step():
        net.forward()
        net.backward()
    return best(step, repeat)


def bench_torch(x, t, repeat):
    try:
        import torch
    except ImportError:
        return None
    xt = torch.from_numpy(x).requires_grad_(True)
    tt = torch.from_numpy(t)

    def step():
        xt.grad = None
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt, tt, reduction="sum")
        loss.backward()
    return best(step, repeat)


def bench_numpy(x, t, repeat):
    def step():
        # The seeds' Python layer: stable loss, then sigmoid(x) - t.
        loss = np.sum(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))))
        diff = 1 / (1 + np.exp(-x)) - t
        return loss, diff
    return best(step, repeat)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[18, 22, 24], help="log2 element counts")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("%-10s %12s %12s %12s %10s" % ("elements", "ours M/s", "torch M/s", "numpy M/s", "ours/torch"))
    for log2 in args.sizes:
        n = 1 << log2
        x = (rng.standard_normal(n) * 4).astype(np.float32).reshape(1024, -1)
        t = (rng.uniform(size=n) < 0.1).astype(np.float32).reshape(1024, -1)
        ours = bench_ours(x, t, args.repeat)
        torch_time = bench_torch(x, t, args.repeat)
        numpy_time = bench_numpy(x, t, max(1, args.repeat // 2))
        rate = lambda s: n / s / 1e6 if s else float("nan")  # noqa: E731
        print("%-10s %12.0f %12.0f %12.0f %10.2f" % ("2^%d" % log2, rate(ours), rate(torch_time),
                                                   rate(numpy_time),
                                                   (torch_time / ours) if torch_time else float("nan")))


if __name__ == "__main__":
    main()

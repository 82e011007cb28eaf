"""Benchmark of MultiLabelSoftmaxLoss, forward + backward, CPU.

Peers at the issue's shapes, float32:
  ours      MultiLabelSoftmaxLoss in a pycaffe Net (Input bottoms, force_backward)
  torch     torch.nn.functional.cross_entropy with probability targets
            (targets pre-divided by M), forward + autograd backward
  upstream  Caffe's single-label SoftmaxWithLoss in the same Net setup (for scale)
  python_layer  the original Python layer's semantics (per-element loops), 2-D only

Prints a markdown table (M elements/s and ratios) to stdout:
  [OMP_NUM_THREADS=k] .venv/bin/python bench/bench_multilabel.py [--repeats N] [--shapes 256x1000,...]
OMP_NUM_THREADS, when set, applies to Caffe's OpenMP and to torch.set_num_threads.

Each peer and shape runs in its own fresh interpreter (this file with the
first argument `worker`): Caffe's libgomp and PyTorch's bundled OpenMP
runtime in one process each keep threads spinning, and on a busy 2-core
machine that once cut both to ~1 % of their speed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from multilabel_reference import seed_layer_forward_backward  # noqa: E402
from _common import WorkerError, answer, measured_simd_targets, run_worker  # noqa: E402

THIS = os.path.abspath(__file__)

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


def worker(peer, shape_text, repeats):
    """One peer at one shape, in this (fresh) process: seconds per step."""
    shape = tuple(int(v) for v in shape_text.split("x"))
    x, t = make_data(shape)
    result = {}
    if peer == "torch":
        import torch
        if "OMP_NUM_THREADS" in os.environ:  # the same thread count as Caffe's
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        result["version"] = torch.__version__
        result["seconds"] = bench_torch(x, t, repeats)
    elif peer == "python_layer":
        result["seconds"] = best_time(lambda: seed_layer_forward_backward(x, t), 1)
    else:
        import caffe
        import caffe_xent
        caffe.set_mode_cpu()
        with tempfile.TemporaryDirectory() as tmp:
            bench = bench_ours if peer == "ours" else bench_upstream
            result["seconds"] = bench(x, t, repeats, tmp)
        result["simd_target"] = caffe_xent.simd_target()
    answer(result)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in SHAPES))
    parser.add_argument("--simd-targets", default=None,
                        help="comma-separated SIMD targets to run ours on besides the default "
                             "(default: every one this CPU runs from the best down to AVX2)")
    args = parser.parse_args()
    if args.simd_targets is None:
        import caffe_xent
        args.simd_targets = ",".join(measured_simd_targets(caffe_xent._harness.simd_targets())[1:])
    extra_targets = [t for t in args.simd_targets.split(",") if t]
    print("CPU threads: OMP_NUM_THREADS=%s, os.cpu_count()=%d, load average %s"
          % (os.environ.get("OMP_NUM_THREADS", "unset"), os.cpu_count(),
             " ".join("%.1f" % v for v in os.getloadavg())))
    rows, torch_version, notes, default_target = [], "not installed", [], "?"
    for text in args.shapes.split(","):
        n = np.prod([int(v) for v in text.split("x")]) / 1e6
        rates = {}
        runs = [(peer, None) for peer in ("ours", "torch", "upstream", "python_layer")]
        runs += [("ours", target) for target in extra_targets]
        for peer, target in runs:
            if peer == "python_layer" and len(text.split("x")) != 2:
                continue
            key = peer if target is None else "ours " + target
            try:
                result = run_worker([THIS, "worker", peer, text, str(args.repeats)], simd=target)
            except WorkerError as error:
                lines = str(error).strip().splitlines()
                notes.append("- %s at %s: %s" % (key, text, lines[-1] if lines else "failed"))
                rates[key] = float("nan")
                continue
            if target is not None and result.get("simd_target") != target:
                notes.append("- %s at %s: the worker ran %s" % (key, text, result.get("simd_target")))
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
    print("| shape | ours (%s) M el/s | PyTorch %s M el/s | ours / PyTorch | upstream SoftmaxWithLoss "
          "M el/s | ours / upstream | original Python layer M el/s | ours / it |%s"
          % (default_target, torch_version,
             "".join(" ours %s M el/s | %s / PyTorch |" % (t, t) for t in extra_targets)))
    print("|---|---|---|---|---|---|---|---|" + "---|---|" * len(extra_targets))
    print("\n".join(rows))
    if notes:
        print("\n" + "\n".join(notes))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()

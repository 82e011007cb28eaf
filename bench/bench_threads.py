"""Our OpenMP threads next to OpenBLAS's in a whole net: small and large
nets, four environments, the native sigmoid loss against the Python layer.

    python bench/bench_threads.py [--seconds 0.3] [--rounds 3]

The question (issue 13): a libgomp worker left spinning after one of our
parallel regions (libgomp's own default: GOMP_SPINCOUNT 300000, about
3.5 ms of CPU on the benchmarks' 2-core Xeon) shares the cores with the
next layer's OpenBLAS threads (the Debian pthread build: threads of its
own), and a team of ours then waits for a worker without a core. pycaffe,
caffe_xent and the `caffe` command therefore load libgomp with a short
spin, GOMP_SPINCOUNT=10000, when the user set neither OMP_WAIT_POLICY nor
GOMP_SPINCOUNT (python/caffe_xent/_openmp.py). Each net runs float32
forward + backward (TRAIN, Input bottoms, pycaffe), in a fresh interpreter
per (loss layer, environment), since libgomp reads its environment when it
loads:

  ip 4096      x (64, 512) -> InnerProduct 64 -> loss: 4096 elements, below
               one reduction chunk (16384), so our layer starts no team
  ip 65536     x (64, 512) -> InnerProduct 1024 -> loss: 65536 elements, 4
               chunks: our layer runs a team of every core
  ip 262144    InnerProduct 4096: 16 chunks
  ip 1048576   InnerProduct 16384: 64 chunks (the InnerProduct's GEMMs, a
               32 MB weight, take most of the iteration)
  demo CNN     examples/multilabel_digits/net.prototxt's layers (two 3x3
               convolutions of 32, pooling, InnerProduct 128 and 30) on a
               batch of 64 canvases 24x24, its data layers replaced by
               Input: the loss sees 64 x 30 = 1920 elements

Loss layers: ours (`SigmoidCrossEntropyLoss`) and the Python layer
(`caffe_xent.python_layers.SigmoidCrossEntropyLoss`, numpy). Environments:
  default                OMP_WAIT_POLICY, GOMP_SPINCOUNT and OMP_NUM_THREADS
                         unset: GOMP_SPINCOUNT=10000, by our import
  OMP_WAIT_POLICY=passive  no spin: each region wakes its worker
  GOMP_SPINCOUNT=300000  libgomp's own default (what an unset environment
                         gave before our import chose)
  OMP_NUM_THREADS=1      no team at all; OpenBLAS reads it too (when
                         OPENBLAS_NUM_THREADS is unset): one thread each
Prints a markdown table of the median milliseconds per iteration (blocks
of iterations of about 20 ms, for --seconds per net, after a warm-up), the
median over --rounds runs of every worker, alternating in order. Run by
bench/run.py.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (WorkerError, failure, is_worker_call, run_worker,  # noqa: E402
                     serve_worker, threads_line)

THIS = os.path.abspath(__file__)
BATCH = 64
NETS = ("ip 4096", "ip 65536", "ip 262144", "ip 1048576", "demo CNN")
LOSSES = {
    "native": 'type: "SigmoidCrossEntropyLoss"',
    "Python layer": ('type: "Python" loss_weight: 1 python_param { '
                     'module: "caffe_xent.python_layers" layer: "SigmoidCrossEntropyLoss" '
                     'param_str: "{}" }'),
}
ENVIRONMENTS = {
    "default": {},
    "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
    "GOMP_SPINCOUNT=300000": {"GOMP_SPINCOUNT": "300000"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}
# The demo net's layers between its data and its loss (examples/multilabel_digits/net.prototxt).
DEMO_BODY = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 32 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 32 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc1" type: "InnerProduct" bottom: "pool2" top: "fc1"
  inner_product_param { num_output: 128 weight_filler { type: "msra" } } }
layer { name: "relu3" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "score" type: "InnerProduct" bottom: "fc1" top: "score"
  inner_product_param { num_output: 30 weight_filler { type: "xavier" } } }
"""


def net_text(name, loss):
    """The prototxt of net `name` with the loss layer `loss` (LOSSES' text)."""
    if name == "demo CNN":
        data, outputs = (BATCH, 1, 24, 24), 30
        body = DEMO_BODY
    else:
        data, outputs = (BATCH, 512), int(name.split()[1]) // BATCH
        body = ('layer { name: "score" type: "InnerProduct" bottom: "data" top: "score" '
                'inner_product_param { num_output: %d weight_filler { type: "xavier" } } }\n'
                % outputs)
    shape = lambda dims: "shape { %s }" % " ".join("dim: %d" % d for d in dims)  # noqa: E731
    return ('layer { name: "in" type: "Input" top: "data" top: "label" input_param { %s %s } }\n'
            '%s'
            'layer { name: "loss" bottom: "score" bottom: "label" top: "loss" %s }\n'
            % (shape(data), shape((BATCH, outputs)), body, loss))


def worker_time(args):
    """One loss layer, one environment (this process's): ms per iteration of
    every net, the median of blocks of iterations."""
    import caffe
    caffe.set_mode_cpu()
    rng = np.random.default_rng(0)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in NETS:
            path = os.path.join(tmp, "net.prototxt")
            with open(path, "w") as f:
                f.write(net_text(name, LOSSES[args.loss]))
            net = caffe.Net(path, caffe.TRAIN)
            net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].data.shape)
            net.blobs["label"].data[...] = rng.random(net.blobs["label"].data.shape) < 0.1

            def step():
                net.forward()
                net.backward()
            start = time.perf_counter()
            for _ in range(3):
                step()
            per_block = max(1, int(0.02 / ((time.perf_counter() - start) / 3)))
            blocks, end = [], time.perf_counter() + args.seconds
            while time.perf_counter() < end or len(blocks) < 5:
                start = time.perf_counter()
                for _ in range(per_block):
                    step()
                blocks.append((time.perf_counter() - start) / per_block)
            result[name] = 1e3 * statistics.median(blocks)
            del net
    return {"ms": result}


WORKERS = {"time": worker_time}


def worker_arguments(parser):
    parser.add_argument("--loss", choices=sorted(LOSSES), default="native")
    parser.add_argument("--seconds", type=float, default=0.3)


def markdown(seconds=0.3, timeout=300, rounds=3):
    """The table: ms per iteration for each net, loss layer and environment,
    each environment against the default for that loss layer, native
    against the Python layer in each environment. Every (environment, loss
    layer) worker runs once per round, in the opposite order each round, so
    that a change of the machine's load falls on all of them; a figure is
    the median over the rounds."""
    notes, runs = [], {}
    pairs = [(env_name, loss) for env_name in ENVIRONMENTS for loss in LOSSES]
    for round_index in range(rounds):
        for env_name, loss in pairs if round_index % 2 == 0 else pairs[::-1]:
            # Only the named variables differ from the caller's environment.
            env = {k: v for k, v in os.environ.items()
                   if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
            env.update(ENVIRONMENTS[env_name])
            try:
                result = run_worker(THIS, "time", "--loss", loss, "--seconds", seconds,
                                    timeout=timeout, env=env)["ms"]
            except WorkerError as error:
                notes.append("- %s, %s: %s" % (loss, env_name, failure(error)))
                continue
            for name, value in result.items():
                runs.setdefault((env_name, loss, name), []).append(value)
    ms = {key: statistics.median(values) for key, values in runs.items()}
    lines = [threads_line(), "",
             "| net | environment | native ms | Python layer ms | native / Python (time) |",
             "|---|---|---:|---:|---:|"]
    for name in NETS:
        for env_name in ENVIRONMENTS:
            native = ms.get((env_name, "native", name), float("nan"))
            python = ms.get((env_name, "Python layer", name), float("nan"))
            lines.append("| %s | %s | %.2f | %.2f | %.2f |" % (name, env_name, native, python,
                                                               native / python))
    if notes:
        lines += [""] + notes
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.3,
                        help="timed seconds per net and worker (after a warm-up)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of every worker, alternating; figures are their medians")
    args = parser.parse_args()
    print(markdown(args.seconds, rounds=args.rounds))


if __name__ == "__main__":
    if is_worker_call():
        serve_worker(THIS, WORKERS, worker_arguments)
    else:
        main()

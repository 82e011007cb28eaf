#!/usr/bin/env python3
"""GPU benchmark of the losses: ours, or PyTorch on the same GPU, float32,
one forward + one backward.

    python bench/bench_gpu.py [--json]                    # ours (caffe_xent.time_layer)
    python3 bench/bench_gpu.py --json --peer torch        # PyTorch eager and torch.compile

The GPU bundle runs both (ours on its Python 3.11, PyTorch on the machine's
own python3) and puts them side by side in its report. Each process builds
the same inputs from the same seeds, so both time identical data.

Cases: SigmoidCrossEntropyLoss at 2^20, 2^24 and 2^26 elements as (N, 4096),
logits N(0, 4²), 10 % positive targets; MultiLabelSoftmaxLoss at the same
counts as (N, 1024) and at `make bench`'s shapes (256, 1000), (64, 17000),
(8, 21, 128, 128), 1 to 3 positives per row; ZLPRLoss at 2^24 elements as
(N, 1024) and at the same three shapes, and TwoWayLoss at (256, 1000) and
(16384, 1024), 10 % positive targets; SigmoidCrossEntropyLoss's asymmetric form
(ASL: γ+ 0, γ- 4, margin 0.05; PyTorch: timm's formula written out) at 2^24 as
(N, 4096); the fixed cost of each on a (1, 10)
blob. Each figure is the median of 5 rounds, each round the mean of
enough calls to run well past launch overhead, after a warm-up.

Ours: `caffe_xent.time_layer`, data resident on the GPU, the time a net
waits for (launches and the layer's host synchronizations included).
PyTorch: `binary_cross_entropy_with_logits(x, t, reduction="sum") / N`, and
`-(q · log_softmax(x)).sum() / rows` with q = t / (positives per row), and
timm's ZLPR formulation (a logsumexp per side over masked logits and a zero
column, mean over rows; class axis moved last) and its two-way
formulation (masked logsumexp per side over rows and over columns,
softplus, means over the lines with a positive), each followed by `torch.autograd.grad`, timed with CUDA events; eager, then
`torch.compile` (static shapes) while --deadline-s allows.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

# Each loss by its stem (the name of its layer's source files): its LayerParameter text.
LAYERS = {"sigmoid_cross_entropy_loss": 'type: "SigmoidCrossEntropyLoss"',
          "multi_label_softmax_loss": 'type: "MultiLabelSoftmaxLoss"',
          "zlpr_loss": 'type: "ZLPRLoss"',
          "two_way_loss": 'type: "TwoWayLoss"',
          # Not a stem: SigmoidCrossEntropyLoss's asymmetric form (ASL), the
          # paper's γ+ 0, γ- 4, margin 0.05.
          "asymmetric_loss": 'type: "SigmoidCrossEntropyLoss" sigmoid_cross_entropy_loss_param '
                             '{ focal_gamma: 0 focal_gamma_neg: 4 focal_margin: 0.05 }'}
BYTES_PER_ELEMENT = 20  # forward reads x, t (8 B); backward reads x, t and writes dx (12 B)
REPEATS = 5


def cases(max_log2):
    out = []
    for log2 in (20, 24, 26):
        if log2 <= max_log2:
            out.append(("sigmoid_cross_entropy_loss", (2**log2 // 4096, 4096)))
    for log2 in (20, 24, 26):
        if log2 <= max_log2:
            out.append(("multi_label_softmax_loss", (2**log2 // 1024, 1024)))
    for shape in ((256, 1000), (64, 17000), (8, 21, 128, 128)):
        if np.prod(shape) <= 2**max_log2:
            out.append(("multi_label_softmax_loss", shape))
    for shape in ((2**24 // 1024, 1024), (256, 1000), (64, 17000), (8, 21, 128, 128)):
        if np.prod(shape) <= 2**max_log2:
            out.append(("zlpr_loss", shape))
    for shape in ((256, 1000), (2**24 // 1024, 1024)):
        if np.prod(shape) <= 2**max_log2:
            out.append(("two_way_loss", shape))
    if 24 <= max_log2:
        out.append(("asymmetric_loss", (2**24 // 4096, 4096)))
    return out


def inputs(layer, shape, seed):
    """Logits N(0, 4²) and targets: 10 % positives (sigmoid_cross_entropy_loss,
    zlpr_loss, two_way_loss), or 1 to 3 positives per softmax row along axis 1
    (multi_label_softmax_loss)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape, dtype=np.float32) * 4).astype(np.float32)
    if layer in ("sigmoid_cross_entropy_loss", "zlpr_loss", "two_way_loss", "asymmetric_loss"):
        t = (rng.random(shape, dtype=np.float32) < 0.1).astype(np.float32)
    else:
        classes = shape[1]
        rows_first = (shape[0],) + tuple(shape[2:]) + (classes,)
        t = np.zeros((int(np.prod(rows_first[:-1])), classes), np.float32)
        picks = rng.integers(0, classes, size=(t.shape[0], 3))
        t[np.arange(t.shape[0])[:, None], picks] = 1.0
        t = np.ascontiguousarray(np.moveaxis(t.reshape(rows_first), -1, 1))
    return x, t


ITERS = None  # --iters: a fixed count instead (a quick check of this script)


def iterations(elements):
    if ITERS:
        return ITERS
    return int(max(3, min(500, 2**27 // max(elements, 1))))


def run_ours(args):
    os.environ.setdefault("GLOG_minloglevel", "2")  # before libcaffe starts glog
    import caffe_xent
    device = args.device
    if device == "gpu" and not caffe_xent.gpu_available():
        raise SystemExit("bench_gpu.py: no usable GPU for caffe_xent")
    rows = []
    for index, (layer, shape) in enumerate(cases(args.max_log2)):
        x, t = inputs(layer, shape, index)
        times = caffe_xent.time_layer(LAYERS[layer], [x, t], device=device, iters=iterations(x.size),
                                      repeats=REPEATS)
        rows.append({"layer": layer, "shape": list(shape), "elements": int(x.size),
                     "bytes": BYTES_PER_ELEMENT * int(x.size),
                     "forward_s": statistics.median(times["forward"]),
                     "backward_s": statistics.median(times["backward"])})
        print("ours %-26s %-18s F %9.1f µs  B %9.1f µs" % (layer, shape, rows[-1]["forward_s"] * 1e6,
                                                            rows[-1]["backward_s"] * 1e6), file=sys.stderr)
    fixed = {}
    for layer, text in LAYERS.items():
        x, t = inputs(layer, (1, 10), 99)
        times = caffe_xent.time_layer(text, [x, t], device=device, iters=500, repeats=REPEATS)
        fixed[layer] = 1e6 * (statistics.median(times["forward"]) + statistics.median(times["backward"]))
    return {"device": device, "rows": rows, "fixed_cost_us": fixed}


def run_torch(args):
    import torch
    import torch.nn.functional as F
    deadline = time.monotonic() + args.deadline_s
    gpu = args.device == "gpu"
    if gpu and not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py: torch sees no GPU")
    dev = torch.device("cuda" if gpu else "cpu")

    def sigmoid_cross_entropy_loss(x, t):
        return F.binary_cross_entropy_with_logits(x, t, reduction="sum") / x.shape[0]

    def multi_label_softmax_loss(x, t):
        count = t.sum(dim=1, keepdim=True)
        q = t / count.clamp_min(1)
        rows = (count > 0).sum().clamp_min(1)
        return -(q * F.log_softmax(x, dim=1)).sum() / rows

    def zlpr_loss(x, t):
        # timm's formulation (bench/zlpr_loss_pytorch.py; repeated here: this
        # script runs alone on the GPU machine), the class axis moved last.
        x, positive = x.movedim(1, -1), t.movedim(1, -1) > 0.5
        zero = x.new_zeros(x.shape[:-1] + (1,))
        neg = torch.logsumexp(torch.cat([x.masked_fill(positive, float("-inf")), zero], -1), -1)
        pos = torch.logsumexp(torch.cat([(-x).masked_fill(~positive, float("-inf")), zero], -1), -1)
        return (neg + pos).mean()

    def two_way_loss(x, t, tp=4.0, tn=1.0):
        # timm's formulation (bench/two_way_loss_pytorch.py; repeated here
        # for the same reason), (N, C) logits.
        positive = t > 0.5
        pos_values = (-x / tp).masked_fill(~positive, -1e4)
        neg_values = (x / tn).masked_fill(positive, -1e4)
        total = x.new_zeros(())
        for dim in (1, 0):
            lines = positive.any(dim=dim)
            pair = tn * torch.logsumexp(neg_values, dim=dim) + tp * torch.logsumexp(pos_values, dim=dim)
            total = total + F.softplus(pair)[lines].sum() / lines.sum().clamp(min=1)
        return total

    def asymmetric_loss(x, t, gamma_pos=0.0, gamma_neg=4.0, margin=0.05):
        # timm's AsymmetricLossMultiLabel formula (gradient through the
        # focusing weight), batch-mean as the layer's BATCH_SIZE default.
        p = torch.sigmoid(x)
        p_neg = (1 - p + margin).clamp(max=1)
        log_likelihood = t * torch.log(p.clamp(min=1e-8)) + (1 - t) * torch.log(p_neg.clamp(min=1e-8))
        focusing = torch.pow(1 - (p * t + p_neg * (1 - t)), gamma_pos * t + gamma_neg * (1 - t))
        return -(log_likelihood * focusing).sum() / x.shape[0]

    losses = {"sigmoid_cross_entropy_loss": sigmoid_cross_entropy_loss,
              "asymmetric_loss": asymmetric_loss,
              "multi_label_softmax_loss": multi_label_softmax_loss,
              "zlpr_loss": zlpr_loss,
              "two_way_loss": two_way_loss}

    def timed(fn, x, t, iters):
        def step():
            return torch.autograd.grad(fn(x, t), x)[0]
        step()
        step()  # warm-up (the compiled variant compiles here)
        rounds = []
        for _ in range(REPEATS):
            if gpu:
                torch.cuda.synchronize()
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(iters):
                    step()
                stop.record()
                stop.synchronize()
                rounds.append(start.elapsed_time(stop) * 1e-3 / iters)
            else:
                start = time.perf_counter()
                for _ in range(iters):
                    step()
                rounds.append((time.perf_counter() - start) / iters)
        return statistics.median(rounds)

    rows, data = [], []
    for index, (layer, shape) in enumerate(cases(args.max_log2)):
        x, t = inputs(layer, shape, index)
        data.append((layer, shape, x.size))
        xg = torch.from_numpy(x).to(dev).requires_grad_()
        tg = torch.from_numpy(t).to(dev)
        fn = losses[layer]
        rows.append({"layer": layer, "shape": list(shape), "impl": "eager",
                     "seconds": timed(fn, xg, tg, iterations(x.size))})
        del xg, tg
    # torch.compile last, largest-first priority, while the deadline allows
    # (each shape compiles anew).
    order = sorted(range(len(data)), key=lambda i: (data[i][2] != 2**24, -data[i][2]))
    compiled = {layer: torch.compile(fn) for layer, fn in losses.items()}
    for index in order:
        layer, shape, _ = data[index]
        row = {"layer": layer, "shape": list(shape), "impl": "compiled"}
        if time.monotonic() > deadline:
            row["error"] = "not run: time budget"
        else:
            x, t = inputs(layer, shape, index)
            xg = torch.from_numpy(x).to(dev).requires_grad_()
            tg = torch.from_numpy(t).to(dev)
            try:
                row["seconds"] = timed(compiled[layer], xg, tg, iterations(x.size))
            except Exception as e:  # a compile failure is a figure we report, not a crash
                row["error"] = "%s: %s" % (type(e).__name__, str(e)[:200])
            del xg, tg
        rows.append(row)
    return {"torch": torch.__version__, "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument("--peer", choices=("torch",), help="time PyTorch instead of ours")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu",
                        help="cpu runs the same cases on the CPU (a check of this script)")
    parser.add_argument("--max-log2", type=int, default=26, help="largest case, log2 of elements")
    parser.add_argument("--deadline-s", type=float, default=120.0,
                        help="PyTorch: no new torch.compile case after this many seconds")
    parser.add_argument("--iters", type=int, help="calls per round (default: by size)")
    args = parser.parse_args()
    global ITERS
    ITERS = args.iters
    result = run_torch(args) if args.peer == "torch" else run_ours(args)
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""SigmoidCrossEntropyLoss benchmark: throughput and accuracy, side by side.

Peers:
  ours      our layer, in this environment's `caffe` / `caffe_xent`
  upstream  upstream Caffe's layer, from the pristine build's staged tree
            (scripts/build-pristine.sh), imported in a subprocess with
            PYTHONPATH=<stage>: both builds define the packages `caffe` and
            `caffe_xent`, so they cannot share one process
  PyTorch   torch.nn.functional.binary_cross_entropy_with_logits on the CPU,
            forward + autograd backward, torch.set_num_threads(os.cpu_count()),
            or OMP_NUM_THREADS when that is set (Caffe's OpenMP follows it too)
  numpy     a vectorized numpy layer in the original Python layer's style (throughput only)

Every peer runs in its own fresh interpreter (a worker: this file with the
first argument `worker`, the protocol of _common.py), so OpenMP runtimes and
allocators do not mix.

    python bench/bench_sigmoid_cross_entropy_loss.py [--pristine build/pristine/stage]
                                                     [--sizes 18 22 24] [--repeat 20]
                                                     [--only throughput|accuracy]

prints the markdown sections that bench/run.py puts in docs/benchmarks.md.
Without --pristine the upstream columns say "not run".
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import glob
import itertools
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (WorkerError, best_time, failure, is_worker_call,  # noqa: E402
                     measured_simd_targets, run_worker, serve_worker)

os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Net setup logs (before caffe loads)
THIS = os.path.abspath(__file__)
COLS = 4096  # throughput blobs are (N, 4096)
GPU_BYTES_PER_ELEMENT = 20  # forward reads x, t (8 B); backward reads x, t, writes dx (12 B)
LARGE_SHAPE = (64, 262144)  # the large-blob case: 16M elements summed into one loss
GRID_TARGETS = (0.0, 0.1, 0.5, 0.9, 1.0)
# The listed points are tiny and huge magnitudes worth naming; the log-spaced
# ones (4 a decade) fill the range between them.
GRID_MAGNITUDES = (0.0, 1e-8, 1e-3, 0.5, 1.0, 5.0, 20.0, 40.0, 90.0, 100.0, 700.0, 1e4)


# ---- data ------------------------------------------------------------------

def throughput_data(log2_count, soft=False, ignored=0.0):
    """(N, 4096) float32 logits N(0, 4²) and 10 % positive targets, or soft
    targets uniform in [0, 1] (the case where the gradient's two terms can
    cancel, see docs/sigmoid_cross_entropy_loss.md); `ignored`: that share
    of the targets set to IGNORE_LABEL."""
    rng = np.random.default_rng(log2_count)
    n = 1 << log2_count
    x = (rng.standard_normal(n, dtype=np.float32) * 4).reshape(-1, COLS)
    if soft:
        t = rng.random(n, dtype=np.float32).reshape(-1, COLS)
    else:
        t = (rng.random(n, dtype=np.float32) < 0.1).astype(np.float32).reshape(-1, COLS)
    if ignored:
        t[rng.random(t.shape) < ignored] = IGNORE_LABEL
    return x, t


def element_weights(log2_count):
    """The per-element weights bottom of the weights row: uniform in [0, 2)."""
    rng = np.random.default_rng(log2_count + 1000)
    return (rng.random(1 << log2_count, dtype=np.float32) * 2).reshape(-1, COLS)


def large_data():
    """The large blob: (64, 262144) float32 N(0, 4²) logits, 10 % positives."""
    rng = np.random.default_rng(2026)
    x = (rng.standard_normal(LARGE_SHAPE) * 4).astype(np.float32)
    t = (rng.random(LARGE_SHAPE) < 0.1).astype(np.float32)
    return x, t


def accuracy_grid(dtype):
    """Flat (x, t) arrays: every grid logit with every grid target, in dtype.

    The reference is computed at these rounded values, so the error measured
    is the implementation's, not the rounding of the inputs.
    """
    magnitudes = np.union1d(GRID_MAGNITUDES, np.logspace(-8, 4, 49))
    logits = np.union1d(-magnitudes, magnitudes).astype(dtype)
    x, t = np.meshgrid(logits, np.asarray(GRID_TARGETS, dtype=dtype), indexing="ij")
    return x.ravel().copy(), t.ravel().copy()


# ---- the numpy layer (the original Python layer's style, vectorized) --------

def numpy_forward_backward(x, t):
    """Loss (batch-size normalized, as Caffe's default) and its gradient."""
    batch = x.shape[0]
    e = np.exp(-np.abs(x))  # e^{-|x|} <= 1: never exp of a positive number
    # ℓ = max(x, 0) − x·t + log(1 + e^{−|x|})
    loss = np.sum(np.maximum(x, 0) - x * t + np.log1p(e)) / batch
    # σ(x) = 1/(1+e^{−x}) for x ≥ 0, e^{x}/(1+e^{x}) otherwise; ∂ℓ/∂x = σ(x) − t
    sigmoid = np.where(x >= 0, 1, e) / (1 + e)
    return loss, (sigmoid - t) / batch


# ---- CUDA runtime through ctypes (GPU columns only) --------------------------

def cuda_runtime():
    """libcudart through ctypes, or None: the device copy bandwidth and the
    synchronisation after a timed step need nothing more than this."""
    names = [ctypes.util.find_library("cudart")]
    for pattern in ("/usr/local/cuda/lib64/libcudart.so*",
                    os.path.join(sys.prefix, "lib/python3*/site-packages/nvidia/*/lib/libcudart.so*")):
        names += sorted(glob.glob(pattern))
    for name in filter(None, names):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def copy_bandwidth(repeat):
    """Device-to-device cudaMemcpy of 256 MiB: GB/s counting read + write."""
    cudart = cuda_runtime()
    if cudart is None:
        raise RuntimeError("libcudart not found")
    size = 1 << 28
    src, dst = ctypes.c_void_p(), ctypes.c_void_p()
    for buffer in (src, dst):
        if cudart.cudaMalloc(ctypes.byref(buffer), ctypes.c_size_t(size)) != 0:
            raise RuntimeError("cudaMalloc of %d bytes failed" % size)

    def copy():
        cudart.cudaMemcpy(dst, src, ctypes.c_size_t(size), 3)  # 3: cudaMemcpyDeviceToDevice
        cudart.cudaDeviceSynchronize()
    seconds = best_time(copy, repeat)
    cudart.cudaFree(src)
    cudart.cudaFree(dst)
    return 2 * size / seconds / 1e9


# ---- workers: one peer, one measurement, one fresh process -------------------

INPUT = 'layer { name: "%s" type: "Input" top: "%s" input_param { shape { dim: %d dim: %d } } }\n'
NET = """force_backward: true
%slayer { name: "loss" type: "SigmoidCrossEntropyLoss" %s top: "loss" %s }
"""


def pos_weights(classes):
    """The pos_weight row's per-class weights: 0.5 to 4, one per column."""
    return np.linspace(0.5, 4.0, classes, dtype=np.float32)


def class_weights(classes):
    """The class-weight row's per-class weights: 0.25 to 2, one per column."""
    return np.linspace(0.25, 2.0, classes, dtype=np.float32)


FOCAL_GAMMA, FOCAL_ALPHA = 2.0, 0.25  # the focal row: RetinaNet's values
FRACTIONAL_GAMMA = 0.5  # the fractional focal row: a γ that is not a whole number
# The asymmetric loss row (ASL): the paper's γ+, γ- and probability margin.
ASL_GAMMA_POS, ASL_GAMMA_NEG, ASL_MARGIN = 0.0, 4.0, 0.05
IGNORE_LABEL, IGNORED_SHARE = -1.0, 0.1  # the ignore_label row: 10 % of targets ignored


def caffe_net(shape, normalization=None, pos_weight=None, focal_gamma=None, class_weight=None,
              ignore_label=None, weights=False, asl=False):
    """A pycaffe float Net: Input x and t (and w, the per-element weights
    bottom) of `shape`, the loss layer, force_backward."""
    import caffe
    loss_fields = ["normalization: %s" % normalization] if normalization else []
    if ignore_label is not None:
        loss_fields.append("ignore_label: %d" % ignore_label)
    param = "loss_param { %s }" % " ".join(loss_fields) if loss_fields else ""
    fields = ["pos_weight: %r" % float(v) for v in (() if pos_weight is None else pos_weight)]
    fields += ["class_weight: %r" % float(v) for v in (() if class_weight is None else class_weight)]
    if focal_gamma is not None:
        fields += ["focal_gamma: %r" % focal_gamma, "focal_alpha: %r" % FOCAL_ALPHA]
    if asl:
        fields += ["focal_gamma: %r" % ASL_GAMMA_POS, "focal_gamma_neg: %r" % ASL_GAMMA_NEG,
                   "focal_margin: %r" % ASL_MARGIN]
    if fields:
        param += " sigmoid_cross_entropy_loss_param { %s }" % " ".join(fields)
    names = ["x", "t"] + ["w"] * weights
    inputs = "".join(INPUT % ((name, name) + tuple(shape)) for name in names)
    bottoms = " ".join('bottom: "%s"' % name for name in names)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(NET % (inputs, bottoms, param))
    try:
        return caffe.Net(f.name, caffe.TRAIN)
    finally:
        os.unlink(f.name)


def caffe_step(x, t, device, pos_weight=None, focal_gamma=None, class_weight=None,
               ignore_label=None, w=None, asl=False):
    """One forward+backward of the layer in a pycaffe Net (Input bottoms, so
    no copies are timed); on the GPU it waits for the device to finish."""
    import caffe
    if device == "gpu":
        caffe.set_device(0)
        caffe.set_mode_gpu()
        cudart = cuda_runtime()
        if cudart is None:
            raise RuntimeError("libcudart not found: cannot time the GPU")
    else:
        caffe.set_mode_cpu()
    net = caffe_net(x.shape, pos_weight=pos_weight, focal_gamma=focal_gamma,
                    class_weight=class_weight, ignore_label=ignore_label, weights=w is not None,
                    asl=asl)
    net.blobs["x"].data[...] = x
    net.blobs["t"].data[...] = t
    if w is not None:
        net.blobs["w"].data[...] = w

    def step():
        net.forward()
        net.backward()
        if device == "gpu":
            cudart.cudaDeviceSynchronize()
        return float(net.blobs["loss"].data.reshape(-1)[0])
    return step


def torch_threads():
    """OMP_NUM_THREADS when set (the count Caffe's OpenMP uses too), else every core."""
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count())


def torch_focal_loss(x, t, gamma):
    """torchvision.ops.sigmoid_focal_loss's formula (PyTorch has no fused
    focal loss), summed."""
    import torch
    p = torch.sigmoid(x)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    alpha_t = FOCAL_ALPHA * t + (1 - FOCAL_ALPHA) * (1 - t)
    return (alpha_t * loss).sum()


def torch_asymmetric_loss(x, t):
    """timm's AsymmetricLossMultiLabel formula (timm/loss/asymmetric_loss.py,
    the gradient through the focusing weight), written out in torch ops:
    p_neg = min(1 - p + m, 1), the log-likelihoods clamped at 1e-8, times
    (1 - p_t)^(γ+·t + γ-·(1-t)) with p_t = p·t + p_neg·(1-t), summed."""
    import torch
    p = torch.sigmoid(x)
    p_neg = (1 - p + ASL_MARGIN).clamp(max=1)
    log_likelihood = (t * torch.log(p.clamp(min=1e-8))
                      + (1 - t) * torch.log(p_neg.clamp(min=1e-8)))
    p_t = p * t + p_neg * (1 - t)
    focusing = torch.pow(1 - p_t, ASL_GAMMA_POS * t + ASL_GAMMA_NEG * (1 - t))
    return -(log_likelihood * focusing).sum()


def torch_step(x, t, pos_weight=None, focal_gamma=None, class_weight=None, ignore_label=None,
               w=None, asl=False):
    """PyTorch's forward + backward, each option built the natural way:
    pos_weight= and weight= (class weights, broadcast over rows) of
    binary_cross_entropy_with_logits, the ignore label as a mask multiply,
    the per-element weights as a weight multiply."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(torch_threads())
    tx = torch.from_numpy(x).requires_grad_(True)
    tt = torch.from_numpy(t)
    pw = None if pos_weight is None else torch.from_numpy(pos_weight)
    cw = None if class_weight is None else torch.from_numpy(class_weight)
    tw = None if w is None else torch.from_numpy(w)
    mask = None if ignore_label is None else (tt != ignore_label).to(tt.dtype)
    batch = x.shape[0]

    def step():
        tx.grad = None
        if asl:
            loss = torch_asymmetric_loss(tx, tt) / batch
        elif focal_gamma is not None:
            loss = torch_focal_loss(tx, tt, focal_gamma) / batch
        elif mask is not None:
            loss = (F.binary_cross_entropy_with_logits(tx, tt, reduction="none") * mask).sum() / batch
        elif tw is not None:
            loss = (F.binary_cross_entropy_with_logits(tx, tt, reduction="none") * tw).sum() / batch
        else:
            loss = F.binary_cross_entropy_with_logits(tx, tt, reduction="sum", pos_weight=pw,
                                                      weight=cw) / batch
        loss.backward()
        return loss
    return step


def worker_throughput(args):
    seconds, losses = {}, {}
    ignore_label = IGNORE_LABEL if args.ignore else None
    for log2 in args.sizes:
        x, t = throughput_data(log2, args.targets == "soft", IGNORED_SHARE if args.ignore else 0.0)
        pw = pos_weights(COLS) if args.pos_weight else None
        cw = class_weights(COLS) if args.class_weight else None
        w = element_weights(log2) if args.weights else None
        if args.impl == "caffe":
            step = caffe_step(x, t, args.device, pw, args.focal_gamma, cw, ignore_label, w, args.asl)
        elif args.impl == "torch":
            step = torch_step(x, t, pw, args.focal_gamma, cw, ignore_label, w, args.asl)
        elif pw is not None or args.focal_gamma is not None or cw is not None or w is not None \
                or args.ignore or args.asl:
            raise ValueError("the numpy layer has only the plain loss")
        else:
            step = lambda: numpy_forward_backward(x, t)[0]  # noqa: E731
        seconds[str(log2)] = best_time(step, args.repeat)
        losses[str(log2)] = float(step())  # outside the timing: proves every peer did the work
        del step
    result = {"seconds": seconds, "loss": losses}
    if args.impl == "caffe":
        import caffe_xent  # a pristine stage built before the SIMD switch has no simd_target
        result["simd_target"] = getattr(caffe_xent._harness, "simd_target", lambda: None)()
    if args.impl == "torch":
        import torch
        result["version"] = torch.__version__
        result["threads"] = torch.get_num_threads()
    return result


def worker_copy_bandwidth(args):
    return {"gb_per_s": copy_bandwidth(args.repeat)}


def layer_text(tops=1, normalization="NONE"):
    return ('name: "xent" type: "SigmoidCrossEntropyLoss"' + ' top: "loss"'
            + ' top: "element_loss"' * (tops == 2)
            + " loss_param { normalization: %s }" % normalization)


def worker_accuracy(args):
    """Per-element loss and gradient at every grid point, float32 and float64.

    caffe, mode single: one element at a time (the layer's scalar path):
    float32 through a pycaffe Net of a (1, 1) blob, float64 through
    caffe_xent.run_layer, since pycaffe only builds float Nets.
    caffe, mode blob: the whole grid as one blob through run_layer, the
    per-element losses from a second top (ours only: upstream has no such
    top), so the SIMD lanes run.
    A dtype that cannot be run gets {"error": message} instead.
    """
    result = {}
    for dtype in (np.float32, np.float64):
        x, t = accuracy_grid(dtype)
        try:
            losses, grads = accuracy_run(args, x, t)
        except Exception as error:  # reported in the table's notes
            result[np.dtype(dtype).name] = {"error": "%s: %s" % (type(error).__name__, error)}
            continue
        result[np.dtype(dtype).name] = {"loss": [float(v) for v in losses],
                                        "grad": [float(v) for v in grads]}
    return result


def accuracy_run(args, x, t):
    if args.impl == "torch":
        import torch
        tx = torch.from_numpy(x).requires_grad_(True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            tx, torch.from_numpy(t), reduction="none")
        loss.sum().backward()
        return loss.detach().numpy(), tx.grad.numpy()
    import caffe_xent
    if args.mode == "blob":
        tops, diffs = caffe_xent.run_layer(layer_text(tops=2), [x[None], t[None]],
                                           propagate_down=[True, False])
        return tops[1][0], diffs[0][0]
    losses, grads = np.empty_like(x), np.empty_like(x)
    if x.dtype == np.float32:
        import caffe
        caffe.set_mode_cpu()
        net = caffe_net((1, 1), normalization="NONE")
        for i in range(x.size):
            net.blobs["x"].data[...] = x[i]
            net.blobs["t"].data[...] = t[i]
            net.forward()
            net.backward()
            losses[i] = net.blobs["loss"].data.reshape(-1)[0]
            grads[i] = net.blobs["x"].diff.reshape(-1)[0]
        return losses, grads
    for i in range(x.size):
        tops, diffs = caffe_xent.run_layer(layer_text(), [x[i:i + 1, None], t[i:i + 1, None]],
                                           propagate_down=[True, False])
        losses[i], grads[i] = tops[0].reshape(-1)[0], diffs[0].reshape(-1)[0]
    return losses, grads


def worker_large(args):
    """The large blob's loss in float32, batch-size normalized (pycaffe Net)."""
    x, t = large_data()
    if args.impl == "torch":
        import torch
        torch.set_num_threads(torch_threads())
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            torch.from_numpy(x), torch.from_numpy(t), reduction="sum") / x.shape[0]
        return {"loss": float(loss)}
    import caffe
    caffe.set_mode_cpu()
    net = caffe_net(x.shape, normalization="BATCH_SIZE")
    net.blobs["x"].data[...] = x
    net.blobs["t"].data[...] = t
    net.forward()
    return {"loss": float(net.blobs["loss"].data.reshape(-1)[0])}


WORKERS = {"throughput": worker_throughput, "accuracy": worker_accuracy,
           "large": worker_large, "copy-bandwidth": worker_copy_bandwidth,
           "copy-cpu": lambda args: worker_copy_cpu(args)}


def worker_arguments(parser):
    parser.add_argument("--impl", choices=("caffe", "torch", "numpy"), default="caffe")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--mode", choices=("single", "blob"), default="single")
    parser.add_argument("--sizes", type=int, nargs="+", default=[18])
    parser.add_argument("--targets", choices=("hard", "soft"), default="hard")
    parser.add_argument("--pos-weight", action="store_true", help="per-class pos_weight (ours, PyTorch)")
    parser.add_argument("--focal-gamma", type=float, default=None,
                        help="the focal term with this γ and α 0.25 (ours, PyTorch)")
    parser.add_argument("--class-weight", action="store_true", help="per-class class_weight (ours, PyTorch)")
    parser.add_argument("--ignore", action="store_true",
                        help="10 %% of targets set to ignore_label -1 (ours, PyTorch)")
    parser.add_argument("--weights", action="store_true",
                        help="the per-element weights bottom, uniform in [0, 2) (ours, PyTorch)")
    parser.add_argument("--asl", action="store_true",
                        help="the asymmetric loss, γ+ 0, γ- 4, margin 0.05 (ours, PyTorch)")
    parser.add_argument("--repeat", type=int, default=3)


# ---- orchestration: run the workers, write markdown -------------------------

class Peers:
    """Runs workers for ours (this environment) and upstream (the stage)."""

    def __init__(self, pristine):
        self.pristine = pristine
        self.info = {"ours": self._info(None)}
        if pristine and not glob.glob(os.path.join(pristine, "caffe_xent", "_harness*.so")):
            self.info["upstream"] = WorkerError(
                "not run: %s holds no built pristine harness (caffe_xent/_harness*.so); "
                "scripts/build-pristine.sh stages it" % pristine)
        elif pristine:
            self.info["upstream"] = self._info(pristine)
            if isinstance(self.info["upstream"], dict):
                stage = os.path.realpath(pristine)
                where = os.path.realpath(self.info["upstream"]["caffe"])
                if not where.startswith(stage + os.sep):
                    self.info["upstream"] = WorkerError(
                        "PYTHONPATH=%s still imports caffe from %s" % (pristine, where))
        else:
            self.info["upstream"] = WorkerError("not run: no --pristine stage given")

    @staticmethod
    def _info(pythonpath):
        try:
            return run_worker(THIS, "info", pythonpath=pythonpath, timeout=120)
        except WorkerError as error:
            return error

    def run(self, peer, *args, timeout=1800, simd=None):
        """A worker's answer, or the WorkerError that explains its absence."""
        if isinstance(self.info.get(peer), WorkerError):
            return self.info[peer]
        pythonpath = self.pristine if peer == "upstream" else None
        try:
            return run_worker(THIS, *args, pythonpath=pythonpath, timeout=timeout, simd=simd)
        except WorkerError as error:
            return error

    def simd_targets(self):
        """The SIMD targets to measure ours on (the best down to AVX2)."""
        ours = self.info["ours"]
        return [] if isinstance(ours, WorkerError) else measured_simd_targets(ours.get("simd_targets", []))


SOFT_LOG2 = 22  # the option rows: 4M elements
# The rows at 2^SOFT_LOG2 besides the plain loss: label, worker options, and
# whether upstream's layer and the numpy layer run it too (soft targets only:
# they have none of the options).
OPTION_ROWS = (
    ("soft targets", ("--targets", "soft"), True),
    ("pos_weight", ("--pos-weight",), False),
    ("class weights", ("--class-weight",), False),
    ("ignore_label", ("--ignore",), False),
    ("weights bottom", ("--weights",), False),
    ("focal", ("--focal-gamma", FOCAL_GAMMA), False),
    ("focal γ %g" % FRACTIONAL_GAMMA, ("--focal-gamma", FRACTIONAL_GAMMA), False),
    ("ASL γ+ %g, γ- %g, m %g" % (ASL_GAMMA_POS, ASL_GAMMA_NEG, ASL_MARGIN), ("--asl",), False),
)
# The least the CPU layer moves per element in forward + backward: x and t
# read and dx written once (float32 in a TRAIN net takes the gradient in the
# forward pass, docs/sigmoid_cross_entropy_loss.md).
BYTES_PER_ELEMENT = 12
BANDWIDTH_LOG2 = 24  # the size whose share of the copy bound the table gives


def worker_copy_cpu(args):
    """The machine's copy bound for the layer's traffic at 2^log2 elements:
    numpy copies BYTES_PER_ELEMENT / 2 bytes per element (read + write =
    BYTES_PER_ELEMENT), in as many threads as the layer runs (numpy drops
    the GIL while it copies), each a contiguous slice. GB/s, best of repeat,
    twice: arrays in 4 KiB pages, as the layer's blobs (Caffe mallocs them),
    and arrays with numpy's default advice of huge pages for arrays this
    large, which copied 10-20 % faster on the machine of
    docs/benchmarks.md while huge pages left the layer's speed unchanged.
    The table gives ours' share of both."""
    from concurrent.futures import ThreadPoolExecutor
    core = getattr(np, "_core", None) or np.core
    threads = torch_threads()
    size = (1 << args.sizes[0]) * BYTES_PER_ELEMENT // 2
    bounds = [size * i // threads // 64 * 64 for i in range(threads)] + [size]
    slices = [slice(a, b) for a, b in zip(bounds, bounds[1:])]
    rates = {}
    for key, huge in (("huge_gb_per_s", True), ("gb_per_s", False)):
        core.multiarray._set_madvise_hugepage(huge)
        src = np.ones(size, dtype=np.uint8)
        dst = np.zeros(size, dtype=np.uint8)
        with ThreadPoolExecutor(threads) as pool:
            def copy():
                list(pool.map(lambda s: np.copyto(dst[s], src[s]), slices))
            seconds = best_time(copy, args.repeat)
        rates[key] = 2 * size / seconds / 1e9
        del src, dst
    return dict(rates, threads=threads)


def throughput_markdown(peers, sizes, repeat):
    def run_all(*args, everyone=True):
        runs = {"ours": peers.run("ours", "throughput", "--impl", "caffe", *args),
                "PyTorch": peers.run("ours", "throughput", "--impl", "torch", *args)}
        if everyone:
            runs["upstream"] = peers.run("upstream", "throughput", "--impl", "caffe", *args)
            runs["numpy"] = peers.run("ours", "throughput", "--impl", "numpy", *args)
        return runs
    runs = run_all("--sizes", *sizes, "--repeat", repeat)
    option_runs = [(label, run_all("--sizes", SOFT_LOG2, "--repeat", repeat, *extra,
                                   everyone=everyone))
                   for label, extra, everyone in OPTION_ROWS]
    copy = peers.run("ours", "copy-cpu", "--sizes", BANDWIDTH_LOG2, "--repeat", repeat) \
        if BANDWIDTH_LOG2 in sizes else None

    def rate(peer, log2, table=runs):
        run = table.get(peer, WorkerError("not run for this row"))
        return float("nan") if isinstance(run, WorkerError) else (1 << log2) / run["seconds"][str(log2)] / 1e6

    torch_note = ""
    if not isinstance(runs["PyTorch"], WorkerError):
        torch_note = " %s, %d threads" % (runs["PyTorch"]["version"], runs["PyTorch"]["threads"])
    lines = ["### Throughput, CPU, float32, forward + backward",
             "",
             "Best of %d timed runs after one warm-up; (N, %d) blobs, logits N(0, 4²), 10 %% "
             "positive targets; soft targets: uniform in [0, 1]; pos_weight: one per class "
             "(column), 0.5 to 4; class weights: one per class, 0.25 to 2 (PyTorch: `weight=` "
             "broadcast over rows); ignore_label: %g on %d %% of the targets (PyTorch: the "
             "per-element loss times a mask); weights bottom: a third bottom of per-element "
             "weights uniform in [0, 2) (PyTorch: the per-element loss times the weights); "
             "focal: γ %g (and %g), α %g, PyTorch composing "
             "torchvision.ops.sigmoid_focal_loss's formula (it has no fused focal loss); "
             "ASL: the asymmetric loss, γ+ %g, γ- %g, margin %g, PyTorch composing timm's "
             "AsymmetricLossMultiLabel formula. "
             "Upstream's layer and the numpy layer run only the plain loss and soft targets. "
             "M el/s = million elements per second; a ratio is ours ÷ the peer (above 1: ours "
             "is faster)." % (repeat, COLS, IGNORE_LABEL, 100 * IGNORED_SHARE, FOCAL_GAMMA,
                              FRACTIONAL_GAMMA, FOCAL_ALPHA, ASL_GAMMA_POS, ASL_GAMMA_NEG,
                              ASL_MARGIN),
             "",
             "| elements | ours M el/s | upstream M el/s | ours / upstream | PyTorch%s M el/s | "
             "ours / PyTorch | numpy M el/s | ours / numpy |" % torch_note,
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, log2, table in ([("2^%d (%d × %d)" % (log2, (1 << log2) // COLS, COLS), log2, runs)
                                for log2 in sizes]
                               + [("2^%d, %s" % (SOFT_LOG2, label), SOFT_LOG2, table)
                                  for label, table in option_runs]):
        ours = rate("ours", log2, table)
        cells = [label, fmt_rate(ours)]
        for peer in ("upstream", "PyTorch", "numpy"):
            if peer not in table:
                cells += ["n/a", "n/a"]
                continue
            other = rate(peer, log2, table)
            cells += [fmt_rate(other), fmt_ratio(ours / other)]
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["- %s%s: %s" % (peer, "" if table is runs else " (%s)" % label, failure(run))
             for label, table in [("", runs)] + option_runs
             for peer, run in table.items() if isinstance(run, WorkerError)]
    lines += [""] + notes if notes else []
    lines += [""] + simd_markdown(peers, sizes, repeat, runs, option_runs, copy)
    lines += [""] + option_sizes_markdown(peers, [n for n in sizes if n != SOFT_LOG2], repeat)
    lines += ["", " ".join([loss_check(runs, sizes)] + [loss_check(table, [SOFT_LOG2], label)
                                                       for label, table in option_runs]),
              "", gpu_markdown(peers, sizes, repeat)]
    return "\n".join(lines)


def simd_markdown(peers, sizes, repeat, runs, option_runs, copy):
    """Ours again on each SIMD target from the best down to AVX2, against the
    PyTorch runs of the table above (one machine, one run: the AVX2 path an
    AVX2-only CPU takes, measured beside the AVX-512 one), and at
    2^BANDWIDTH_LOG2 ours' traffic as a share of the copy bound."""
    targets = peers.simd_targets()
    if not targets:
        return ["Per SIMD target: not run (ours did not report its targets)."]
    cases = [("2^%d" % log2, log2, (), runs) for log2 in sizes] + [
        ("2^%d, %s" % (SOFT_LOG2, label), SOFT_LOG2, extra, table)
        for (label, extra, _), (_, table) in zip(OPTION_ROWS, option_runs)]
    copy_gbs = float("nan") if copy is None or isinstance(copy, WorkerError) else copy["gb_per_s"]
    lines = ["### Throughput per SIMD target, CPU, float32, forward + backward", "",
             "Ours with `CAFFE_XENT_SIMD` set to each target this CPU runs, from the best down "
             "to AVX2 (the worker reports the target it ran); PyTorch from the table above; "
             "M el/s and ours ÷ PyTorch.", "",
             "| case | " + " | ".join("ours %s M el/s | %s / PyTorch" % (t, t) for t in targets) + " |",
             "|---|" + "---:|---:|" * len(targets)]
    rates, notes = {}, []
    for target in targets:
        for label, log2, extra, _ in cases:
            run = peers.run("ours", "throughput", "--impl", "caffe", "--sizes", log2, "--repeat", repeat,
                            *extra, simd=target)
            if isinstance(run, WorkerError):
                notes.append("- %s, %s: %s" % (target, label, failure(run)))
            elif run.get("simd_target") != target:
                notes.append("- %s, %s: the worker ran %s" % (target, label, run.get("simd_target")))
            else:
                rates[(target, label)] = (1 << log2) / run["seconds"][str(log2)] / 1e6
    for label, log2, _, table in cases:
        torch_run = table["PyTorch"]
        torch_rate = float("nan") if isinstance(torch_run, WorkerError) else \
            (1 << log2) / torch_run["seconds"][str(log2)] / 1e6
        cells = [label]
        for target in targets:
            ours = rates.get((target, label), float("nan"))
            cells += [fmt_rate(ours), fmt_ratio(ours / torch_rate)]
        lines.append("| " + " | ".join(cells) + " |")
    if copy is not None:
        label = "2^%d" % BANDWIDTH_LOG2
        if isinstance(copy, WorkerError):
            notes.append("- copy bound: %s" % failure(copy))
        huge_gbs = copy.get("huge_gb_per_s", float("nan")) if isinstance(copy, dict) \
            else float("nan")

        def share(target):
            gbs = rates.get((target, label), float("nan")) * BYTES_PER_ELEMENT / 1e3
            return "%s %s GB/s, %s %% (%s %% of the huge-page copy)" % (
                target, fmt_rate(gbs), fmt_rate(100 * gbs / copy_gbs),
                fmt_rate(100 * gbs / huge_gbs))
        lines += ["", "Bandwidth at %s: the layer moves at least %d bytes per element (x and t "
                  "read, dx written: the forward pass takes the gradient too). The bound is a "
                  "numpy copy of %d bytes per element (read + write = %d), split over %s "
                  "threads, its arrays in 4 KiB pages as the layer's blobs, in this run: %s "
                  "GB/s (the same copy in numpy's default huge pages, which the layer's blobs "
                  "do not get: %s GB/s). Ours' share of it: %s." % (
                      label, BYTES_PER_ELEMENT, BYTES_PER_ELEMENT // 2, BYTES_PER_ELEMENT,
                      copy.get("threads", "?") if isinstance(copy, dict) else "?",
                      fmt_rate(copy_gbs), fmt_rate(huge_gbs),
                      "; ".join(share(target) for target in targets))]
    return lines + ([""] + notes if notes else [])


def option_sizes_markdown(peers, sizes, repeat):
    """The option rows (OPTION_ROWS) at the other sizes of the run (2^18 and
    2^24 by default): ours on each SIMD target from the best down to AVX2
    beside PyTorch, each worker timing every size in one process."""
    targets = peers.simd_targets()
    if not sizes or not targets:
        return ["Option rows at other sizes: not run (%s)." % (
            "no other size was asked for" if not sizes else "ours did not report its targets")]
    lines = ["### The option rows at %s, per SIMD target" % " and ".join("2^%d" % n for n in sizes),
             "",
             "As the option rows above (the same blobs, options and peers), at the run's other "
             "sizes: PyTorch once, ours with `CAFFE_XENT_SIMD` set to each target; M el/s and "
             "ours ÷ PyTorch.", "",
             "| case | PyTorch M el/s | " + " | ".join("ours %s M el/s | %s / PyTorch" % (t, t)
                                                     for t in targets) + " |",
             "|---|---:|" + "---:|---:|" * len(targets)]
    notes = []

    def rates(run, what):
        if isinstance(run, WorkerError):
            notes.append("- %s: %s" % (what, failure(run)))
            return {}
        return {n: (1 << n) / run["seconds"][str(n)] / 1e6 for n in sizes}
    size_args = ["--sizes"] + sizes + ["--repeat", repeat]
    for label, extra, _ in OPTION_ROWS:
        torch_rates = rates(peers.run("ours", "throughput", "--impl", "torch", *size_args, *extra),
                            "PyTorch, %s" % label)
        ours = {}
        for target in targets:
            run = peers.run("ours", "throughput", "--impl", "caffe", *size_args, *extra, simd=target)
            if not isinstance(run, WorkerError) and run.get("simd_target") != target:
                notes.append("- %s, %s: the worker ran %s" % (target, label, run.get("simd_target")))
                continue
            ours[target] = rates(run, "%s, %s" % (target, label))
        for n in sizes:
            torch_rate = torch_rates.get(n, float("nan"))
            cells = ["2^%d, %s" % (n, label), fmt_rate(torch_rate)]
            for target in targets:
                rate = ours.get(target, {}).get(n, float("nan"))
                cells += [fmt_rate(rate), fmt_ratio(rate / torch_rate)]
            lines.append("| " + " | ".join(cells) + " |")
    return lines + ([""] + notes if notes else [])


def loss_check(runs, sizes, label=None):
    """One sentence: how far each peer's loss on the timed blobs is from ours."""
    ours = runs["ours"]
    if isinstance(ours, WorkerError):
        return "Loss check%s: not possible without ours." % (" (%s)" % label if label else "")
    spreads = []
    for peer, run in runs.items():
        if peer != "ours" and not isinstance(run, WorkerError):
            spread = max(abs(run["loss"][str(n)] - ours["loss"][str(n)]) / abs(ours["loss"][str(n)])
                         for n in sizes)
            spreads.append("%s %.1g" % (peer, spread))
    if label:
        return "%s: %s." % (label, ", ".join(spreads) or "no peer ran")
    return ("Loss check (each peer's loss on the timed blobs vs ours, largest relative "
            "difference): %s." % (", ".join(spreads) or "no peer ran"))


def gpu_markdown(peers, sizes, repeat):
    ours_info = peers.info["ours"]
    if isinstance(ours_info, WorkerError) or not ours_info["gpu"]:
        return "GPU: not present"
    sizes_args = ["--sizes"] + sizes + ["--repeat", repeat]
    ours = peers.run("ours", "throughput", "--impl", "caffe", "--device", "gpu", *sizes_args)
    upstream_info = peers.info["upstream"]
    if isinstance(upstream_info, WorkerError) or not upstream_info["gpu"]:
        upstream = WorkerError("not run: the pristine build has no usable GPU (it is built CPU-only)")
    else:
        upstream = peers.run("upstream", "throughput", "--impl", "caffe", "--device", "gpu",
                             *sizes_args)
    copy = peers.run("ours", "copy-bandwidth", "--repeat", max(repeat, 5))
    copy_gbs = float("nan") if isinstance(copy, WorkerError) else copy["gb_per_s"]
    lines = ["### Throughput, GPU, float32, forward + backward",
             "",
             "GB/s counts the %d bytes per element a forward + backward must move (x and t read "
             "in forward; x and t read and dx written in backward), so it is comparable with the "
             "device-to-device copy bandwidth, %s GB/s here (cudaMemcpy of 256 MiB, read + "
             "write counted). Times include pycaffe's per-call overhead, as on the CPU."
             % (GPU_BYTES_PER_ELEMENT, fmt_rate(copy_gbs)),
             "",
             "| elements | ours M el/s | ours GB/s | ours % of copy | upstream M el/s | "
             "upstream GB/s | ours / upstream |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for log2 in sizes:
        n = 1 << log2
        ours_rate = float("nan") if isinstance(ours, WorkerError) else n / ours["seconds"][str(log2)]
        up_rate = float("nan") if isinstance(upstream, WorkerError) else n / upstream["seconds"][str(log2)]
        ours_gbs, up_gbs = (r * GPU_BYTES_PER_ELEMENT / 1e9 for r in (ours_rate, up_rate))
        lines.append("| 2^%d | %s | %s | %s %% | %s | %s | %s |" % (
            log2, fmt_rate(ours_rate / 1e6), fmt_rate(ours_gbs), fmt_rate(100 * ours_gbs / copy_gbs),
            fmt_rate(up_rate / 1e6), fmt_rate(up_gbs), fmt_ratio(ours_rate / up_rate)))
    notes = ["- %s: %s" % (name, failure(run)) for name, run in
             (("ours", ours), ("upstream", upstream), ("copy bandwidth", copy))
             if isinstance(run, WorkerError)]
    return "\n".join(lines + ([""] + notes if notes else []))


def fmt_rate(value):
    return "—" if math.isnan(value) else "%.0f" % value if value >= 10 else "%.1f" % value


def fmt_ratio(value):
    return "—" if math.isnan(value) else "%.2f×" % value if value < 10 else "%.0f×" % value


def mp_reference(x, t):
    """(loss, gradient) of one element in mpmath at 50 digits.

    ℓ = max(x,0) − x·t + log1p(e^{−|x|}): with 50 digits (≈166 bits) x·t of
    two doubles and the difference are exact, and both terms are ≥ 0.
    ∂ℓ/∂x = σ(x) − t, written as (1 − t) − σ(−x) for x ≥ 0: 1/(1+e^{−x}) − 1
    at x = 178 would round σ to 1 at any fixed precision and return 0 for
    the true −e^{−178}.
    """
    import mpmath
    mx, mt = mpmath.mpf(x), mpmath.mpf(t)
    loss = max(mx, 0) - mx * mt + mpmath.log1p(mpmath.exp(-abs(mx)))
    e = mpmath.exp(-abs(mx))  # σ(−|x|) = e^{−|x|} / (1 + e^{−|x|})
    grad = (1 - mt) - e / (1 + e) if mx >= 0 else e / (1 + e) - mt
    return loss, grad


def relative_errors(got, reference, floor):
    """|got − ref| / max(|ref|, floor) per element; inf where got is NaN or inf."""
    import mpmath
    errors = []
    for value, ref in zip(got, reference):
        if not math.isfinite(value):
            errors.append(float("inf"))
        else:
            errors.append(float(abs(mpmath.mpf(value) - ref) / max(abs(ref), floor)))
    return errors


def accuracy_markdown(peers):
    import mpmath
    mpmath.mp.dps = 50
    runs = {
        "ours, whole grid as one blob (SIMD path)": peers.run("ours", "accuracy", "--mode", "blob"),
        "ours, one element per call": peers.run("ours", "accuracy", "--mode", "single"),
        "upstream, one element per call": peers.run("upstream", "accuracy", "--mode", "single"),
        "PyTorch": peers.run("ours", "accuracy", "--impl", "torch"),
    }
    x32, _ = accuracy_grid(np.float32)
    lines = ["### Accuracy against mpmath (50 digits), per element",
             "",
             "Grid: %d logits, ± {%s} and 4 log-spaced points a decade from 1e-8 to 1e4, times "
             "targets {%s}: %d points per dtype. Inputs are rounded to the dtype first and the "
             "reference is computed at the rounded values. Error = |got − ref| / max(|ref|, "
             "floor), floor = the dtype's smallest normal number (%.3g for float32, %.3g for "
             "float64): below it the format itself cannot hold a relative precision. Normalization "
             "NONE, so each figure is one element's loss or ∂ℓ/∂x. One element per call: float32 "
             "through a pycaffe Net of a (1, 1) blob, float64 through caffe_xent.run_layer; one "
             "blob: the whole grid through run_layer, per-element losses from ours' second top."
             % (x32.size // len(GRID_TARGETS), ", ".join("%g" % v for v in GRID_MAGNITUDES),
                ", ".join("%g" % v for v in GRID_TARGETS), x32.size,
                np.finfo(np.float32).tiny, np.finfo(np.float64).tiny),
             "",
             "| implementation | dtype | largest rel. error, loss | at (x, t) | "
             "largest rel. error, gradient | at (x, t) |",
             "|---|---|---:|---|---:|---|"]
    notes = []
    for dtype in (np.float32, np.float64):
        x, t = accuracy_grid(dtype)
        references = [mp_reference(float(a), float(b)) for a, b in zip(x, t)]
        floor = mpmath.mpf(float(np.finfo(dtype).tiny))
        for name, run in runs.items():
            if isinstance(run, WorkerError):
                if dtype == np.float32:
                    notes.append("- %s: %s" % (name, failure(run)))
                continue
            got = run[np.dtype(dtype).name]
            if "error" in got:
                why = ""
                if "unknown layer type" in got["error"] and name.startswith("upstream"):
                    why = (" (float64 needs caffe_xent.run_layer, since pycaffe builds only float "
                           "Nets, and the pristine build's run_layer does not see upstream's layer "
                           "registry)")
                notes.append("- %s, %s: not measured: %s%s" % (name, np.dtype(dtype).name,
                                                               got["error"], why))
                continue
            cells = [name, np.dtype(dtype).name]
            for key, index in (("loss", 0), ("grad", 1)):
                errors = relative_errors(got[key], [r[index] for r in references], floor)
                worst = int(np.argmax(errors))
                cells += [fmt_error(errors[worst]), "(%.3g, %.3g)" % (x[worst], t[worst])]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + notes if notes else []
    lines += ["", large_blob_markdown(peers)]
    return "\n".join(lines)


def fmt_error(value):
    return "NaN/inf" if not math.isfinite(value) else "0" if value == 0 else "%.2g" % value


def large_blob_markdown(peers):
    x, t = large_data()
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    per_element = np.maximum(x64, 0) - x64 * t64 + np.log1p(np.exp(-np.abs(x64)))
    # exact sum, fed a row at a time so no 16M-element Python list is built
    truth = math.fsum(itertools.chain.from_iterable(row.tolist() for row in per_element)) / x.shape[0]
    del per_element, x64, t64
    runs = {"ours": peers.run("ours", "large"), "upstream": peers.run("upstream", "large"),
            "PyTorch": peers.run("ours", "large", "--impl", "torch")}
    lines = ["### Loss of a large float32 blob",
             "",
             "A (%d, %d) float32 blob (%d elements), logits N(0, 4²), 10 %% "
             "positives, normalization BATCH_SIZE (upstream's default). Truth: float64 "
             "per-element losses summed exactly (math.fsum): %.6f."
             % (LARGE_SHAPE + (x.size, truth)),
             "",
             "| implementation | loss | relative error |",
             "|---|---:|---:|"]
    for name, run in runs.items():
        if isinstance(run, WorkerError):
            lines.append("| %s | — | %s |" % (name, failure(run)))
        else:
            lines.append("| %s | %.6f | %.2g |" % (name, run["loss"], abs(run["loss"] - truth) / truth))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pristine", help="the pristine build's staged tree (build/pristine/stage)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[18, 22, 24], help="log2 element counts")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per measurement (best is kept)")
    parser.add_argument("--only", choices=("throughput", "accuracy"))
    args = parser.parse_args()
    peers = Peers(args.pristine)
    if args.only != "accuracy":
        print(throughput_markdown(peers, args.sizes, args.repeat) + "\n")
    if args.only != "throughput":
        print(accuracy_markdown(peers))


if __name__ == "__main__":
    if is_worker_call():
        serve_worker(THIS, WORKERS, worker_arguments)
    else:
        main()

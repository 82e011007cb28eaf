#!/usr/bin/env python3
"""Train one small CNN on a hard multi-label digits task with every loss this build has.

    .venv/bin/python examples/multilabel_digits/run_demo.py [--gpu] [--out results]

Steps: compose the data (digits_data.py: 30 long-tailed classes, up to 6
labels per image, 30 % of the training positives missing) into OUT/data;
write one net per loss of loss_table.py (the template net.prototxt with that
loss layer) and train each with the custom `caffe train` command, a progress
bar following its log (a loss whose layer this build lacks is reported and
skipped); time the native sigmoid loss against the Python-layer one on the
same net; evaluate every snapshot on the test set with pycaffe; print a table
side by side and write OUT/metrics.json and OUT/training.png. See README.md
beside this file.
"""
import argparse
import importlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import digits_data  # noqa: E402  (beside this file)
import loss_table  # noqa: E402
import metrics  # noqa: E402
from loss_table import BY_NAME, LOSSES, PYTHON_SIGMOID  # noqa: E402

PYTHON_LAYER_MODULE = "caffe_xent.python_layers"
TEST_BATCH = 100  # the TEST-phase batch size in the net prototxt

# glog lines of Solver::Step: "Iteration 40 (23.9 iter/s, 0.834s/20 iters), loss = 4.06"
# and, after the last step, "Iteration 200, loss = 1.15"
# (at iteration 0 the rate is uninitialised, "-4.1e+16 iter/s" say: not used)
TRAIN_LINE = re.compile(r"Iteration (\d+)(?: \((\S+) iter/s[^)]*\))?, loss = (\S+)")
TEST_LINE = re.compile(r"Test net output #\d+: (\w+) = (\S+)")
TESTING_LINE = re.compile(r"Iteration (\d+), Testing net")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results", help="output directory (default: results)")
    parser.add_argument("--iters", type=int, default=None,
                        help="training iterations per loss (default: max_iter of solver.prototxt)")
    parser.add_argument("--speed-iters", type=int, default=80,
                        help="iterations of each run of the native vs Python-layer timing (default: 80)")
    parser.add_argument("--speed-rounds", type=int, default=3,
                        help="runs of each in the native vs Python-layer timing, alternating "
                             "which goes first; the median is reported (default: 3)")
    parser.add_argument("--gpu", action="store_true",
                        help="train and evaluate on GPU 0 when one is present (else a note, and the CPU)")
    parser.add_argument("--losses", default=",".join(loss.name for loss in LOSSES),
                        help="comma-separated entries of loss_table.py to train "
                             "(default: all: %(default)s)")
    parser.add_argument("--missing-fraction", type=float, default=digits_data.MISSING_FRACTION,
                        help="fraction of the training positives dropped from the labels "
                             f"(default: {digits_data.MISSING_FRACTION})")
    parser.add_argument("--train-size", type=int, default=6000, help="training canvases (default: 6000)")
    parser.add_argument("--test-size", type=int, default=1000, help="test canvases (default: 1000)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the data and of the solver (default: 1)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="train every loss with this many seeds (SEED, SEED+1, ...: new data, "
                             "weights and batch order each) and report the mean and the range "
                             "of each metric (default: 1)")
    args = parser.parse_args(argv)
    for name in ("iters", "speed_iters", "speed_rounds", "train_size", "test_size", "seeds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    args.losses = [name.strip() for name in args.losses.split(",") if name.strip()]
    unknown = [name for name in args.losses if name not in BY_NAME]
    if unknown or not args.losses:
        parser.error(f"--losses: unknown {', '.join(unknown) or 'empty list'}; "
                     f"the entries are {', '.join(BY_NAME)}")
    if not 0 <= args.missing_fraction < 1:
        parser.error("--missing-fraction must be in [0, 1)")
    return args


def fail(message, code=2):
    print(f"run_demo.py: error: {message}", file=sys.stderr)
    sys.exit(code)


def import_requirements():
    """caffe (pycaffe), its protobuf messages and the demo's packages; exit 2 if any is missing."""
    # pycaffe logs every net it builds (the demo loads one per snapshot) and,
    # in a CUDA build on a machine without a GPU, an error line about cuBLAS
    # that does not concern CPU mode: only FATAL lines here. Set before
    # caffe's glog starts; the caffe tool gets its own environment.
    os.environ.setdefault("GLOG_minloglevel", "3")
    try:
        caffe = importlib.import_module("caffe")
        caffe_pb2 = importlib.import_module("caffe.proto.caffe_pb2")
    except ImportError as error:
        fail(f"caffe is not importable by {sys.executable} ({error}).\n"
             "Build the custom Caffe first: `make build`, then run the demo with "
             ".venv/bin/python, or simply `make demo`.")
    for module, why in (("h5py", "to write the HDF5Data files"),
                        ("sklearn", "for the bundled digits"),
                        ("matplotlib", "for the plot")):
        try:
            importlib.import_module(module)
        except ImportError as error:
            fail(f"{module} is needed {why} and is not importable ({error}); `make build` installs it.")
    tool = os.path.join(os.path.dirname(sys.executable), "caffe")
    if not os.access(tool, os.X_OK):
        fail(f"the caffe command is not at {tool}: run the demo with the Python of the "
             "environment that `make build` set up (.venv/bin/python).")
    return caffe, caffe_pb2, tool


class ProgressBar:
    """One line on stderr, redrawn in place: a bar over iterations and the current loss.

    Where stderr is not a terminal (a log file, a test) it prints a line at
    every tenth of the run instead of redrawing.
    """

    def __init__(self, label, total, width=28):
        self.label, self.total, self.width = label, total, width
        self.interactive = sys.stderr.isatty()
        self.start = time.monotonic()
        self.next_tenth = 1

    def update(self, iteration, loss):
        fraction = min(1.0, iteration / self.total)
        elapsed = time.monotonic() - self.start
        filled = int(round(fraction * self.width))
        line = (f"{self.label:<14} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{iteration:>5}/{self.total} loss {loss:8.4f}  {elapsed:5.1f}s")
        if self.interactive:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
        elif fraction * 10 >= self.next_tenth or iteration >= self.total:
            self.next_tenth = int(fraction * 10) + 1
            print(line, file=sys.stderr, flush=True)

    def close(self):
        if self.interactive:
            sys.stderr.write("\n")
            sys.stderr.flush()


def write_solver(caffe_pb2, out, name, net, iters, snapshot, test_interval, test_iter, seed, gpu):
    """OUT/solver_NAME.prototxt: solver.prototxt with this run's fields set."""
    from google.protobuf import text_format
    solver = caffe_pb2.SolverParameter()
    with open(os.path.join(HERE, "solver.prototxt")) as f:
        text_format.Merge(f.read(), solver)
    solver.net = os.path.abspath(net)
    solver.max_iter = iters
    solver.snapshot = snapshot
    solver.snapshot_after_train = snapshot > 0
    solver.snapshot_prefix = os.path.join("snapshots", name)
    solver.test_interval = test_interval
    del solver.test_iter[:]
    solver.test_iter.append(test_iter)
    solver.display = min(solver.display, max(1, iters // 5))
    solver.random_seed = seed
    solver.solver_mode = caffe_pb2.SolverParameter.GPU if gpu else caffe_pb2.SolverParameter.CPU
    path = os.path.join(out, f"solver_{name}.prototxt")
    with open(path, "w") as f:
        f.write(text_format.MessageToString(solver))
    return path


def train(tool, out, name, solver_path, iters, gpu, label):
    """Run `caffe train` in OUT, following its log; returns the parsed run.

    The full log is kept in OUT/logs/NAME.log. A failed run exits the demo
    with the end of that log, unless it is the optional Python-layer run,
    whose caller decides (returns None there).
    """
    command = [tool, "train", f"--solver={os.path.abspath(solver_path)}"]
    if gpu:
        command.append("--gpu=0")
    # the tool logs to stderr only (no glog files in /tmp), every INFO line
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    log_path = os.path.join(out, "logs", f"{name}.log")
    run = {"iteration": [], "loss": [], "rate": [], "test_iteration": [], "test_loss": []}
    bar = ProgressBar(label, iters)
    testing_at = None
    start = time.monotonic()
    with open(log_path, "w") as log, subprocess.Popen(
            command, cwd=out, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, errors="replace") as process:
        try:
            for line in process.stderr:
                log.write(line)
                match = TRAIN_LINE.search(line)
                if match:
                    iteration, loss = int(match.group(1)), float(match.group(3))
                    run["iteration"].append(iteration)
                    run["loss"].append(loss)
                    if match.group(2) and iteration > 0:  # at 0 Caffe prints an uninitialised rate
                        run["rate"].append(float(match.group(2)))
                    bar.update(iteration, loss)
                    continue
                match = TESTING_LINE.search(line)
                if match:
                    testing_at = int(match.group(1))
                    continue
                match = TEST_LINE.search(line)
                if match and match.group(1) == "loss" and testing_at is not None:
                    run["test_iteration"].append(testing_at)
                    run["test_loss"].append(float(match.group(2)))
        except KeyboardInterrupt:
            process.terminate()
            raise
        finally:
            bar.close()
    run["seconds"] = time.monotonic() - start
    run["log"] = log_path
    if process.returncode != 0:
        with open(log_path) as f:
            tail = "".join(f.readlines()[-15:])
        return {"failed": f"`caffe train` exited with {process.returncode}; end of {log_path}:\n{tail}"}
    # Caffe's own rate per display window; the median leaves out the windows
    # that also held a test pass or a snapshot
    run["iters_per_s"] = statistics.median(run["rate"]) if run["rate"] else iters / run["seconds"]
    return run


def deploy_net(caffe_pb2, net, batch):
    """The train/test NetParameter with its data layers replaced by one Input and its loss removed."""
    from google.protobuf import text_format
    deploy = caffe_pb2.NetParameter(name=net.name)
    data = deploy.layer.add(name="data", type="Input", top=["data"])
    data.input_param.shape.add(dim=[batch, 1, digits_data.SIDE, digits_data.SIDE])
    for layer in net.layer:
        if layer.type == "HDF5Data" or "label" in layer.bottom:
            continue
        deploy.layer.add().CopyFrom(layer)
    return text_format.MessageToString(deploy)


def evaluate_snapshots(caffe, caffe_pb2, out, loss, test, tail):
    """Test metrics of every snapshot of the run of `loss`, in iteration order."""
    data, labels = test
    deploy_path = os.path.join(out, f"deploy_{loss.name}.prototxt")
    with open(deploy_path, "w") as f:
        f.write(deploy_net(caffe_pb2, loss_table.net_for(caffe_pb2, loss), len(data)))
    snapshot_dir = os.path.join(out, "snapshots")
    pattern = re.compile(rf"^{loss.name}_iter_(\d+)\.caffemodel$")
    found = sorted((int(m.group(1)), m.group(0))
                   for m in map(pattern.match, os.listdir(snapshot_dir)) if m)
    curve = []
    for iteration, filename in found:
        model = caffe.Net(deploy_path, caffe.TEST, weights=os.path.join(snapshot_dir, filename))
        model.blobs["data"].data[...] = data
        score = model.forward()["score"]
        curve.append((iteration, metrics.evaluate(loss_table.class_scores(score, loss.scores),
                                                  labels, tail)))
    return curve


def python_layer_unavailable():
    """Why the Python-layer variant cannot run here, or None when it can."""
    try:
        module = importlib.import_module(PYTHON_LAYER_MODULE)
    except ImportError as error:
        return f"{PYTHON_LAYER_MODULE} is not importable in this build ({error})"
    if not hasattr(module, "SigmoidCrossEntropyLoss"):
        return f"{PYTHON_LAYER_MODULE} has no SigmoidCrossEntropyLoss"
    return None


def plot(out, results, skipped, chance):
    """OUT/training.png: the curves and the final metrics of every loss, side by side."""
    try:
        import matplotlib
    except ImportError as error:
        raise RuntimeError(f"the plot needs matplotlib, which is not importable ({error}): "
                           "install the project's `demo` extra (`make build` does)") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    colors = {loss.name: plt.get_cmap("tab10")(i) for i, loss in enumerate(LOSSES)}
    seeds = len(next(iter(results.values())).get("final_per_seed", [None]))
    first_seed = " (first seed)" if seeds > 1 else ""
    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    (loss_axes, map_axes), (bar_axes, time_axes) = axes
    for name, result in results.items():
        curve, color = result["curve"], colors[name]
        first = curve["train_loss"][0]
        loss_axes.plot(curve["train_iteration"], np.asarray(curve["train_loss"]) / first,
                       color=color, label=f"{name}: train")
        if curve["test_loss"]:
            loss_axes.plot(curve["test_iteration"], np.asarray(curve["test_loss"]) / first, "o--",
                           color=color, markersize=3, label=f"{name}: test")
        map_axes.plot(curve["snapshot_iteration"], curve["test_mAP"], "o-", color=color,
                      markersize=3, label=name)
    map_axes.axhline(chance, color="gray", linestyle=":", label=f"chance ({chance:.2f})")
    loss_axes.set(xlabel="iteration", yscale="log",
                  ylabel="loss / its first train value (each loss on its own scale)",
                  title="Loss" + first_seed)
    map_axes.set(xlabel="iteration", ylabel="test mAP per class (macro)", ylim=(0, 1),
                 title="Test mAP per snapshot" + first_seed)

    keys = [("mAP", "mAP\nper class"), ("tail_mAP", "mAP, rarest\nhalf of classes"),
            ("sample_mAP", "mAP\nper sample"), ("F1", "F1 at best\nthreshold"), ("P@M", "P@M")]
    width = 0.8 / max(1, len(results))
    for i, (name, result) in enumerate(results.items()):
        values = [result["final"][key] for key, _ in keys]
        positions = np.arange(len(keys)) + (i - (len(results) - 1) / 2) * width
        spread = {}
        if seeds > 1:  # the mean, and an error bar from the lowest seed to the highest
            spread = {"capsize": 2, "error_kw": {"linewidth": 0.8},
                      "yerr": np.array([[value - result["final_range"][key][0],
                                         result["final_range"][key][1] - value]
                                        for value, (key, _) in zip(values, keys)]).T}
        bars = bar_axes.bar(positions, values, width, color=colors[name], label=name, **spread)
        bar_axes.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
    bar_axes.set_xticks(np.arange(len(keys)), [text for _, text in keys], fontsize=8)
    lowest = min(result["final"][key] for result in results.values() for key, _ in keys)
    bar_axes.set(ylim=(max(0.0, lowest - 0.1), 1.02),
                 title="Test metrics at the last iteration" +
                 (f" (mean of {seeds} seeds, lowest-highest)" if seeds > 1 else ""))

    names = list(results)
    time_axes.barh(names, [results[n]["train_seconds"] for n in names],
                   color=[colors[n] for n in names])
    time_axes.invert_yaxis()
    time_axes.set(xlabel="seconds (caffe train, test passes and snapshots included" +
                  (f"; summed over {seeds} seeds)" if seeds > 1 else ")"),
                  title="Training time")
    if skipped:
        time_axes.text(0.98, 0.02, "not in this build: " + ", ".join(skipped),
                       transform=time_axes.transAxes, ha="right", va="bottom", fontsize=8)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    for ax in (loss_axes, map_axes, bar_axes):
        ax.legend(fontsize=7, loc="lower right" if ax is not loss_axes else "upper right")
    figure.tight_layout()
    path = os.path.join(out, "training.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def print_table(results, skipped, speed, chance, test_size, seeds):
    rows = [("loss", "mAP/class", "mAP/tail", "mAP/sample", "F1@best", "P@M", "train s", "iter/s")]

    def cell(result, key):
        text = f"{result['final'][key]:.4f}"
        if len(seeds) > 1:
            low, high = result["final_range"][key]
            text += f" ({low:.3f}-{high:.3f})"
        return text
    for name, result in results.items():
        rows.append((name, *(cell(result, key) for key in METRIC_KEYS),
                     f"{result['train_seconds']:.1f}", f"{result['iters_per_s']:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"\nTest set: {test_size} canvases from unseen handwriting, complete labels; "
          f"chance mAP {chance:.3f}. mAP/tail: the rarest half of the classes.")
    if len(seeds) > 1:
        print(f"Seeds {', '.join(map(str, seeds))}: the mean of each metric (lowest-highest); "
              "train s summed over every random seed. A difference inside the ranges is no ranking.")
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w)
                        for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for name, result in results.items():
        print(f"  {name:<8} {result['label']}; test scores: {result['scores']}")
    for name, reason in skipped.items():
        print(f"  {name:<8} skipped, {reason}")
    print(f"\nSigmoid loss, native layer vs Python layer: training iterations per second of "
          f"the whole net (same net and solver; {speed['rounds']} runs of {speed['iterations']} "
          "iterations each, alternating which goes first; median, and every run):")

    def runs_text(key):
        return ", ".join(f"{r:.1f}" for r in speed[f"{key}_runs"])
    print(f"  native  {speed['native_iters_per_s']:.1f} iter/s   ({runs_text('native')})")
    if speed.get("python_iters_per_s") is not None:
        ratio = speed["native_iters_per_s"] / speed["python_iters_per_s"]
        print(f"  Python  {speed['python_iters_per_s']:.1f} iter/s   ({runs_text('python')})")
        print(f"  the native loss makes a training iteration {ratio:.2f}x as fast "
              f"({'faster' if ratio >= 1 else 'slower'}); the loss is a small part of each iteration")
    else:
        print(f"  Python  skipped: {speed['python_skipped']}")


def time_native_vs_python(caffe_pb2, tool, out, args, test_iter, gpu):
    """The native sigmoid loss against the Python layer in the same net and solver.

    No test passes or snapshots; --speed-rounds rounds, alternating which
    goes first (so warm-up and load drift do not favour either), the median kept.
    """
    speed = {"iterations": args.speed_iters, "rounds": args.speed_rounds,
             "native_runs": [], "python_runs": []}
    timed = {"native": (BY_NAME["bce"], "timing native")}
    reason = python_layer_unavailable()
    if reason is None:
        timed["python"] = (PYTHON_SIGMOID, "timing Python")
    else:
        speed["python_skipped"] = reason
        print(f"note: the Python-layer sigmoid run is skipped: {reason}", file=sys.stderr)
    for round_index in range(args.speed_rounds):
        order = list(timed) if round_index % 2 == 0 else list(reversed(timed))
        for key in order:
            if key not in timed:  # the Python run failed in an earlier round
                continue
            loss, label = timed[key]
            name = f"speed_{key}"
            net = loss_table.write_net(caffe_pb2, loss, out)
            # test_interval must be > 0: one past the end means no test pass
            solver = write_solver(caffe_pb2, out, name, net, args.speed_iters, 0,
                                  args.speed_iters + 1, test_iter, args.seed, gpu)
            run = train(tool, out, name, solver, args.speed_iters, gpu,
                        f"{label} {round_index + 1}/{args.speed_rounds}")
            if "failed" in run:
                if key == "native":
                    fail(f"the native timing run failed: {run['failed']}", code=1)
                speed["python_skipped"] = f"the Python-layer run failed: {run['failed']}"
                print(f"note: {speed['python_skipped']}", file=sys.stderr)
                del timed["python"]
                continue
            speed[f"{key}_runs"].append(run["iters_per_s"])
    for key in ("native", "python"):
        runs = speed[f"{key}_runs"]
        speed[f"{key}_iters_per_s"] = statistics.median(runs) if runs else None
    return speed


METRIC_KEYS = ("mAP", "tail_mAP", "sample_mAP", "F1", "P@M")


def train_every_loss(caffe, caffe_pb2, tool, work, args, seed, gpu):
    """Compose the data of `seed` into WORK/data and train each asked loss there.

    Returns (results, skipped, data summary, chance mAP, test_iter).
    """
    os.makedirs(os.path.join(work, "snapshots"), exist_ok=True)
    print(f"Composing {args.train_size} train and {args.test_size} test canvases "
          f"(seed {seed}, {args.missing_fraction:.0%} of the training positives missing) "
          f"into {os.path.join(work, 'data')}", file=sys.stderr)
    dataset = digits_data.make_dataset(os.path.join(work, "data"), args.train_size,
                                       args.test_size, seed, args.missing_fraction)
    test = dataset["test"]
    train_frequency = digits_data.class_frequencies(dataset["train_complete"])
    # the rarest half of the classes by their true training frequency
    tail = sorted(int(c) for c in
                  np.argsort(train_frequency, kind="stable")[:digits_data.NUM_CLASSES // 2])
    data = {
        "train_positives_per_image": float(dataset["train"][1].sum(axis=1).mean()),
        "train_positives_per_image_complete": float(dataset["train_complete"].sum(axis=1).mean()),
        "test_positives_per_image": float(test[1].sum(axis=1).mean()),
        "train_class_frequency": train_frequency.tolist(),
        "tail_classes": tail,
    }

    solver_defaults = caffe_pb2.SolverParameter()
    from google.protobuf import text_format
    with open(os.path.join(HERE, "solver.prototxt")) as f:
        text_format.Merge(f.read(), solver_defaults)
    iters = args.iters or solver_defaults.max_iter
    # about ten snapshots (and test passes) per run, for the curves
    interval = max(1, min(solver_defaults.snapshot, math.ceil(iters / 10)))
    test_iter = math.ceil(args.test_size / TEST_BATCH)

    results, skipped = {}, {}
    for loss in (BY_NAME[name] for name in args.losses):
        reason = loss_table.unavailable(caffe, caffe_pb2, loss)
        if reason is not None:
            skipped[loss.name] = reason
            print(f"note: {loss.name} ({loss.label}) skipped, {reason}", file=sys.stderr)
            continue
        net = loss_table.write_net(caffe_pb2, loss, work)
        solver = write_solver(caffe_pb2, work, loss.name, net, iters, interval, interval,
                              test_iter, seed, gpu)
        run = train(tool, work, loss.name, solver, iters, gpu, loss.name)
        if "failed" in run:
            fail(f"training with {loss.label} failed: {run['failed']}", code=1)
        curve = evaluate_snapshots(caffe, caffe_pb2, work, loss, test, tail)
        if not curve or curve[-1][0] != iters:
            fail(f"no final snapshot of the {loss.label} run in {work}/snapshots", code=1)
        results[loss.name] = {
            "label": loss.label,
            "loss_layer": loss.layer,
            "scores": loss.scores,
            "final": curve[-1][1],
            "train_seconds": run["seconds"],
            "iters_per_s": run["iters_per_s"],
            "curve": {
                "train_iteration": run["iteration"], "train_loss": run["loss"],
                "test_iteration": run["test_iteration"], "test_loss": run["test_loss"],
                "snapshot_iteration": [i for i, _ in curve],
                "test_mAP": [m["mAP"] for _, m in curve],
                "test_sample_mAP": [m["sample_mAP"] for _, m in curve],
            },
        }
    if not results:
        fail("none of the losses asked for is in this build: " +
             "; ".join(f"{name}: {reason}" for name, reason in skipped.items()), code=1)
    config = {"iters": iters, "snapshot_interval": interval}
    return results, skipped, data, metrics.chance_map(test[1]), test_iter, config


def combine_seeds(per_seed):
    """One result per loss over every random seed: the metrics' mean, each seed's, their range.

    Curves and times are those of the first seed (times: summed over seeds).
    """
    combined = {}
    for name, first in per_seed[0].items():
        runs = [results[name] for results in per_seed]
        result = dict(first)
        # one seed: its metrics as they are (the best F1's threshold too); several: the means
        result["final"] = dict(first["final"]) if len(runs) == 1 else {
            key: float(np.mean([r["final"][key] for r in runs])) for key in METRIC_KEYS}
        result["final_per_seed"] = [r["final"] for r in runs]
        result["final_range"] = {key: [min(r["final"][key] for r in runs),
                                       max(r["final"][key] for r in runs)] for key in METRIC_KEYS}
        result["train_seconds"] = float(sum(r["train_seconds"] for r in runs))
        result["iters_per_s"] = float(statistics.median(r["iters_per_s"] for r in runs))
        combined[name] = result
    return combined


def main(argv=None):
    args = parse_args(argv)
    caffe, caffe_pb2, tool = import_requirements()

    gpu = False
    if args.gpu:
        import caffe_xent
        if caffe_xent.gpu_available():
            gpu = True
            caffe.set_mode_gpu()
            caffe.set_device(0)
        else:
            print("note: --gpu asked, but no CUDA device is visible (or the build is CPU-only): "
                  "training on the CPU", file=sys.stderr)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    demo_start = time.monotonic()

    seeds = list(range(args.seed, args.seed + args.seeds))
    per_seed, chances, data = [], [], []
    for seed in seeds:
        # one seed works in OUT itself; several each in OUT/seedS
        work = out if len(seeds) == 1 else os.path.join(out, f"seed{seed}")
        results, skipped, seed_data, chance, test_iter, config = train_every_loss(
            caffe, caffe_pb2, tool, work, args, seed, gpu)
        per_seed.append(results)
        chances.append(chance)
        data.append(seed_data)
    results = combine_seeds(per_seed)
    chance = float(np.mean(chances))

    # the timing runs use the first seed's data, in its working directory
    first_work = out if len(seeds) == 1 else os.path.join(out, f"seed{seeds[0]}")
    speed = time_native_vs_python(caffe_pb2, tool, first_work, args, test_iter, gpu)

    plot_path = plot(out, results, skipped, chance)
    summary = {
        "config": {**config, "speed_iters": args.speed_iters,
                   "speed_rounds": args.speed_rounds, "train_size": args.train_size,
                   "test_size": args.test_size, "seeds": seeds, "gpu": gpu,
                   "missing_fraction": args.missing_fraction,
                   "zipf_exponent": digits_data.ZIPF_EXPONENT,
                   "canvas": [digits_data.SIDE, digits_data.SIDE],
                   "classes": [digits_data.class_name(c) for c in range(digits_data.NUM_CLASSES)]},
        "data": data[0] if len(data) == 1 else data,
        "chance_mAP": chance,
        "losses": results,
        "skipped": skipped,
        "speed": speed,
        "total_seconds": time.monotonic() - demo_start,
    }
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print_table(results, skipped, speed, chance, args.test_size, seeds)
    print(f"\nWrote {os.path.join(out, 'metrics.json')} and {plot_path} "
          f"({summary['total_seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

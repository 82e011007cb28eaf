"""The benchmark command (`make bench`): every benchmark, one report.

Runs bench/bench_sigmoid_cross_entropy_loss.py's throughput and accuracy
tables (ours vs upstream's pristine build vs PyTorch vs numpy, ours on each
SIMD target down to AVX2), bench/bench_multi_label_softmax_loss.py's and
bench/bench_zlpr_loss.py's and bench/bench_two_way_loss.py's tables,
bench/bench_caffe_time.py and bench/bench_threads.py, and writes them with the machine facts and
this command to a markdown file:

    .venv/bin/python bench/run.py --pristine build/pristine/stage --out docs/benchmarks.md
                                  [--sizes 18 22 24] [--repeat 20]
                                  [--multi-label-softmax-loss-repeat 10]

The loss benchmarks are imported and asked for their markdown; each runs
its measurements in worker subprocesses (the protocol of _common.py). A
part that fails puts its error message in its section; the run goes on.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_multi_label_softmax_loss  # noqa: E402
import bench_sigmoid_cross_entropy_loss  # noqa: E402
import bench_threads  # noqa: E402
import bench_two_way_loss  # noqa: E402
import bench_zlpr_loss  # noqa: E402
from _common import cpu_model, git_commit, load_average  # noqa: E402


def command_line():
    """This run's command as typed from the repository root."""
    python = sys.executable
    if python.startswith(ROOT + os.sep):
        python = os.path.relpath(python, ROOT)
    argv = [os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)] + sys.argv[1:]
    text = " ".join(shlex.quote(a) for a in [python] + argv)
    return text + ("  (run by `make bench`)" if os.environ.get("MAKELEVEL") else "")


def row_loss_markdown(layer, module, repeat, timeout):
    """The section of a row loss's benchmark (bench_<stem>.py, `module`), or
    its error message."""
    lines = ["## %s" % layer, "",
             "Output of `python bench/%s.py --repeat %d` (float32, forward + backward, CPU; "
             "columns as that script defines them):" % (module.__name__, repeat), ""]
    try:
        lines.append(module.markdown(repeat, timeout=timeout))
    except Exception as error:  # a broken section must not lose the others
        lines.append("**The %s benchmark failed:** `%s: %s`" % (layer, type(error).__name__, error))
    return "\n".join(lines).rstrip()


def caffe_time_markdown(timeout):
    """bench_caffe_time.py's table, or its error message."""
    command = [sys.executable, os.path.join(HERE, "bench_caffe_time.py")]
    lines = ["## `caffe time`", ""]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "\n".join(lines + ["**Not completed:** no answer within %d s." % timeout])
    lines.append(proc.stdout.strip())
    if proc.returncode != 0:
        lines += ["", "**bench_caffe_time.py exited %d:**" % proc.returncode, "", "```",
                  "\n".join(proc.stderr.strip().splitlines()[-15:]), "```"]
    return "\n".join(lines)


def threads_markdown(timeout):
    """bench_threads.py's section, or its error message."""
    lines = ["## Threads: our OpenMP next to OpenBLAS", "",
             "Output of `python bench/bench_threads.py` (InnerProduct nets of 4096 to 2^20 loss "
             "elements and the demo's CNN, float32 forward + backward through pycaffe, the median "
             "milliseconds per iteration over alternating rounds; nets and environments as that "
             "script defines them; the default and what to set: README.md, \"Threads\"):", ""]
    try:
        lines.append(bench_threads.markdown(timeout=timeout))
    except Exception as error:  # a broken section must not lose the others
        lines.append("**The threads benchmark failed:** `%s: %s`" % (type(error).__name__, error))
    return "\n".join(lines)


def build_text(info):
    """Where a peer's caffe came from, and the HEAD of the checkout holding it."""
    if isinstance(info, Exception):
        return "not available: %s" % str(info).strip().splitlines()[-1]
    path = os.path.realpath(info["caffe"])
    checkout = path
    while checkout != os.path.dirname(checkout) and not os.path.isdir(os.path.join(checkout, ".git")) \
            and not os.path.isfile(os.path.join(checkout, ".git")):
        checkout = os.path.dirname(checkout)
    shown = os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path
    if checkout == os.path.dirname(checkout):
        return "`%s`" % shown
    return "`%s` (its checkout's HEAD: %s)" % (shown, git_commit(checkout))


def machine_markdown(start_load, end_load, torch_threads, peers):
    omp = os.environ.get("OMP_NUM_THREADS")
    try:
        import torch
        torch_text = "%s (CPU, %s threads)" % (torch.__version__, torch_threads)
    except ImportError:
        torch_text = "not installed"
    rows = [
        ("CPU", cpu_model()),
        ("cores (os.cpu_count)", str(os.cpu_count())),
        ("OMP_NUM_THREADS", omp if omp else "unset (OpenMP uses every core)"),
        ("load average (1 / 5 / 15 min) at start", start_load),
        ("load average (1 / 5 / 15 min) at end", end_load),
        ("OS", "%s %s" % (platform.system(), platform.release())),
        ("SIMD targets this CPU runs (ours: the first unless a table names another)",
         ", ".join(peers.info["ours"].get("simd_targets", ["?"])) if isinstance(peers.info["ours"], dict)
         else "?"),
        ("Python / numpy", "%s / %s" % (platform.python_version(), np.__version__)),
        ("PyTorch", torch_text),
        ("ours: caffe imported from", build_text(peers.info["ours"])),
        ("upstream: caffe imported from", build_text(peers.info["upstream"])),
        ("benchmark scripts' checkout", git_commit(ROOT)),
    ]
    return "\n".join(["| | |", "|---|---|"] + ["| %s | %s |" % row for row in rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pristine", help="the pristine build's staged tree (build/pristine/stage)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[18, 22, 24], help="log2 element counts")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per throughput figure (best kept)")
    parser.add_argument("--multi-label-softmax-loss-repeat", type=int, default=10,
                        help="timed runs per MultiLabelSoftmaxLoss, ZLPRLoss and TwoWayLoss "
                             "figure (best kept)")
    parser.add_argument("--timeout", type=int, default=900,
                        help="seconds for each MultiLabelSoftmaxLoss, ZLPRLoss and TwoWayLoss worker, "
                             "and for "
                             "`caffe time`")
    args = parser.parse_args()

    started = datetime.datetime.now(datetime.timezone.utc)
    start_load, clock = load_average(), time.monotonic()
    sigmoid = bench_sigmoid_cross_entropy_loss
    peers = sigmoid.Peers(args.pristine)
    sections = []
    for title, make in (("throughput", lambda: sigmoid.throughput_markdown(peers, args.sizes, args.repeat)),
                        ("accuracy", lambda: sigmoid.accuracy_markdown(peers))):
        print("bench: sigmoid %s ..." % title, file=sys.stderr, flush=True)
        try:
            sections.append(make())
        except Exception as error:  # a broken section must not lose the others
            sections.append("**The sigmoid %s benchmark failed:** `%s: %s`"
                            % (title, type(error).__name__, error))
    print("bench: multi-label softmax ...", file=sys.stderr, flush=True)
    multi_label = row_loss_markdown("MultiLabelSoftmaxLoss", bench_multi_label_softmax_loss,
                                    args.multi_label_softmax_loss_repeat, args.timeout)
    print("bench: ZLPR ...", file=sys.stderr, flush=True)
    zlpr = row_loss_markdown("ZLPRLoss", bench_zlpr_loss, args.multi_label_softmax_loss_repeat,
                             args.timeout)
    print("bench: two-way ...", file=sys.stderr, flush=True)
    two_way = row_loss_markdown("TwoWayLoss", bench_two_way_loss,
                                args.multi_label_softmax_loss_repeat, args.timeout)
    print("bench: caffe time ...", file=sys.stderr, flush=True)
    caffe_time = caffe_time_markdown(args.timeout)
    print("bench: threads ...", file=sys.stderr, flush=True)
    threads = threads_markdown(args.timeout)
    end_load = load_average()
    minutes = (time.monotonic() - clock) / 60
    torch_threads = sigmoid.torch_threads()  # what the workers set

    document = "\n".join([
        "# Benchmarks",
        "",
        "Measured %s UTC in %.1f minutes by:" % (started.strftime("%Y-%m-%d %H:%M"), minutes),
        "",
        "    " + command_line(),
        "",
        "Every figure below was measured in that run; nothing is carried over from "
        "elsewhere. See bench/README.md for what each column means.",
        "",
        "## Machine",
        "",
        machine_markdown(start_load, end_load, torch_threads, peers),
        "",
        "## SigmoidCrossEntropyLoss",
        "",
        "upstream = BVLC Caffe's own layer from the pristine build (`scripts/build-pristine.sh`: "
        "the same upstream source with only the toolchain patches, CPU-only), run through the "
        "same pycaffe Net as ours (and `caffe_xent.run_layer` where that can reach it).",
        "",
        "\n\n".join(sections),
        "",
        multi_label,
        "",
        zlpr,
        "",
        two_way,
        "",
        caffe_time,
        "",
        threads,
        "",
    ])
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(document)
    print(document)
    print("bench: wrote %s" % os.path.relpath(out, os.getcwd()), file=sys.stderr)


if __name__ == "__main__":
    main()

"""Helpers shared by the benchmark scripts: timing, the worker protocol,
machine facts. Standard library only, so a worker that runs against the
pristine build loads nothing it does not need.

The worker protocol, the same for every benchmark: each measurement runs in
a fresh interpreter, ``python SCRIPT worker JOB [--options]``
(:func:`run_worker`), because OpenMP runtimes and allocators of Caffe and
PyTorch in one process slow each other down, and because the pristine
build and ours define the same package names. The script's ``__main__``
hands such a command line to :func:`serve_worker`, which runs
``workers[JOB](args)`` and prints its JSON-able result as the one line
starting with ``BENCH_JSON`` (:func:`answer`) that :func:`run_worker` reads
back. Every script offers the job ``info`` (:func:`worker_info`): where
``caffe`` was imported from and the SIMD targets it runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

WORKER_MARK = "BENCH_JSON "  # the one stdout line a worker answers with


def best_time(fn, repeat, warm_up=0.1):
    """Best wall time in seconds of `repeat` calls of fn, after warm-up calls
    for `warm_up` seconds (one at least). A process's first parallel regions
    can find libgomp's sleeping worker on the main thread's core (a passive
    wait policy, caffe-xent's default: python/caffe_xent/_openmp.py): in a
    fresh worker, MultiLabelSoftmaxLoss at 8x21x128x128 took 3.0 ms a step
    in its first 30 ms and 1.6 ms from then on, as with a spinning worker."""
    end = time.perf_counter() + warm_up
    fn()
    while time.perf_counter() < end:
        fn()
    best = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def answer(result):
    """Worker side: hand `result` (JSON-able) back to the orchestrator."""
    sys.stdout.write(WORKER_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


class WorkerError(RuntimeError):
    """A worker subprocess failed; the message carries its stderr tail."""


def failure(error):
    """One line of a WorkerError for a table footnote."""
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else "failed"


def is_worker_call(argv=None):
    """Whether this process was started as a worker (`SCRIPT worker JOB ...`)."""
    argv = sys.argv if argv is None else argv
    return len(argv) > 1 and argv[1] == "worker"


def serve_worker(script, workers, add_arguments, argv=None):
    """Worker side: parse `JOB [--options]` from argv (after `SCRIPT worker`),
    run workers[JOB](args) and answer() its result. add_arguments(parser)
    declares the script's options; the job `info` is always there."""
    workers = dict(workers, info=lambda _args: worker_info())
    parser = argparse.ArgumentParser(prog="%s worker" % os.path.basename(script))
    parser.add_argument("job", choices=sorted(workers))
    add_arguments(parser)
    args = parser.parse_args(sys.argv[2:] if argv is None else argv)
    answer(workers[args.job](args))


def worker_info():
    """The job `info`: where caffe and caffe_xent come from, whether the GPU
    runs, and the SIMD targets (a pristine stage built before the SIMD
    switch has none)."""
    import caffe
    import caffe_xent
    info = {"caffe": os.path.dirname(caffe.__file__), "caffe_xent": os.path.dirname(caffe_xent.__file__),
            "gpu": bool(caffe_xent.gpu_available())}
    if hasattr(caffe_xent._harness, "simd_targets"):
        info["simd_target"] = caffe_xent._harness.simd_target()
        info["simd_targets"] = caffe_xent._harness.simd_targets()
    return info


def run_worker(script, job, *args, pythonpath=None, timeout=900, simd=None, env=None):
    """Run `python SCRIPT worker JOB ARGS...` in a fresh interpreter and
    return its answer(); WorkerError when there is none.

    pythonpath, when given, is put first on PYTHONPATH: that is how a worker
    imports the pristine build's `caffe` and `caffe_xent` instead of ours
    (both builds define the same package names, so they cannot share one
    process). simd, when given, is the SIMD target the worker's layers run
    (CAFFE_XENT_SIMD, read when libcaffe loads). env, when given, is the
    worker's environment instead of this process's (the settings above are
    still applied to it).
    """
    command = [script, "worker", job] + [str(a) for a in args]
    env = dict(os.environ if env is None else env)
    if simd:
        env["CAFFE_XENT_SIMD"] = simd
    env.setdefault("GLOG_minloglevel", "2")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.abspath(pythonpath)] + [p for p in [env.get("PYTHONPATH")] if p])
    try:
        proc = subprocess.run([sys.executable] + command, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise WorkerError("%s: no answer within %d s" % (" ".join(command), timeout)) from None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(WORKER_MARK):
            return json.loads(line[len(WORKER_MARK):])
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    raise WorkerError("%s exited with status %d:\n%s" % (" ".join(command), proc.returncode, tail))


def cpu_model():
    """The CPU model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average():
    """The 1, 5 and 15 minute load averages as text."""
    return " / ".join("%.2f" % v for v in os.getloadavg())


def git_commit(root):
    """HEAD of the checkout at `root`, with "+ local changes" when dirty."""
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + local changes" if dirty else "")


def threads_line():
    """The line above a table: OpenMP threads, cores, load average now."""
    return ("CPU threads: OMP_NUM_THREADS=%s, os.cpu_count()=%d, load average %s"
            % (os.environ.get("OMP_NUM_THREADS", "unset"), os.cpu_count(),
               " ".join("%.1f" % v for v in os.getloadavg())))


def throughput_run(script, peer, shape, repeat, simd, timeout, notes):
    """One `throughput` worker of `script` (peer, shape "256x1000", SIMD
    target or None for the default): its answer, or None with a line in
    `notes` when it failed or ran another target than asked."""
    key = peer if simd is None else "ours " + simd
    try:
        result = run_worker(script, "throughput", "--peer", peer, "--shape", shape,
                            "--repeat", repeat, simd=simd, timeout=timeout)
    except WorkerError as error:
        notes.append("- %s at %s: %s" % (key, shape, failure(error)))
        return None
    if simd is not None and result.get("simd_target") != simd:
        notes.append("- %s at %s: the worker ran %s" % (key, shape, result.get("simd_target")))
        return None
    return result


def extra_simd_targets(script, notes):
    """The targets to run ours on besides the default, for `script`'s table:
    measured_simd_targets of what its `info` worker reports, less the first
    (the default). A failed worker leaves a line in `notes` and gives []."""
    try:
        info = run_worker(script, "info", timeout=120)
    except WorkerError as error:
        notes.append("- SIMD targets: %s" % failure(error))
        return []
    return measured_simd_targets(info.get("simd_targets", []))[1:]


def measured_simd_targets(available):
    """The SIMD targets a benchmark measures: every one this CPU runs from
    the best down to AVX2 (the slower ones are tested, not benchmarked)."""
    if "AVX2" not in available:
        return list(available[:1])
    return list(available[:available.index("AVX2") + 1])

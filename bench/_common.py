"""Helpers shared by the benchmark scripts: timing, worker subprocesses,
machine facts. Standard library only, so a worker that runs against the
pristine build loads nothing it does not need.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

WORKER_MARK = "BENCH_JSON "  # the one stdout line a worker answers with


def best_time(fn, repeat):
    """Best wall time in seconds of `repeat` calls of fn, after one warm-up call."""
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


def run_worker(args, *, pythonpath=None, timeout=900, simd=None):
    """Run `python <args>` in a fresh interpreter and return its answer().

    pythonpath, when given, is put first on PYTHONPATH: that is how a worker
    imports the pristine build's `caffe` and `caffe_xent` instead of ours
    (both builds define the same package names, so they cannot share one
    process). simd, when given, is the SIMD target the worker's layers run
    (CAFFE_XENT_SIMD, read when libcaffe loads).
    """
    env = dict(os.environ)
    if simd:
        env["CAFFE_XENT_SIMD"] = simd
    env.setdefault("GLOG_minloglevel", "2")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.abspath(pythonpath)] + [p for p in [env.get("PYTHONPATH")] if p])
    try:
        proc = subprocess.run([sys.executable] + list(args), env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise WorkerError("%s: no answer within %d s" % (" ".join(args), timeout)) from None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(WORKER_MARK):
            return json.loads(line[len(WORKER_MARK):])
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    raise WorkerError("%s exited with status %d:\n%s" % (" ".join(args), proc.returncode, tail))


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


def measured_simd_targets(available):
    """The SIMD targets a benchmark measures: every one this CPU runs from
    the best down to AVX2 (the slower ones are tested, not benchmarked)."""
    if "AVX2" not in available:
        return list(available[:1])
    return list(available[:available.index("AVX2") + 1])

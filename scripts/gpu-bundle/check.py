"""The GPU bundle's checks, run by its `run` script with the bundled Python.

    check.py --out OUTDIR [--quick] [--only gpu,cpp,pytest,train,bench]

Steps, in order, each with its own time budget (seconds, on a 16-core
machine with one GPU; the whole stays under 8 minutes), a failing or
overrunning step never stopping the next:

  gpu     the probe (device, driver, device-to-device copy bandwidth) and nvidia-smi
  cpp     the C++ tests, GPU-typed cases included, in parallel gtest shards
  pytest  the pytest suite's GPU cases (pytest -m gpu), CPU vs GPU agreement included
  train   a short training run of the demo net with each loss through pycaffe's solver
  bench   both layers, float32, forward + backward: ours against PyTorch on the
          same GPU (the machine's own python3, eager and torch.compile)

Without a GPU each GPU step says so in the report instead of failing; the
CPU parts still run (the C++ tests' CPU cases, a pytest smoke test of the
CPU path, the training run on the CPU). --quick shortens the CPU training
run (the repository's own test of the bundle).

OUTDIR receives report.md (the summary), results.json (every figure) and
one log per step: at most 8 files.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

BUNDLE = os.environ.get("CAFFE_XENT_BUNDLE") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
PROJECT = os.path.join(BUNDLE, "project")
PYTHON = sys.executable
LOG_LIMIT = 15 * 2**20  # bytes per log file (OUTDIR files come back at up to 16 MiB)

BUDGETS = {"gpu": 30, "cpp": 110, "pytest": 110, "train": 60, "bench": 150}


class Step:
    """One step's status, counts, notes and log file."""

    def __init__(self, name, out):
        self.name, self.budget = name, BUDGETS[name]
        self.start = time.monotonic()
        self.status = "passed"
        self.counts = {}
        self.notes = []
        self.failures = []
        self.log_path = os.path.join(out, name + ".log")
        self.log = open(self.log_path, "w")

    def left(self):
        return self.budget - (time.monotonic() - self.start)

    def fail(self, line):
        self.status = "failed"
        self.failures.append(line)

    def run(self, cmd, cwd=None, env=None, timeout=None, label=None):
        """Run cmd in a session of its own (killed whole at the timeout),
        appending its output to the step's log. Returns (rc or None on
        timeout, output)."""
        timeout = max(1.0, self.left() if timeout is None else min(timeout, self.left()))
        self.log.write("\n$ %s\n" % " ".join(cmd))
        self.log.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            rc = None
            self.fail("%s: stopped after %.0f s (the step's time budget)" % (label or cmd[0], timeout))
        if self.log.tell() < LOG_LIMIT:
            self.log.write(output[: LOG_LIMIT - self.log.tell()])
        self.log.flush()
        return rc, output

    def finish(self):
        self.seconds = time.monotonic() - self.start
        self.log.close()
        return {"status": self.status, "seconds": round(self.seconds, 1), "budget": self.budget,
                "counts": self.counts, "notes": self.notes, "failures": self.failures}


def bundle_env(**extra):
    env = dict(os.environ)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def host_env():
    """The machine's own environment, for its own python3 (PyTorch)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "CAFFE_XENT_", "LD_LIBRARY_PATH", "GLOG_"))}
    env["PATH"] = os.environ.get("CAFFE_XENT_HOST_PATH", "/usr/bin:/bin")
    if os.environ.get("CAFFE_XENT_HOST_LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["CAFFE_XENT_HOST_LD_LIBRARY_PATH"]
    return env


def last_json(output):
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


# ---- steps ----------------------------------------------------------------------

def step_gpu(step, state, args):
    rc, output = step.run([os.path.join(BUNDLE, "bin", "xent_gpu_probe")], label="probe")
    probe = last_json(output) or {}
    state["probe"] = probe
    if rc != 0 or not probe:
        step.fail("the GPU probe failed: " + (output.strip().splitlines() or ["no output"])[-1])
    state["gpu"] = bool(probe.get("gpu")) and rc == 0
    smi = shutil.which("nvidia-smi", path=os.environ.get("CAFFE_XENT_HOST_PATH"))
    if smi:
        _, query = step.run([smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
                             "power.limit,temperature.gpu", "--format=csv,noheader"], timeout=20)
        state["nvidia_smi"] = query.strip()
        step.run([smi], timeout=20)
    else:
        state["nvidia_smi"] = "nvidia-smi not found"
    if not state["gpu"]:
        step.status = "no GPU"
        step.notes.append("no GPU: " + probe.get("reason", "the probe found none"))
    else:
        step.notes.append("%s, %d SMs, %.0f GiB; copy %.0f GB/s (median, device to device, "
                          "read + write)" % (probe["name"], probe["multiprocessors"],
                                             probe["memory_gib"], probe["copy_gbs_median"]))


def step_cpp(step, state, args):
    binary = os.path.join(BUNDLE, "bin", "caffe_xent_cpp_tests")
    cwd = os.path.join(BUNDLE, "upstream")
    cores = os.cpu_count() or 2
    shards = max(1, min(8, cores // 2)) if state.get("gpu") else 1
    threads = max(1, cores // shards)
    procs = []
    for index in range(shards):
        env = bundle_env(GTEST_TOTAL_SHARDS=shards, GTEST_SHARD_INDEX=index,
                         OMP_NUM_THREADS=threads, GLOG_minloglevel=2)
        procs.append(subprocess.Popen([binary], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, errors="replace",
                                      start_new_session=True))
    outputs = []
    for index, proc in enumerate(procs):
        try:
            output, _ = proc.communicate(timeout=max(1.0, step.left()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            step.fail("shard %d: stopped at the step's time budget" % index)
        outputs.append((proc.returncode, output))
        step.log.write("\n==== shard %d of %d (exit %s)\n%s" % (index, shards, proc.returncode,
                                                                output[-LOG_LIMIT // (2 * shards):]))
    passed = failed = 0
    for rc, output in outputs:
        m = re.search(r"\[  PASSED  \] (\d+) test", output)
        passed += int(m.group(1)) if m else 0
        m = re.search(r"\[  FAILED  \] (\d+) test", output)
        failed += int(m.group(1)) if m else 0
        for line in re.findall(r"^\[  FAILED  \] (\S+\.\S+)", output, re.M):
            step.fail(line)
        if rc not in (0, 1) or (rc == 1 and not m) or "[==========]" not in output:
            crash = [l for l in output.splitlines() if l.startswith(("F", "*** ", "terminate"))]
            step.fail("a shard exited %s without a gtest summary: %s"
                      % (rc, (crash or output.strip().splitlines() or ["no output"])[-1][:200]))
    step.counts = {"passed": passed, "failed": failed}
    if any("SKIPPED GPU tests" in o for _, o in outputs):
        step.notes.append("no GPU: the GPU-typed cases were filtered out by the test binary")
    if failed:
        step.status = "failed"
    if passed == 0 and step.status == "passed":
        step.fail("no test ran")


def pytest_counts(output):
    line = next((l for l in reversed(output.splitlines()) if re.search(r"\d+ (passed|failed|skipped|error)", l)), "")
    return {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", line)}


def step_pytest(step, state, args):
    base = [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", "--tb=line"]
    env = bundle_env(GLOG_minloglevel=2, OMP_NUM_THREADS=2)
    workers = []
    if state.get("gpu"):  # pytest-xdist workers: the float64 references are CPU work
        workers = ["-n", str(max(1, min(8, (os.cpu_count() or 2) // 2)))]
    rc, output = step.run(base + workers + ["-m", "gpu", "tests"], cwd=PROJECT, env=env,
                          label="pytest -m gpu")
    counts = pytest_counts(output)
    step.counts = counts
    for line in re.findall(r"^(?:FAILED|ERROR) (.+)$", output, re.M):
        step.fail(line[:300])
    if rc not in (0, None) and not step.failures:
        step.fail("pytest exited %s: %s" % (rc, (output.strip().splitlines() or [""])[-1]))
    if not state.get("gpu"):
        if counts.get("passed"):
            step.fail("GPU cases passed without a GPU")
        step.notes.append("no GPU: %d GPU cases skipped (reason in the log)" % counts.get("skipped", 0))
        # The CPU path of the bundled runtime: the harness and pycaffe tests.
        rc, output = step.run(base + ["-m", "not gpu", "tests/test_harness.py", "tests/test_pycaffe.py"],
                              cwd=PROJECT, env=env, label="pytest smoke (CPU)")
        smoke = pytest_counts(output)
        step.notes.append("CPU smoke (test_harness.py, test_pycaffe.py): %s"
                          % ", ".join("%d %s" % (v, k) for k, v in smoke.items()))
        if rc != 0 or not smoke.get("passed"):
            step.fail("CPU smoke tests: exit %s" % rc)
        if step.status == "passed":
            step.status = "no GPU"


def step_train(step, state, args):
    iters = 300 if state.get("gpu") else (60 if args.quick else 100)
    cmd = [PYTHON, os.path.join(PROJECT, "gpu", "train_check.py"), "--data",
           os.path.join(PROJECT, "gpu", "data"), "--iters", str(iters)]
    if state.get("gpu"):
        cmd.append("--gpu")
    rc, output = step.run(cmd, cwd=PROJECT, env=bundle_env(GLOG_minloglevel=2), label="train_check")
    result = last_json(output)
    state["train"] = result
    if rc != 0 or not result:
        step.fail("train_check exited %s: %s" % (rc, (output.strip().splitlines() or [""])[-1][:300]))
        return
    for name, reason in result.get("not_in_this_build", {}).items():
        step.notes.append("%s: %s" % (name, reason))
    for name, run in result["losses"].items():
        step.notes.append("%s on %s, %d iterations, %.1f s: loss %.3f -> %.3f, test mAP %.3f"
                          % (name, result["device"], run["iters"], run["seconds"], run["loss_first"],
                             run["loss_last"], run["test_map"]))
        # Losses fall at their own pace in a short run (Two-way's slowest):
        # it must fall, and the net must rank the test labels above chance.
        if not run["loss_last"] < run["loss_first"]:
            step.fail("%s: the loss did not fall (%.3f -> %.3f)" % (name, run["loss_first"], run["loss_last"]))
        if not run["test_map"] > 1.5 * run["chance_map"]:
            step.fail("%s: test mAP %.3f is not above chance (%.3f) by half"
                      % (name, run["test_map"], run["chance_map"]))
    if not state.get("gpu"):
        step.notes.insert(0, "no GPU: trained on the CPU instead")
        if step.status == "passed":
            step.status = "no GPU"


def step_bench(step, state, args):
    if not state.get("gpu"):
        step.status = "no GPU"
        step.notes.append("no GPU: the benchmark measures the GPU only; not run")
        return
    copy = state["probe"]["copy_gbs_median"]
    rc, output = step.run([PYTHON, os.path.join(PROJECT, "bench", "bench_gpu.py"), "--json"],
                          cwd=PROJECT, env=bundle_env(GLOG_minloglevel=2), timeout=70, label="ours")
    ours = last_json(output)
    if rc != 0 or not ours:
        step.fail("ours: exit %s: %s" % (rc, (output.strip().splitlines() or [""])[-1][:300]))
        ours = {"rows": []}
    host_python = shutil.which("python3", path=host_env()["PATH"])
    peers = {"rows": []}
    if host_python:
        rc, output = step.run([host_python, os.path.join(PROJECT, "bench", "bench_gpu.py"), "--json",
                               "--peer", "torch", "--deadline-s", str(max(10, int(step.left()) - 15))],
                              cwd=PROJECT, env=host_env(), label="PyTorch")
        peers = last_json(output) or peers
        if rc != 0:
            step.notes.append("PyTorch peer: exit %s: %s" % (rc, (output.strip().splitlines() or [""])[-1][:300]))
    else:
        step.notes.append("PyTorch peer: no python3 on the machine's PATH")
    state["bench"] = {"copy_gbs": copy, "ours": ours, "peers": peers}


STEPS = [("gpu", step_gpu), ("cpp", step_cpp), ("pytest", step_pytest), ("train", step_train),
         ("bench", step_bench)]


# ---- report ---------------------------------------------------------------------

def bench_table(bench):
    copy = bench["copy_gbs"]
    peers = {}
    for row in bench["peers"].get("rows", []):
        peers[(row["layer"], tuple(row["shape"]), row["impl"])] = row
    lines = ["| layer | shape | elements | ours µs (F + B) | ours GB/s | of copy | "
             "eager µs | compiled µs | ours / eager | ours / compiled |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in bench["ours"].get("rows", []):
        key = (row["layer"], tuple(row["shape"]))
        t = row["forward_s"] + row["backward_s"]
        gbs = row["bytes"] / t / 1e9
        eager = peers.get(key + ("eager",))
        comp = peers.get(key + ("compiled",))

        def us(peer):
            return "%.1f" % (peer["seconds"] * 1e6) if peer and "seconds" in peer else (
                peer.get("error", "—")[:40] if peer else "—")

        def ratio(peer):
            return "%.2f×" % (peer["seconds"] / t) if peer and "seconds" in peer else "—"
        lines.append("| %s | %s | %d | %.1f (%.1f + %.1f) | %.0f | %.0f %% | %s | %s | %s | %s |"
                     % (row["layer"], "×".join(map(str, row["shape"])), row["elements"], t * 1e6,
                        row["forward_s"] * 1e6, row["backward_s"] * 1e6, gbs, 100 * gbs / copy,
                        us(eager), us(comp), ratio(eager), ratio(comp)))
    return lines


def write_report(out, state, results, started, args):
    probe = state.get("probe", {})
    info = {}
    try:
        with open(os.path.join(BUNDLE, "BUILD_INFO.json")) as f:
            info = json.load(f)
    except OSError:
        pass
    lines = ["# caffe-xent GPU check", "",
             "- bundle: commit %s; run %s UTC, %d cores; unpack %s s; whole run %.0f s"
             % (info.get("commit", "?"), time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
                os.cpu_count() or 0, os.environ.get("CAFFE_XENT_UNPACK_S", "?"), time.time() - started),
             "- device: " + (("%s (compute %s, %d SMs, %.0f GiB, L2 %.0f MiB), CUDA driver API %s, runtime %s"
                              % (probe["name"], probe["compute_capability"], probe["multiprocessors"],
                                 probe["memory_gib"], probe["l2_mib"], probe["driver_api"],
                                 probe["runtime_api"])) if probe.get("gpu") else
                             "no GPU (%s)" % probe.get("reason", probe.get("error", "probe failed"))),
             "- nvidia-smi: " + state.get("nvidia_smi", "not run"),
             "- copy bandwidth: " + ("%.0f GB/s median, %.0f max (cudaMemcpy device to device, %d MiB, "
                                     "read + write)" % (probe["copy_gbs_median"], probe["copy_gbs_max"],
                                                        probe["copy_bytes"] >> 20)
                                     if probe.get("gpu") else "—"),
             "- cuBLAS/cuRAND from: " + os.environ.get("CAFFE_XENT_NVIDIA_LIBS", "?"),
             "", "| step | status | seconds (budget) | counts |", "|---|---|---:|---|"]
    for name, result in results.items():
        counts = ", ".join("%d %s" % (v, k) for k, v in result["counts"].items()) or "—"
        lines.append("| %s | %s | %.0f (%d) | %s |" % (name, result["status"], result["seconds"],
                                                        result["budget"], counts))
    for name, result in results.items():
        if result["notes"] or result["failures"]:
            lines += ["", "## %s" % name]
            lines += ["- " + n for n in result["notes"]]
            if result["failures"]:
                lines.append("- failures (first 20; full log %s.log):" % name)
                lines += ["  - `%s`" % f for f in result["failures"][:20]]
    if state.get("bench"):
        lines += ["", "## benchmark (float32, forward + backward, median)", "",
                  "GB/s counts the fewest bytes a pass must move: 20 B per element for both "
                  "layers (forward reads logits and targets, backward reads both and writes the "
                  "gradient); 'of copy' is that over the measured copy bandwidth. Peers: PyTorch "
                  "%s on the machine's own python3. A ratio is ours' speed over the peer's (the "
                  "peer's time over ours; above 1: ours is faster)." % state["bench"]["peers"].get("torch", "?"), ""]
        lines += bench_table(state["bench"])
        fixed = state["bench"]["ours"].get("fixed_cost_us")
        if fixed:
            lines += ["", "Fixed cost of one Forward + Backward on a tiny blob (1×10), µs: " +
                      ", ".join("%s %.1f" % kv for kv in fixed.items())]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"steps": results, "state": state, "build": info}, f, indent=1, default=str)
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true",
                        help="a shorter CPU training run (the repository's own test of the bundle)")
    parser.add_argument("--only", default="", help="comma-separated steps (gpu is always run)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    only = set(filter(None, args.only.split(",")))
    started = time.time()
    state, results = {}, {}
    for name, fn in STEPS:
        if only and name not in only and name != "gpu":
            continue
        step = Step(name, args.out)
        print("gpu-bundle: step %s (budget %d s)" % (name, step.budget), flush=True)
        try:
            fn(step, state, args)
        except Exception as e:  # a broken step is reported, the next one still runs
            step.fail("%s: %s" % (type(e).__name__, e))
        results[name] = step.finish()
        print("gpu-bundle: step %s: %s in %.0f s" % (name, results[name]["status"],
                                                     results[name]["seconds"]), flush=True)
    print(write_report(args.out, state, results, started, args))
    sys.exit(1 if any(r["status"] == "failed" for r in results.values()) else 0)


if __name__ == "__main__":
    main()

"""The bits a loss layer gives under different OpenMP thread counts.

The layers' sums are deterministic: chunks and blocks depend on the shape
only, never on the number of threads. `results_per_thread_count` runs one
layer on the same random scores and 0/1 targets in a fresh interpreter per
OMP_NUM_THREADS (libgomp reads it once, when it loads) and returns the set
of (loss bits, SHA-256 of bottom[0]'s diff) it saw: one element when the
thread count changes nothing.
"""
import os
import subprocess
import sys

_CODE = """\
import hashlib, sys
import numpy as np
import caffe_xent
rng = np.random.default_rng(5)
x = (rng.standard_normal(%(shape)r) * 3).astype(np.float32)
t = (rng.random(x.shape) < %(density)r).astype(np.float32)
(loss, *_), (dx, _) = caffe_xent.run_layer(%(layer)r, [x, t])
sys.stdout.write(np.float32(loss).tobytes().hex() + ' ' + hashlib.sha256(dx.tobytes()).hexdigest())
"""


def results_per_thread_count(layer, shape, density, threads=("1", "2", "3")):
    """{output} of `layer` (prototxt text, two bottoms) on float32 scores of
    `shape`, N(0, 3²), and targets 1 with probability `density`, once per
    OMP_NUM_THREADS in `threads`."""
    code = _CODE % {"shape": tuple(shape), "density": density, "layer": layer}
    outputs = set()
    for count in threads:
        env = dict(os.environ, OMP_NUM_THREADS=count)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        outputs.add(out.stdout)
    return outputs

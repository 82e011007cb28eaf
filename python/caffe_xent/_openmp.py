"""caffe-xent's default for libgomp's waiting: a short spin (GOMP_SPINCOUNT=10000),
unless the user chose a policy.

libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when it is loaded.
With neither set, a libgomp worker spins 300000 times (about 3.5 ms of CPU
on the benchmarks' 2-core Xeon) after each parallel region before it
sleeps. In a net, the next layer's OpenBLAS threads then share the cores
with a thread that does nothing, and OpenBLAS's threads wait for each other
a scheduler slice: an iteration of 0.9 ms took 5 to 8 (bench/bench_threads.py).
OMP_WAIT_POLICY=passive (no spin) fixes the net, but then every region has
to wake its sleeping worker (40-50 µs there): a 2^18-element sigmoid loss
lost a third of its throughput. 10000 spins (about 0.12 ms) keep the worker
awake from one step to the next and asleep during the next layers: the
net's iteration 1.0 ms (0.75 passive, 1.34 spinning 300000, quiet machine),
the layers' throughput that of the long spin.

So the processes that load libcaffe through us (``import caffe``,
``import caffe_xent``, the ``caffe`` command) load it with
GOMP_SPINCOUNT=10000 when neither variable is set. The variable is removed
again once the library is loaded: another OpenMP runtime the process loads
later (PyTorch's, say) and child processes see the environment the user
gave. A libgomp already loaded before (by another library linked to the
system libgomp) keeps what it read then.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, MutableMapping

#: The variables by which a user chooses libgomp's waiting; any one set wins.
USER_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: What caffe-xent sets when the user chose neither.
DEFAULT = ("GOMP_SPINCOUNT", "10000")


def set_default(env: MutableMapping[str, str]) -> bool:
    """Sets DEFAULT in `env` unless the user chose a policy; says whether it did."""
    if any(name in env for name in USER_CHOICES):
        return False
    env[DEFAULT[0]] = DEFAULT[1]
    return True


@contextlib.contextmanager
def default_while_loading() -> Iterator[None]:
    """The default in os.environ while the block loads libcaffe (and with it
    libgomp), the caller's environment again afterwards."""
    added = set_default(os.environ)
    try:
        yield
    finally:
        if added:
            os.environ.pop(DEFAULT[0], None)

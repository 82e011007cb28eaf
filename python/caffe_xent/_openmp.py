"""caffe-xent's default OpenMP wait policy: passive, unless the user chose one.

libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when it is loaded.
Unset, a libgomp worker spins after each parallel region (300000 pause
instructions, about 3.5 ms of CPU on the benchmarks' 2-core Xeon) before
it sleeps. In a net, the next layer's OpenBLAS threads then share the cores
with a thread that does nothing, and OpenBLAS's threads wait for each other
a scheduler slice: an iteration of 0.9 ms took 5 (bench/bench_threads.py).
A passive worker sleeps at once and is woken for the next region.

So the processes that load libcaffe through us (``import caffe``,
``import caffe_xent``, the ``caffe`` command) load it with
OMP_WAIT_POLICY=passive when neither variable is set. The variable is
removed again once the library is loaded: another OpenMP runtime the
process loads later (PyTorch's, say) and child processes see the
environment the user gave. A libgomp already loaded before (by another
library linked to the system libgomp) keeps the policy it read then.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, MutableMapping

#: The variables by which a user chooses libgomp's waiting; any one set wins.
USER_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
DEFAULT = ("OMP_WAIT_POLICY", "passive")


def set_default(env: MutableMapping[str, str]) -> bool:
    """Sets OMP_WAIT_POLICY=passive in `env` unless the user chose a policy;
    says whether it did."""
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

"""caffe-xent's OpenMP default: libgomp loaded with GOMP_SPINCOUNT=10000 by
`import caffe`, `import caffe_xent` and the `caffe` command, unless the
user chose a policy (caffe_xent/_openmp.py says why).

libgomp prints the settings it read when it loads under
OMP_DISPLAY_ENV=verbose; each check reads from a fresh process the spin
count it uses: 300000 with nothing set, 0 under OMP_WAIT_POLICY=passive.
"""
import os
import subprocess
import sys

import pytest

from caffe_xent import _openmp

CAFFE = os.path.join(os.path.dirname(sys.executable), "caffe")


def clean_env(**extra):
    """The test's environment without a user choice of policy, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DISPLAY_ENV")}
    env.update(extra, OMP_DISPLAY_ENV="verbose")
    return env


def python(code, **extra):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=clean_env(**extra))
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def spin_counts(stderr):
    """The spin counts libgomp printed at load (GOMP_SPINCOUNT = '...'), one
    per process image that loaded it."""
    counts = [int(line.split("'")[1]) for line in stderr.splitlines() if "GOMP_SPINCOUNT =" in line]
    assert counts, stderr[-3000:]
    return counts


@pytest.mark.parametrize("module", ["caffe", "caffe_xent"])
def test_import_loads_libgomp_with_the_default_and_restores_the_environment(module):
    out = python("import os, %s; print(repr(os.environ.get('GOMP_SPINCOUNT')))" % module)
    assert spin_counts(out.stderr) == [10000]
    # Gone again once the library is loaded: later runtimes and children see the user's choice.
    assert out.stdout.strip().splitlines()[-1] == "None"


def test_a_users_policy_wins():
    out = python("import os, caffe; print(os.environ['OMP_WAIT_POLICY'])", OMP_WAIT_POLICY="active")
    assert spin_counts(out.stderr)[0] > 300000  # libgomp's active policy spins longer than unset
    assert out.stdout.strip().splitlines()[-1] == "active"


def test_a_users_spin_count_wins():
    out = python("import caffe", GOMP_SPINCOUNT="12345")
    assert spin_counts(out.stderr) == [12345]


def test_a_users_passive_policy_wins():
    out = python("import caffe_xent", OMP_WAIT_POLICY="passive")
    assert spin_counts(out.stderr) == [0]


def test_the_caffe_command_loads_libgomp_with_the_default():
    out = subprocess.run([CAFFE], capture_output=True, text=True, timeout=120, env=clean_env())
    assert "usage: caffe <command> <args>" in out.stderr + out.stdout
    # The launcher (Python, which imports caffe_xent), then the tool it executes.
    assert spin_counts(out.stderr) == [10000, 10000]
    # The control: the tool binary itself, started without the launcher, spins.
    from caffe_xent._caffe_tool import tool_path
    out = subprocess.run([tool_path()], capture_output=True, text=True, timeout=120,
                         env=clean_env())
    assert spin_counts(out.stderr) == [300000]


def test_set_default_only_without_a_choice():
    env = {}
    assert _openmp.set_default(env) and env == {"GOMP_SPINCOUNT": "10000"}
    for name, value in (("OMP_WAIT_POLICY", "active"), ("GOMP_SPINCOUNT", "0")):
        env = {name: value}
        assert not _openmp.set_default(env) and env == {name: value}

"""The `caffe` command: launches the custom Caffe tool binary shipped in this package.

The native tool lives in caffe_xent/bin/caffe next to its libcaffe. This
launcher points the tool's embedded Python (used by `type: 'Python'` layers)
at this interpreter's standard library and site-packages, so Python layers
find numpy, caffe and the user's modules as they would under `python`, and
sets caffe-xent's OpenMP default (GOMP_SPINCOUNT=10000 unless the user
chose a policy; _openmp.py says why): the tool loads libgomp before its
main() runs, so only its environment can choose.
"""
import os
import sys

from . import _openmp


def tool_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "caffe")


def main() -> None:
    env = dict(os.environ)
    env.setdefault("PYTHONHOME", sys.base_prefix)
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    if env.get("PYTHONPATH"):
        paths.insert(0, env["PYTHONPATH"])
    paths.insert(0, os.getcwd())  # Python layers are usually modules beside the prototxt
    env["PYTHONPATH"] = os.pathsep.join(paths)
    _openmp.set_default(env)
    tool = tool_path()
    os.execve(tool, [tool] + sys.argv[1:], env)


if __name__ == "__main__":
    main()

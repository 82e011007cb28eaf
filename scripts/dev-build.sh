#!/usr/bin/env bash
# dev-build.sh BUILD_DIR [ninja args...]
#
# For developers iterating on a layer: configure (once) and build a private
# build directory against .venv, then stage an uninstalled package tree in
# BUILD_DIR/stage. Sibling build dirs share ccache hits with build/cmake.
# Then run, for example:
#   eval "$(scripts/dev-build.sh build/dev-mine --print-env)"
#   .venv/bin/python -m pytest tests/test_x.py
#   (cd build/dev-mine && ./caffe_xent_cpp_tests --gtest_filter='*Sigmoid*')
set -euo pipefail
b=${1:?usage: $0 BUILD_DIR [--print-env | ninja args]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
py=$root/.venv/bin/python
nvidia_lib=$("$py" -c "import os, sys; print(next((os.path.join(p,'nvidia','cu13','lib') for p in sys.path if os.path.isdir(os.path.join(p,'nvidia','cu13','lib'))), ''))")
if [[ ${1:-} == --print-env ]]; then
  echo "export PYTHONPATH=$root/$b/stage LD_LIBRARY_PATH=$nvidia_lib"
  exit 0
fi
. "$root/scripts/cache-env.sh"
export PATH=$PATH:/usr/local/cuda/bin
if [[ ! -f $b/build.ninja ]]; then
  cmake -S "$root" -B "$b" -G Ninja -DPython_EXECUTABLE="$py" \
    -DCAFFE_XENT_CUDA="${CAFFE_XENT_CUDA:-AUTO}" -DCMAKE_BUILD_TYPE=Release > "$b.configure.log" 2>&1 ||
    { tail -30 "$b.configure.log"; exit 1; }
fi
cmake --build "$b" -- "$@"
cmake --install "$b" --prefix "$b/stage" > /dev/null

#!/usr/bin/env bash
# build-pristine.sh [BUILD_DIR]
#
# The benchmarks' baseline: upstream Caffe as Debian ships it plus only the
# toolchain patches (patches/0*), without our layers or proto changes,
# CPU-only, staged as an importable tree in BUILD_DIR/stage (default
# build/pristine). Shares the download and ccache caches with the main
# build; a second run rebuilds nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
b=${1:-$root/build/pristine}
. "$root/scripts/cache-env.sh"
if [[ ! -f $b/build.ninja ]]; then
  mkdir -p "$b"
  cmake -S "$root" -B "$b" -G Ninja -DPython_EXECUTABLE="$root/.venv/bin/python" \
    -DCAFFE_XENT_PRISTINE=ON -DCAFFE_XENT_CUDA=OFF -DCAFFE_XENT_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=Release > "$b/configure.log" 2>&1 || { tail -30 "$b/configure.log"; exit 1; }
fi
cmake --build "$b" > "$b/build.log" 2>&1 || { tail -40 "$b/build.log"; exit 1; }
cmake --install "$b" --prefix "$b/stage" > /dev/null
echo "$b/stage"

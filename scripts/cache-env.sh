#!/usr/bin/env bash
# cache-env.sh: where caffe-xent keeps its caches, defined once.
#
#   CAFFE_XENT_CACHE  ${XDG_CACHE_HOME:-~/.cache}/caffe-xent: upstream/ (the
#                     verified upstream downloads), ccache/, busybox-static/
#                     (the GPU bundle's, scripts/gpu-bundle/make_bundle.py)
#   CCACHE_DIR        $CAFFE_XENT_CACHE/ccache, unless already set
#   CCACHE_BASEDIR    this checkout's root: build dirs of one checkout, and
#                     checkouts at other paths, share hits
#   CCACHE_MAXSIZE    5G, unless already set
#
# Sourced (`. scripts/cache-env.sh`, by the scripts) it sets them, the CCACHE_*
# ones exported. Run with names (`scripts/cache-env.sh CCACHE_DIR`, by the
# Makefile) it prints their values, one a line.
CAFFE_XENT_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/caffe-xent
export CCACHE_DIR=${CCACHE_DIR:-$CAFFE_XENT_CACHE/ccache}
export CCACHE_BASEDIR
CCACHE_BASEDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  for name in "$@"; do
    printf '%s\n' "${!name}"
  done
fi

#!/usr/bin/env bash
# Fetch Debian's source package of Caffe, verify it against pinned SHA-256
# sums and print the directory that holds the verified files.
#
# - The mirror is taken from the machine's own Debian apt sources; the only
#   thing this script writes is a project-local apt configuration (one
#   deb-src line for bullseye main) under the cache directory. The system's
#   apt sources are never touched.
# - Downloads are cached in ${XDG_CACHE_HOME:-~/.cache}/caffe-xent/upstream
#   (scripts/cache-env.sh);
#   a second run downloads nothing.
# - Offline: set CAFFE_XENT_UPSTREAM_DIR to a directory that already holds
#   the two tarballs below; they are verified and used as they are.
set -euo pipefail

readonly PACKAGE=caffe
readonly VERSION=1.0.0+git20180821.99bd997-8
readonly ORIG=caffe_1.0.0+git20180821.99bd997.orig.tar.gz
readonly ORIG_SHA256=e0eb3f06794f7402c77b7dec8e8480273ee1a1bb192e9122b621a69d4147ad0c
readonly DEBIAN=caffe_1.0.0+git20180821.99bd997-8.debian.tar.xz
readonly DEBIAN_SHA256=07cf073227494a6b07234e40cb5df91db566616593eef9baafdc4d06ad159f21

log() { echo "fetch-upstream: $*" >&2; }
die() { log "error: $*"; exit 1; }

verify() {  # verify DIR: both tarballs present with the pinned sums
  local dir=$1
  [[ -f $dir/$ORIG && -f $dir/$DEBIAN ]] || return 1
  (cd "$dir" && printf '%s  %s\n%s  %s\n' "$ORIG_SHA256" "$ORIG" \
      "$DEBIAN_SHA256" "$DEBIAN" | sha256sum --check --quiet --strict -) >&2
}

if [[ -n ${CAFFE_XENT_UPSTREAM_DIR:-} ]]; then
  verify "$CAFFE_XENT_UPSTREAM_DIR" ||
    die "CAFFE_XENT_UPSTREAM_DIR=$CAFFE_XENT_UPSTREAM_DIR must hold $ORIG and $DEBIAN with the pinned SHA-256 sums"
  echo "$CAFFE_XENT_UPSTREAM_DIR"
  exit 0
fi

. "$(dirname "${BASH_SOURCE[0]}")/cache-env.sh"
cache=$CAFFE_XENT_CACHE/upstream
mkdir -p "$cache"
if verify "$cache" 2>/dev/null; then
  echo "$cache"
  exit 0
fi

# The Debian mirror this machine already uses: the first URI of a Debian
# (not security) source in deb822 or one-line format.
mirror_from_system() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    awk '$1 == "deb" || $1 == "deb-src" {
           for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' "$f"
  done
}
mirror=$(mirror_from_system | grep -E '/debian/?$' | grep -v -- '-security' | head -n 1 || true)
[[ -n $mirror ]] || die "no Debian mirror found in /etc/apt/sources.list*; set CAFFE_XENT_UPSTREAM_DIR to already-downloaded files"

apt_dir=$cache/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/sources.list.d"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
signed_by=""
[[ -f $keyring ]] && signed_by="[signed-by=$keyring] "
echo "deb-src ${signed_by}${mirror%/} bullseye main" > "$apt_dir/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list"
  -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir"
  -o "Dir::Cache::archives=$apt_dir/archives"
  -o "APT::Sandbox::User=root"
  -o "Debug::NoLocking=1"
)
log "fetching $PACKAGE $VERSION source through a project-local apt configuration"
apt-get "${apt_opts[@]}" -qq update >&2 || die "apt-get update of the project-local deb-src list failed"
(cd "$cache" && apt-get "${apt_opts[@]}" -qq source --download-only "$PACKAGE=$VERSION" >&2) ||
  die "apt-get source --download-only $PACKAGE=$VERSION failed"
verify "$cache" || die "downloaded files do not match the pinned SHA-256 sums"
echo "$cache"

#!/usr/bin/env bash
# prepare-upstream.sh DOWNLOAD_DIR DEST PATCH...
#
# Unpack Debian's caffe source into DEST: the upstream tarball, then Debian's
# patch series (debian/patches/series, in order), then each PATCH given, in
# order. Work happens in a temporary directory that replaces DEST only when
# every patch applied, so a failed run never leaves a half-patched tree.
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: $0 DOWNLOAD_DIR DEST [PATCH...]" >&2; exit 2; }
download=$1 dest=$2
shift 2

work=$(mktemp -d "${dest%/}.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -xzf "$download"/caffe_*.orig.tar.gz -C "$work"
mkdir -p "$work/debian"
tar -xJf "$download"/caffe_*.debian.tar.xz -C "$work"

apply() {  # apply PATCH: fail loudly on fuzz or rejects
  if ! patch -d "$work" -p1 --forward --batch --no-backup-if-mismatch -F0 -s < "$1"; then
    echo "prepare-upstream: patch does not apply: $1" >&2
    exit 1
  fi
}
while read -r name; do
  [[ -z $name || $name == \#* ]] && continue
  apply "$work/debian/patches/$name"
done < "$work/debian/patches/series"
for p in "$@"; do apply "$p"; done

rm -rf "$dest"
mv "$work" "$dest"
trap - EXIT

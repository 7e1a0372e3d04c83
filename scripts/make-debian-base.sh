#!/usr/bin/env bash
# Builds a realistic base image for the tests, once per machine: Debian bookworm `minbase` made by
# debootstrap from the mirror apt already uses, packed by umoci as an OCI layout (owners kept).
# Usage: scripts/make-debian-base.sh [LAYOUT_DIR]   (default /var/cache/hako-test/debian-bookworm)
# The layout's tag is `bookworm`. Needs root, debootstrap and umoci (scripts/install-deps.sh).
set -euo pipefail
out=${1:-/var/cache/hako-test/debian-bookworm}
if [[ -f "$out/index.json" ]] && grep -q '"bookworm"' "$out/index.json"; then
  echo "debian base: $out (already built)"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "debian base: skipped (debootstrap needs root); the tests that need it will say so"
  exit 0
fi
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}
work=$(mktemp -d /var/tmp/hako-debian.XXXXXX)
trap 'rm -rf "$work"' EXIT
layout="$work/layout"
umoci init --layout "$layout"
umoci new --image "$layout:bookworm"
umoci unpack --image "$layout:bookworm" "$work/bundle" >/dev/null
echo "debian base: debootstrap --variant=minbase bookworm from $mirror (about a minute)"
debootstrap --variant=minbase bookworm "$work/bundle/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log"
  exit 1
}
# Package lists and caches are not part of an image.
rm -rf "$work/bundle/rootfs/var/cache/apt/archives/"*.deb "$work/bundle/rootfs/var/lib/apt/lists/"*
umoci repack --image "$layout:bookworm" "$work/bundle"
umoci gc --layout "$layout"
mkdir -p "$(dirname "$out")"
# Readable by the unprivileged user the rootless tests run as.
chmod -R a+rX "$layout"
rm -rf "$out.tmp" && mv "$layout" "$out.tmp" && rm -rf "$out" && mv "$out.tmp" "$out"
echo "debian base: $out ($(du -sh "$out" | cut -f1))"

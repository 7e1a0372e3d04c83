#!/usr/bin/env bash
# Streaming benchmark: COPY a 1 GiB incompressible file into an image and export it as an OCI
# tar and a docker archive, measuring wall time and peak RSS (GNU time). The goal is a flat
# memory profile: peak RSS must not grow with the layer size (target < 64 MB).
# Usage: scripts/bench-stream.sh [SIZE_MIB]   (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}
cargo build --release --locked --quiet
work=$(mktemp -d "${TMPDIR:-/tmp}/hako-bench-stream.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ctx"
head -c "$((size * 1024 * 1024))" /dev/urandom > "$work/ctx/big"
printf 'FROM scratch\nCOPY big /big\n' > "$work/ctx/Dockerfile"
hako=target/release/hako
measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }
  read -r secs kib < "$work/time"
  printf '%-40s %8.2f s  %8.1f MiB peak RSS  %7.1f MiB/s\n' "$label" "$secs" "$(echo "$kib/1024" | bc -l)" \
    "$(echo "$size/$secs" | bc -l)"
}
echo "layer: ${size} MiB of random data (gzip cannot shrink it)"
measure "build + gzip layer + oci tar" $hako build --root "$work/store" -o "type=oci,dest=$work/img.tar" "$work/ctx"
measure "build + zstd layer + oci tar" $hako build --root "$work/store2" -o "type=oci,dest=$work/img2.tar,compression=zstd" "$work/ctx"
measure "build + docker archive" $hako build --root "$work/store" -o "type=docker,dest=$work/img.docker.tar" "$work/ctx"
measure "build + oci layout dir (hard links)" $hako build --root "$work/store" -o "type=oci,dest=$work/layout,tar=false" "$work/ctx"
if command -v docker-registry >/dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$work/registry" "$port" > "$work/registry.yml"
  docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
  reg_pid=$!
  trap 'kill $reg_pid 2>/dev/null; rm -rf "$work"' EXIT
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
  measure "build + push to a local registry" $hako build --root "$work/store" -t "127.0.0.1:$port/bench/big:1" --push "$work/ctx"
else
  echo "(push not measured: docker-registry is not installed)"
fi
echo "reference points on this machine:"
measure "  sha256sum of the file" sha256sum "$work/ctx/big"
measure "  gzip -6 of the file" sh -c "gzip -6 -c '$work/ctx/big' >/dev/null"

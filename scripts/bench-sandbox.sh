#!/usr/bin/env bash
# Per-step sandbox overhead: `/bin/true` run N times (default 100) on the busybox testdata image,
# as root and rootless (as the user scripts/test-user.sh creates), release build. Prints the
# median of create → start → wait → delete, and of the whole step (overlay mount, stubs, unmount).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}
cargo build --release --locked --quiet
work=$(mktemp -d /tmp/hako-bench-sandbox.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp target/release/hako "$work/hako"
cp -r testdata/busybox "$work/busybox"
if [[ $(id -u) -eq 0 ]]; then
  "$work/hako" debug sandbox-bench -n "$runs" --root "$work/store-root" "$work/busybox"
  if id hakotest >/dev/null 2>&1; then
    chown -R hakotest:hakotest "$work"
    runuser -u hakotest -- "$work/hako" debug sandbox-bench -n "$runs" --root "$work/store-rootless" "$work/busybox"
  else
    echo "rootless: skipped (no user hakotest; run scripts/test-user.sh)"
  fi
else
  "$work/hako" debug sandbox-bench -n "$runs" --root "$work/store" "$work/busybox"
fi

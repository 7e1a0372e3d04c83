#!/usr/bin/env bash
# Builds hako as one static executable (musl, static-pie) that runs in any Linux container, with
# no libraries from the image it runs in: target/x86_64-unknown-linux-musl/release/hako.
# Needs rustup's musl target and Debian's musl-tools (musl-gcc, for the C in zstd); both are
# installed when missing (the second as root).
#   scripts/build-static.sh [extra cargo args]
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi
if ! command -v musl-gcc >/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "build-static: musl-gcc is missing: sudo apt-get install musl-tools" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl-tools >/dev/null
fi
# musl targets link statically by default (crt-static); the C parts are built with musl-gcc.
CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target "$target" "$@"
bin=target/$target/release/hako
if readelf -d "$bin" | grep -q NEEDED; then
  echo "build-static: $bin is dynamically linked" >&2
  exit 1
fi
echo "$bin"

#!/usr/bin/env bash
# Builds hako and runs a real, offline build of examples/hello: the busybox base comes from
# testdata/ as an OCI layout, the result is written as an OCI image tar (and its digest printed).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
out=${1:-target/example}
mkdir -p "$out"
target/release/hako build --progress=plain \
  --root "$out/store" \
  --build-context busybox=oci-layout://testdata/busybox \
  -t hello:latest \
  examples/hello
target/release/hako build --progress=plain --root "$out/store" \
  --build-context busybox=oci-layout://testdata/busybox \
  -t hello:latest -o "type=oci,dest=$out/hello.oci.tar" examples/hello 2>/dev/null
echo "wrote $out/hello.oci.tar (inspect with: skopeo inspect oci-archive:$out/hello.oci.tar:latest)" >&2

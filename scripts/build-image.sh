#!/usr/bin/env bash
# Builds hako's own image (dist/Dockerfile) with hako itself, offline, into an OCI layout:
#   scripts/build-image.sh DEST_LAYOUT [TAG]
# The static binary comes from scripts/build-static.sh (built when missing); the base is the
# busybox layout in testdata/; the CA bundle is the machine's (/etc/ssl/certs/ca-certificates.crt).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:?usage: scripts/build-image.sh DEST_LAYOUT [TAG]}
tag=${2:-latest}
bin=$repo/target/x86_64-unknown-linux-musl/release/hako
[[ -x $bin ]] || "$repo/scripts/build-static.sh" >/dev/null
ca=/etc/ssl/certs/ca-certificates.crt
[[ -f $ca ]] || { echo "build-image: $ca is missing (Debian: apt-get install ca-certificates)" >&2; exit 1; }
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$repo/dist/Dockerfile" "$bin" "$ca" "$ctx/"
"$bin" build --progress=plain -t "hako:$tag" \
  --build-context "busybox=oci-layout://$repo/testdata/busybox" \
  -o "type=oci,dest=$dest,tar=false,name=hako:$tag" "$ctx"

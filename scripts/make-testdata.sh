#!/usr/bin/env bash
# Regenerates testdata/busybox (a tiny, reproducible OCI image layout) from Debian's busybox-static.
# Needs: Debian amd64, apt-get (with package lists: run `apt-get update` once), dpkg-deb, python3.
# See scripts/make-testdata.py and testdata/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/make-testdata.py "$@"

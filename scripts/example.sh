#!/usr/bin/env bash
# Builds hako and runs it on examples/hello. Today hako plans builds (`--dry-run`); running the
# build itself (with the base image from testdata/) arrives with image building.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
exec target/release/hako build --dry-run --progress=plain -t hello:latest examples/hello

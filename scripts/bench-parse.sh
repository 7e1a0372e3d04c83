#!/usr/bin/env bash
# Frontend benchmark: parse/type/plan a generated 10,000-line Dockerfile (release build, medians).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked --bench parse 2>/dev/null

#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: installs what the tests need (Debian, as root),
# then formatting, lints and every test. Needs ../shared next to the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
mkdir -p target
echo "== cargo test"
cargo test --locked 2>&1 | tee target/test-output.txt
# One closing line for CI: totals over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' target/test-output.txt

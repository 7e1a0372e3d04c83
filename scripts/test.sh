#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: installs what the tests need (Debian, as root),
# then formatting, lints and every test. Checks that read ../shared (conformance data, CI
# profiles) skip with a printed reason when it is not next to the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/test-user.sh
scripts/make-debian-base.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
# The static binary: the suite checks that hako's own image (dist/Dockerfile) built from it runs in a
# locked-down container with no host libraries.
echo "== static build (musl)"
scripts/build-static.sh
mkdir -p target/tmp
rm -f target/tmp/skipped-tests.txt
echo "== cargo test"
cargo test --locked 2>&1 | tee target/test-output.txt
# Checks that skipped (a missing tool, a kernel feature) say so here, with their reasons.
skipped=0
if [[ -s target/tmp/skipped-tests.txt ]]; then
  skipped=$(wc -l < target/tmp/skipped-tests.txt)
  echo "== skipped checks ($skipped)"
  sed 's/^/skipped: /' target/tmp/skipped-tests.txt
fi
# One closing line for CI: totals over every test binary (a skipped check is inside a passing test).
awk -v s="$skipped" '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, i + s }' target/test-output.txt

#!/usr/bin/env bash
# What ptrace isolation costs (issue 12): per-step overhead from `hako debug sandbox-bench`, and
# the run time of a CPU-heavy, a pipe-heavy, a file-syscall-heavy and an exec-heavy RUN step,
# each timed inside the step (/proc/uptime, 10 ms resolution) with --no-cache, under rootless (or
# root) isolation and under ptrace, release build, busybox testdata base. Needs a quiet machine.
#   scripts/bench-ptrace.sh [runs per step, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo build --release --locked --quiet
work=$(mktemp -d /tmp/hako-bench-ptrace.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp target/release/hako "$work/hako"
cp -r testdata/busybox "$work/busybox"
declare -A steps=(
  [cpu]='i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'
  [pipe]='head -c 400000000 /dev/zero | sha256sum >/dev/null'
  [files]='mkdir /t && cd /t && i=0; while [ $i -lt 3000 ]; do : > f$i; i=$((i+1)); done; ls -l >/dev/null; cd / && rm -rf /t'
  [exec]='i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done'
)
as_user=()
user_mode=root
if [[ $(id -u) -eq 0 ]] && id hakotest >/dev/null 2>&1; then
  chown -R hakotest:hakotest "$work"
  as_user=(runuser -u hakotest --)
  user_mode=rootless
fi
echo "per-step overhead (create, run /bin/true, clean up; median of 50):"
for mode in "$user_mode" ptrace; do
  "${as_user[@]}" "$work/hako" debug sandbox-bench -n 50 --isolation "$mode" --root "$work/store-$mode" "$work/busybox" |
    sed "s/^/  /"
done
echo "step run time in seconds (median of $runs, timed inside the step):"
printf '  %-6s %10s %10s %8s\n' step "$user_mode" ptrace ratio
for name in cpu pipe files exec; do
  mkdir -p "$work/ctx-$name"
  printf 'FROM busybox\nRUN t0=$(cut -d" " -f1 /proc/uptime); %s; t1=$(cut -d" " -f1 /proc/uptime); echo "took $t0 $t1"\n' \
    "${steps[$name]}" > "$work/ctx-$name/Dockerfile"
  [[ ${#as_user[@]} -gt 0 ]] && chown -R hakotest:hakotest "$work/ctx-$name"
  declare -A med=()
  for mode in "$user_mode" ptrace; do
    times=()
    for _ in $(seq "$runs"); do
      t=$("${as_user[@]}" "$work/hako" build --no-cache --progress=plain --isolation "$mode" --root "$work/store-$mode" \
        --build-context "busybox=oci-layout://$work/busybox" "$work/ctx-$name" 2>&1 |
        awk '/ took / {printf "%.2f", $(NF) - $(NF-1)}')
      times+=("$t")
    done
    med[$mode]=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
  done
  printf '  %-6s %10s %10s %7.1fx\n' "$name" "${med[$user_mode]}" "${med[ptrace]}" \
    "$(awk -v a="${med[$user_mode]}" -v b="${med[ptrace]}" 'BEGIN { print (a > 0 ? b / a : 0) }')"
done

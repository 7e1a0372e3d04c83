#!/usr/bin/env bash
# Benchmarks hako side by side with buildah and BuildKit on the workloads in shared/bench (see its
# README.md), in one run, alternating builders. Run by hand as root; never by CI.
#
# What it measures, per workload and scenario, for each builder:
#   cold    a build from fresh state (hako: a new --root, the old one moved aside and removed between
#           workloads, see retire(); buildah: `rmi -a -f`, cache mounts removed;
#           BuildKit: `docker builder prune -af` and its images removed). Includes getting the base.
#   noop    the same build again on the state the cold build left (a step cache makes every step a hit).
#   change  after one input changed (copy-many: a file in src/; deps-then-src: src/mod0.txt;
#           cache-mount: version.txt; apt-python: src/main.py), same state.
#   export  hako only, where cheap: the build again with `-o type=oci,dest=FILE.tar`.
#   push    big-layer: the image the cold build left, pushed to the local registry, gzip, into a new
#           repository each run: `hako push`, `buildah push`, and for BuildKit `docker push` (dockerd 26
#           pushes what its BuildKit stored, compressing on the fly). The blobs a push left are removed
#           from the registry's storage afterwards (base images' kept), so runs do not fill the disk.
#   cold-oci   big-layer: hako's cold build writing a gzip OCI archive (`-o type=oci,dest=FILE.tar`).
#           The peers' cells in its row are their `cold` builds into their own (uncompressed) stores:
#           the baseline issue 13 sets (hako's archive against a peer's plain build).
#   cold-zstd  big-layer: the same with `compression=zstd`; hako only (dockerd's BuildKit writes no OCI
#           archive; issue 13 sets an absolute target). The archives are removed after each run.
# Each cell is the median of BENCH_RUNS runs of the wall time of the builder's command, and the median
# of its peak RSS: for hako, the largest of its own processes (builder and sandbox helpers, each
# saying its VmHWM at exit under HAKO_REPORT_RSS), RUN steps excluded; for buildah GNU time's %M,
# the largest single process in the command's tree, RUN step processes included (apt-get makes
# apt-python's ~96 MiB); for BuildKit, which runs inside dockerd, dockerd's VmHWM over the build
# (reset through clear_refs), RUN steps excluded.
# Within a scenario the builders take turns, each run starting with a different one.
#
# How to read the table: seconds per builder ("fail" = the build failed, its log is printed; "skip" =
# not run, e.g. after a failed cold build; "-" = not applicable); hako/buildah and hako/buildkit are
# ratios of the medians (below 1 means hako is faster). Every run's peak RSS is logged as it ends and
# kept in results.tsv; after the table come hako's largest peak RSS per workload and issue 13's targets,
# checked against the medians. The "physical limits" lines are floors on this
# machine: hashing copy-many's context (for any builder that checksums its inputs) and, with big-layer,
# writing and compressing its 1 GiB (BuildKit in dockerd's own image store, buildah and hako keep
# layers uncompressed until a push or an archive: big-layer's push, cold-oci and cold-zstd pay it),
# and the RUN commands of multistage and big-layer run alone, chrooted into the base with no
# sandbox (a build of them can only be slower: issue 13's ratios for those two cannot go below
# floor / peer's time).
#
# Options (environment):
#   BENCH_RUNS=N          runs per cell (default 3)
#   BENCH_ONLY=a,b        workloads (default all: copy-many,deps-then-src,multistage,cache-mount,
#                         big-layer,apt-python)
#   BENCH_SCENARIOS=a,b   scenarios (default each workload's all: cold, noop, change, export, and
#                         big-layer's push, cold-oci, cold-zstd); one that starts from the cold build's
#                         state or compares with the peers' cold builds (noop, change, export, push,
#                         cold-oci) brings cold along. E.g. BENCH_ONLY=big-layer BENCH_SCENARIOS=push
#   BENCH_PEERS=none|buildah|buildkit|all   peers to compare with (default: whichever is installed or
#                         started; scripts/bench-peers.sh installs and starts them; daemons this script
#                         starts are stopped when it exits)
#   HAKO=/path/to/hako    (default target/release/hako, built with `cargo build --release` if missing)
#   BENCH_USER=hakotest   run hako rootless as that user (scripts/test-user.sh creates hakotest)
#   BENCH_SETTLE=SECONDS  before each run of a cold scenario, make every builder's fresh state
#                         first, then wait this long (default 0: each builder's just before its
#                         build)
#   BENCH_DROP_CACHES=0   do not drop the kernel's clean caches before each cold build (default 1:
#                         sync, drop them, read the workload's context, bases and the builders'
#                         programs back in). On ext4 without a journal (this machine's root) a new
#                         inode skips every free one deleted within 60 s — 360 s while the
#                         inode-table block holding it is dirty, which the new inodes themselves
#                         make it — as long as that block is cached: a build right after a prune
#                         of thousands of files (its own store, or a peer's) created its files
#                         3-8x slower, more with each run (copy-many's RUN 0.7 s, then 2.7, 3.7,
#                         5.5 s in a row; a minute's wait did not help). Dropped, the blocks are
#                         not cached and the check passes at once (0.6-0.9 s): the builders are
#                         measured, not the file system's memory of the previous prune
#   BENCH_WORK=DIR        scratch directory (default /var/tmp/hako-bench/run; emptied first)
#   BENCH_SHARED=DIR      the workloads (default ../shared/bench next to the repository)
#   BENCH_KEEP=1          keep the builders' stores and outputs in BENCH_WORK after the run
# apt-python needs Debian's mirror inside RUN and a Debian base (scripts/make-debian-base.sh, run here).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${BENCH_RUNS:-3}
all_workloads=copy-many,deps-then-src,multistage,cache-mount,big-layer,apt-python
IFS=, read -r -a workloads <<<"${BENCH_ONLY:-$all_workloads}"
all_scenarios=cold,noop,change,export,push,cold-oci,cold-zstd
scenarios_only=${BENCH_SCENARIOS:-}
work=${BENCH_WORK:-/var/tmp/hako-bench/run}
shared=${BENCH_SHARED:-$repo/../shared/bench}
[[ -d $shared ]] || shared=/work/shared/bench
bench_user=${BENCH_USER:-}
settle=${BENCH_SETTLE:-0}
drop=${BENCH_DROP_CACHES:-1}
declare -A prepared=()
peers_sh=$repo/scripts/bench-peers.sh
debian_layout=/var/cache/hako-test/debian-bookworm

log() { echo "bench: $*" >&2; }
die() {
  log "$*"
  exit 1
}

[[ $(id -u) -eq 0 ]] || die "run as root (the peers need it; BENCH_USER=hakotest benchmarks hako rootless)"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive number, not '$runs'"
[[ $settle =~ ^[0-9]+$ ]] || die "BENCH_SETTLE must be a number of seconds, not '$settle'"
[[ $drop == 0 || $drop == 1 ]] || die "BENCH_DROP_CACHES must be 0 or 1, not '$drop'"
((drop == 0 || EUID == 0)) || die "BENCH_DROP_CACHES=1 needs root (or set BENCH_DROP_CACHES=0)"
[[ -x $shared/make-contexts.sh ]] || die "no workloads at $shared (set BENCH_SHARED)"
for w in "${workloads[@]}"; do
  [[ ,$all_workloads, == *,$w,* ]] || die "unknown workload '$w' (known: $all_workloads)"
done
IFS=, read -r -a chosen_scenarios <<<"$scenarios_only"
for s in "${chosen_scenarios[@]}"; do
  [[ ,$all_scenarios, == *,$s,* ]] || die "unknown scenario '$s' (known: $all_scenarios)"
done

# Whether SCENARIO starts from the state the cold build left.
needs_cold() { [[ $1 == noop || $1 == change || $1 == export || $1 == push ]]; }

# The scenarios of WORKLOAD that run, in order: its own, filtered by BENCH_SCENARIOS (cold added when
# a chosen one needs it: its state, or the peers' cold builds as cold-oci's baseline).
scenarios_of() {
  local all s want_cold=0
  local -a out=()
  case $1 in
  multistage) all="cold noop export" ;;
  big-layer) all="cold noop push cold-oci cold-zstd" ;;
  apt-python) all="cold noop change" ;;
  *) all="cold noop change export" ;;
  esac
  if [[ -z $scenarios_only ]]; then
    echo "$all"
    return
  fi
  for s in $all; do
    [[ ,$scenarios_only, == *,$s,* ]] || continue
    out+=("$s")
    if needs_cold "$s" || [[ $s == cold-oci ]]; then want_cold=1; fi
  done
  if ((want_cold)) && [[ ,$scenarios_only, != *,cold,* ]]; then out=(cold "${out[@]}"); fi
  echo "${out[*]}"
}

# Whether BUILDER runs in SCENARIO: the archive scenarios are hako's alone.
measured_in() { [[ $2 == hako || ($1 != export && $1 != cold-oci && $1 != cold-zstd) ]]; }

mapfile -t workloads < <(for w in "${workloads[@]}"; do [[ -z $(scenarios_of "$w") ]] || echo "$w"; done)
((${#workloads[@]} > 0)) || die "no workload of BENCH_ONLY has a scenario of BENCH_SCENARIOS"
if [[ -n $bench_user ]] && ! id "$bench_user" >/dev/null 2>&1; then
  die "no user $bench_user (scripts/test-user.sh creates hakotest)"
fi
if [[ -d $work && -n $(ls -A "$work") && ! -f $work/.hako-bench && ! -f $work/results.tsv ]]; then
  die "BENCH_WORK=$work is neither empty nor an earlier run's directory: not emptying it"
fi
if [[ ! -x /usr/bin/time ]]; then
  log "installing GNU time"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi

# --- hako ---------------------------------------------------------------------------------------
hako_src=${HAKO:-$repo/target/release/hako}
if [[ ! -x $hako_src ]]; then
  [[ -z ${HAKO:-} ]] || die "HAKO=$HAKO is not an executable"
  log "building hako (cargo build --release)"
  (cd "$repo" && cargo build --release --quiet)
fi

# --- peers --------------------------------------------------------------------------------------
case ${BENCH_PEERS:-auto} in
none) peers=() ;;
buildah | buildkit) peers=("$BENCH_PEERS") ;;
all) peers=(buildah buildkit) ;;
auto)
  peers=()
  command -v buildah >/dev/null && peers+=(buildah)
  if grep -q '^DOCKER_HOST=' <<<"$("$peers_sh" env)" || [[ -x /opt/hako-bench/trixie/usr/sbin/dockerd ]]; then
    peers+=(buildkit)
  fi
  ;;
*) die "BENCH_PEERS must be none, buildah, buildkit or all" ;;
esac

started=() # the daemons this script started, stopped on exit
cleanup() {
  local rc=$?
  if ((${#started[@]} > 0)); then
    log "stopping the daemons this run started: ${started[*]}"
    "$peers_sh" stop "${started[@]}" || true
  fi
  if [[ -z ${BENCH_KEEP:-} && -d $work ]]; then
    if [[ -d $work/buildah/root ]]; then
      buildah --root "$work/buildah/root" --runroot "$work/buildah/runroot" rmi -a -f >/dev/null 2>&1 || true
    fi
    rm -rf "$work/hako" "$work/buildah" "$work/out" "$work/trash"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The registry: the peers pull their bases from it, and the push scenario pushes to it (hako too).
needs_registry=0
((${#peers[@]} == 0)) || needs_registry=1
for w in "${workloads[@]}"; do [[ " $(scenarios_of "$w") " != *" push "* ]] || needs_registry=1; done
if ((needs_registry)); then
  before=$("$peers_sh" env)
  # Listed before starting, so that a daemon which half started is stopped too.
  grep -q '^REGISTRY=' <<<"$before" || started+=(registry)
  "$peers_sh" start registry
  up=()
  for p in "${peers[@]}"; do
    if [[ $p == buildkit ]] && ! grep -q '^DOCKER_HOST=' <<<"$before"; then started+=(buildkit); fi
    if "$peers_sh" start "$p"; then
      up+=("$p")
    else
      log "$p did not start (see above): benchmarking without it"
    fi
  done
  peers=("${up[@]}")
  env_lines=$("$peers_sh" env)
  REGISTRY=$(sed -n 's/^REGISTRY=//p' <<<"$env_lines")
  REGISTRY_DATA=$(sed -n 's/^REGISTRY_DATA=//p' <<<"$env_lines")
  DOCKER_CLI=$(sed -n 's/^DOCKER_CLI=//p' <<<"$env_lines")
  DOCKERD_PID=$(sed -n 's/^DOCKERD_PID=//p' <<<"$env_lines")
  DOCKER_HOST=$(sed -n 's/^DOCKER_HOST=//p' <<<"$env_lines")
  DOCKER_CONFIG=$(sed -n 's/^DOCKER_CONFIG=//p' <<<"$env_lines")
  export DOCKER_HOST DOCKER_CONFIG
  # buildah (containers/image) reads $DOCKER_CONFIG/config.json as its auth file and refuses a
  # push when the directory has none; the docker CLI is fine with an empty one.
  if [[ -n $DOCKER_CONFIG && ! -f $DOCKER_CONFIG/config.json ]]; then
    mkdir -p "$DOCKER_CONFIG" && echo '{}' > "$DOCKER_CONFIG/config.json"
  fi
fi
builders=(hako "${peers[@]}")

# --- scratch space, contexts, bases -------------------------------------------------------------
rm -rf "$work"
mkdir -p "$work/ctx" "$work/logs" "$work/hako" "$work/out" "$work/bases" "$work/bin"
touch "$work/.hako-bench"
chmod 755 "$work" "$work/ctx" "$work/bases" "$work/bin"
results=$work/results.tsv
: >"$results"
cp "$hako_src" "$work/bin/hako"
hako=$work/bin/hako
"$shared/make-contexts.sh" "$work/ctx" >/dev/null
# apt-python is not generated: its whole context is in shared/bench.
cp -r "$shared/apt-python" "$work/ctx/"
chmod -R a+rX "$work/ctx"
cp -r "$repo/testdata/busybox" "$work/bases/busybox"
chmod -R a+rX "$work/bases"
if [[ -n $bench_user ]]; then
  chown "$bench_user:" "$work/hako" "$work/out"
fi

needs_debian=0
for w in "${workloads[@]}"; do [[ $w == apt-python ]] && needs_debian=1; done
if ((needs_debian)); then
  if ! command -v debootstrap >/dev/null || ! command -v umoci >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap umoci >/dev/null
  fi
  if ! "$repo/scripts/make-debian-base.sh" "$debian_layout" >&2 || [[ ! -f $debian_layout/index.json ]]; then
    log "no Debian base at $debian_layout (see above): skipping apt-python"
    needs_debian=0
    mapfile -t workloads < <(printf '%s\n' "${workloads[@]}" | grep -vx apt-python)
  fi
fi
if ((${#peers[@]} > 0)); then
  skopeo copy -q --dest-tls-verify=false "oci:$work/bases/busybox:latest" \
    "docker://$REGISTRY/base/busybox:latest"
  if ((needs_debian)); then
    skopeo copy -q --dest-tls-verify=false "oci:$debian_layout:bookworm" "docker://$REGISTRY/base/debian:bookworm"
  fi
fi

# --- one build, measured ------------------------------------------------------------------------
# hako_base_args WORKLOAD / peer_base WORKLOAD: how each builder gets the workload's base image.
hako_base_args() {
  if [[ $1 == apt-python ]]; then
    echo "--build-arg BASE=debian --build-context debian=oci-layout://$debian_layout:bookworm"
  else
    echo "--build-arg BASE=busybox --build-context busybox=oci-layout://$work/bases/busybox:latest"
  fi
}
peer_base() {
  if [[ $1 == apt-python ]]; then echo "$REGISTRY/base/debian:bookworm"; else echo "$REGISTRY/base/busybox:latest"; fi
}

# measure LOG -- COMMAND...: runs COMMAND, its output into LOG; sets $secs and $rss_kb.
secs=
rss_kb=
measure() {
  local logf=$1 t0 t1 rc=0
  shift 2
  # Untimed: the disk starts idle. Without it a build pays for the writeback of what the
  # builder before it left dirty (buildah leaves gigabytes on big-layer), and any fsync or
  # syncfs it makes waits behind that, which measures the order of the runs.
  sync
  t0=$(date +%s%N)
  /usr/bin/time -f %M -o "$logf.rss" "$@" >"$logf" 2>&1 || rc=$?
  t1=$(date +%s%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  rss_kb=$(tail -1 "$logf.rss")
  return "$rc"
}

# retire DIR: moves a store out of the way for a cold build, to be removed between workloads
# (empty_trash): removing thousands of files just before a build makes the build's own file
# creation slow (see BENCH_DROP_CACHES; the peers' prunes still delete, hence drop_caches too).
# Trash past 4 GiB (big-layer: few, big files) is removed at once.
retire() {
  [[ -e $1 ]] || return 0
  mkdir -p "$work/trash"
  mv "$1" "$work/trash/$(date +%s%N)"
  if (($(du -sk "$work/trash" | cut -f1) > 4 * 1024 * 1024)); then
    empty_trash
  fi
}
empty_trash() {
  rm -rf "$work/trash"
  sync
}

# drop_caches WORKLOAD: the kernel's clean caches dropped, then what every build of WORKLOAD reads
# read back in, as a warm machine has it: the context, the bases, the builders' programs (see
# BENCH_DROP_CACHES at the top).
drop_caches() {
  ((drop)) || return 0
  sync
  echo 3 >/proc/sys/vm/drop_caches
  local -a warm=("$work/ctx/$1" "$work/bases" "$hako")
  [[ $1 != apt-python ]] || warm+=("$debian_layout")
  [[ -z ${REGISTRY_DATA:-} ]] || warm+=("$REGISTRY_DATA")
  local p
  for p in buildah runc "${DOCKER_CLI:-}"; do
    [[ -n $p ]] && p=$(command -v "$p") && warm+=("$p")
  done
  find "${warm[@]}" -type f -print0 2>/dev/null | xargs -0 cat >/dev/null 2>&1 || true
}

# prepare_cold BUILDER WORKLOAD SCENARIO: the fresh state a cold build starts from (see the top).
prepare_cold() {
  local b=$1 w=$2 s=$3
  case $b in
  hako)
    retire "$work/hako/store"
    mkdir -p "$work/hako/store"
    [[ -z $bench_user ]] || chown "$bench_user:" "$work/hako/store"
    ;;
  buildah)
    [[ $s == cold ]] || return 0
    local -a bh=(buildah --root "$work/buildah/root" --runroot "$work/buildah/runroot")
    "${bh[@]}" rm -a >/dev/null 2>&1 || true
    "${bh[@]}" rmi -a -f >/dev/null 2>&1 || true
    rm -rf "$work/buildah/tmp"
    ;;
  buildkit)
    [[ $s == cold ]] || return 0
    "$DOCKER_CLI" image rm -f "bench/$w" >/dev/null 2>&1 || true
    "$DOCKER_CLI" image prune -af >/dev/null 2>&1 || true
    "$DOCKER_CLI" builder prune -af >/dev/null 2>&1 || true
    ;;
  esac
}

# build BUILDER WORKLOAD SCENARIO RUN: one measured build; appends a line to $results. A cold
# scenario starts from prepare_cold's state, made here unless the caller made it already
# (prepared[BUILDER], see BENCH_SETTLE).
build() {
  local b=$1 w=$2 s=$3 r=$4 ctx=$work/ctx/$2 logf=$work/logs/$2.$3.$1.$4.log rc=0
  local -a cmd
  if [[ $s == cold* && -z ${prepared[$b]:-} ]]; then
    prepare_cold "$b" "$w" "$s"
  fi
  [[ $s != cold* ]] || drop_caches "$w"
  unset 'prepared[$b]'
  case $b in
  hako)
    local store=$work/hako/store
    local -a as=() # how hako runs: as the caller, or rootless as BENCH_USER
    [[ -z $bench_user ]] || as=(runuser -u "$bench_user" --)
    if [[ $s == push ]]; then
      "${as[@]}" "$hako" tag --root "$store" "bench/$w" "$(push_name hako "$r")" >"$logf" 2>&1 || rc=$?
      cmd=("$hako" push --root "$store" "$(push_name hako "$r")")
    else
      # shellcheck disable=SC2207 # the base arguments hold no spaces or globs
      cmd=("$hako" build --root "$store" --progress plain -t "bench/$w" -f "$ctx/Dockerfile" $(hako_base_args "$w"))
      case $s in
      export | cold-oci) cmd+=(-o "type=oci,dest=$work/out/$w.tar") ;;
      cold-zstd) cmd+=(-o "type=oci,dest=$work/out/$w.tar,compression=zstd") ;;
      esac
      cmd+=("$ctx")
    fi
    ((rc != 0)) || measure "$logf" -- "${as[@]}" env HAKO_REPORT_RSS=1 "${cmd[@]}" || rc=$?
    # hako's own processes, not the steps they run (see the top).
    local own
    own=$(awk '/^hako (builder|helper) peak RSS: [0-9]+ KiB$/ { if ($5 + 0 > m) m = $5 + 0 } END { print m }' "$logf")
    [[ -z $own ]] || rss_kb=$own
    [[ $s != cold-* ]] || rm -f "$work/out/$w.tar"
    ;;
  buildah)
    local -a bh=(buildah --root "$work/buildah/root" --runroot "$work/buildah/runroot")
    mkdir -p "$work/buildah/tmp"
    if [[ $s == push ]]; then
      cmd=(env TMPDIR="$work/buildah/tmp" "${bh[@]}" push --tls-verify=false "bench/$w"
        "docker://$(push_name buildah "$r")")
    else
      cmd=(env TMPDIR="$work/buildah/tmp" "${bh[@]}" build --runtime runc --layers --network host
        --tls-verify=false --build-arg "BASE=$(peer_base "$w")" -t "bench/$w" -f "$ctx/Dockerfile" "$ctx")
    fi
    measure "$logf" -- "${cmd[@]}" || rc=$?
    ;;
  buildkit)
    if [[ $s == push ]]; then
      "$DOCKER_CLI" tag "bench/$w" "$(push_name buildkit "$r")" >"$logf" 2>&1 || rc=$?
      cmd=("$DOCKER_CLI" push "$(push_name buildkit "$r")")
    else
      cmd=(env DOCKER_BUILDKIT=1 "$DOCKER_CLI" build --network host --progress plain
        --build-arg "BASE=$(peer_base "$w")" -t "bench/$w" -f "$ctx/Dockerfile" "$ctx")
    fi
    echo 5 >"/proc/$DOCKERD_PID/clear_refs"
    ((rc != 0)) || measure "$logf" -- "${cmd[@]}" || rc=$?
    rss_kb=$(awk '/^VmHWM/ { print $2 }' "/proc/$DOCKERD_PID/status")
    [[ $s != push ]] || "$DOCKER_CLI" image rm "$(push_name buildkit "$r")" >/dev/null 2>&1 || true
    ;;
  esac
  [[ $s != push ]] || forget_push "bench/push-$b"
  if ((rc != 0)); then
    log "$b $w $s (run $r) FAILED (exit $rc); the end of its log ($logf):"
    tail -15 "$logf" | sed 's/^/    /' >&2
    printf '%s\t%s\t%s\t%s\tfail\t-\n' "$w" "$s" "$b" "$r" >>"$results"
    return 1
  fi
  log "$(printf '%-14s %-7s %-9s run %d: %8.2f s %7d MiB' "$w" "$s" "$b" "$r" "$secs" $((rss_kb / 1024)))"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$s" "$b" "$r" "$secs" "$rss_kb" >>"$results"
}

# push_name BUILDER RUN: where BUILDER pushes in run RUN (a repository of its own, emptied after).
push_name() { echo "$REGISTRY/bench/push-$1:r$2"; }

# forget_push REPOSITORY: removes a measured push from the registry's storage — the repository and
# every blob it links that no base image does — so the next run pushes into a registry without them
# and runs do not fill the disk (distribution frees blobs only by an offline garbage collection). The
# registry is configured without a blob cache (bench-peers.sh), so it sees the blobs gone.
forget_push() {
  if [[ -z ${REGISTRY_DATA:-} ]]; then
    log "bench-peers.sh gives no REGISTRY_DATA: the pushed blobs of $1 stay in the registry"
    return 0
  fi
  python3 - "$REGISTRY_DATA/docker/registry/v2" "$1" <<'PY'
import os, shutil, sys
data, repo = sys.argv[1:]
def links(r):
    d = os.path.join(data, "repositories", r, "_layers", "sha256")
    return set(os.listdir(d)) if os.path.isdir(d) else set()
base = os.path.join(data, "repositories", "base")
keep = set()
for name in (os.listdir(base) if os.path.isdir(base) else []):
    keep |= links("base/" + name)
for h in links(repo) - keep:
    shutil.rmtree(os.path.join(data, "blobs", "sha256", h[:2], h), ignore_errors=True)
shutil.rmtree(os.path.join(data, "repositories", repo), ignore_errors=True)
PY
}

skip() { printf '%s\t%s\t%s\t%s\tskip\t-\n' "$1" "$2" "$3" "$4" >>"$results"; }

# change_input WORKLOAD RUN: changes the one input the "change" scenario is about.
change_input() {
  local ctx=$work/ctx/$1 f
  case $1 in
  copy-many) f=$ctx/src/d00/e0/f0.txt ;;
  deps-then-src) f=$ctx/src/mod0.txt ;;
  cache-mount) f=$ctx/version.txt ;;
  apt-python) f=$ctx/src/main.py ;;
  *) return 1 ;;
  esac
  echo "# changed by bench.sh, run $2 $(date +%s%N)" >>"$f"
}

# --- physical limits ----------------------------------------------------------------------------
physical_limits() {
  local ctx=$work/ctx/copy-many t0 t1 n size
  find "$ctx" -type f -print0 | xargs -0 cat >/dev/null # warm the page cache, as the builders see it
  t0=$(date +%s%N)
  find "$ctx" -type f -print0 | xargs -0 sha256sum >/dev/null
  t1=$(date +%s%N)
  n=$(find "$ctx" -type f | wc -l)
  size=$(du -sm "$ctx" | cut -f1)
  awk -v a="$t0" -v b="$t1" -v n="$n" -v s="$size" 'BEGIN {
    printf "physical limits: find copy-many -type f -print0 | xargs -0 sha256sum: %.2f s (%d files, %d MB)\n",
      (b - a) / 1e9, n, s }'
}

# The README's compression and disk floors for big-layer's 1 GiB of incompressible data.
compression_limits() {
  local f=$work/out/limits.bin t0 t1 t2 t3
  command -v zstd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zstd >/dev/null
  t0=$(date +%s%N)
  head -c 1073741824 /dev/urandom | dd of="$f" bs=4M conv=fsync status=none
  t1=$(date +%s%N)
  gzip -1 <"$f" >/dev/null
  t2=$(date +%s%N)
  zstd -1 -q -c "$f" >/dev/null
  t3=$(date +%s%N)
  rm -f "$f"
  awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN {
    printf "physical limits: 1 GiB from /dev/urandom to disk (dd conv=fsync) %.2f s, gzip -1 %.2f s, zstd -1 %.2f s\n",
      (b - a) / 1e9, (c - b) / 1e9, (d - c) / 1e9 }'
}

# The RUN commands of multistage (its two stages' side by side) and big-layer, alone: chrooted into
# the busybox base with no sandbox, layer or store. No builder's build of them can be faster.
run_floors() {
  local root=$work/out/floor-root line=() t0 t1 t2
  [[ " ${workloads[*]} " == *" multistage "* || " ${workloads[*]} " == *" big-layer "* ]] || return 0
  rm -rf "$root"
  umoci raw unpack --image "$work/bases/busybox:latest" "$root" >/dev/null 2>&1 || {
    log "run floors: umoci cannot unpack the busybox base; skipped"
    return 0
  }
  mknod -m 666 "$root/dev/null" c 1 3 2>/dev/null || true
  mknod -m 666 "$root/dev/urandom" c 1 9 2>/dev/null || true
  local -a stage_runs=() big_run=()
  if [[ " ${workloads[*]} " == *" multistage "* ]]; then
    mapfile -t stage_runs < <(sed -n 's/^RUN //p' "$work/ctx/multistage/Dockerfile" | head -2)
  fi
  if [[ " ${workloads[*]} " == *" big-layer "* ]]; then
    mapfile -t big_run < <(sed -n 's/^RUN //p' "$work/ctx/big-layer/Dockerfile")
  fi
  t0=$(date +%s%N)
  if ((${#stage_runs[@]} == 2)); then
    chroot "$root" /bin/sh -c "${stage_runs[0]}" &
    chroot "$root" /bin/sh -c "${stage_runs[1]}"
    wait
  fi
  t1=$(date +%s%N)
  if ((${#big_run[@]} == 1)); then
    chroot "$root" /bin/sh -c "${big_run[0]} && sync"
  fi
  t2=$(date +%s%N)
  rm -rf "$root"
  ((${#stage_runs[@]} == 2)) && line+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {
    printf "multistage'"'"'s two stage RUNs side by side %.2f s", (b - a) / 1e9 }')")
  ((${#big_run[@]} == 1)) && line+=("$(awk -v a="$t1" -v b="$t2" 'BEGIN {
    printf "big-layer'"'"'s RUN (and sync) %.2f s", (b - a) / 1e9 }')")
  if ((${#line[@]} > 0)); then
    local IFS=';'
    echo "physical limits: the RUN commands alone (chroot into the busybox base, no sandbox):${line[*]/#/ }"
  fi
}

# --- the run ------------------------------------------------------------------------------------
echo "hako benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, kernel $(uname -r), runs=$runs"
echo "hako: $hako_src ($("$hako" --version 2>/dev/null || echo '?'))${bench_user:+, rootless as $bench_user}"
for p in "${peers[@]}"; do
  case $p in
  buildah) echo "buildah: $(buildah --version), --runtime runc --layers --network host" ;;
  buildkit) echo "buildkit: dockerd $("$DOCKER_CLI" version --format '{{.Server.Version}}') (BuildKit inside), \
CLI $("$DOCKER_CLI" version --format '{{.Client.Version}}'), DOCKER_BUILDKIT=1 --network host" ;;
  esac
done
((${#peers[@]} > 0)) || echo "peers: none"
echo "workloads: ${workloads[*]}"
((drop == 0)) || echo "cold builds start from dropped kernel caches, the workload's files read back in (BENCH_DROP_CACHES)"
physical_limits
for w in "${workloads[@]}"; do [[ $w == big-layer ]] && compression_limits; done
run_floors

nb=${#builders[@]}
for w in "${workloads[@]}"; do
  read -r -a scen <<<"$(scenarios_of "$w")"
  for ((r = 1; r <= runs; r++)); do
    declare -A ok=()
    for s in "${scen[@]}"; do
      [[ $s == change ]] && change_input "$w" "$r"
      if [[ $s == cold* ]] && ((settle > 0)); then
        # Every builder's fresh state first, then a pause: no build runs within a minute of
        # thousands of deletions, whoever made them (see retire).
        for ((i = 0; i < nb; i++)); do
          b=${builders[i]}
          if measured_in "$s" "$b"; then
            prepare_cold "$b" "$w" "$s"
            prepared[$b]=1
          fi
        done
        sync
        sleep "$settle"
      fi
      for ((i = 0; i < nb; i++)); do
        b=${builders[(i + r - 1) % nb]}
        measured_in "$s" "$b" || continue
        if needs_cold "$s" && [[ -z ${ok[$b]:-} ]]; then
          skip "$w" "$s" "$b" "$r"
          continue
        fi
        if build "$b" "$w" "$s" "$r"; then
          [[ $s == cold ]] && ok[$b]=1
        elif [[ $w == apt-python && $s == cold ]] && grep -qiE 'temporary failure|could not resolve|unable to fetch|failed to fetch' \
          "$work/logs/$w.$s.$b.$r.log"; then
          log "$b cannot reach the Debian mirror inside RUN: skipping its apt-python cells"
        fi
      done
    done
    unset ok
  done
  empty_trash
done

# --- the table ----------------------------------------------------------------------------------
# cell WORKLOAD SCENARIO BUILDER FIELD(5=secs, 6=rss): the median over the runs, "fail", "skip" or "-".
cell() {
  awk -F'\t' -v w="$1" -v s="$2" -v b="$3" -v f="$4" '
    $1 == w && $2 == s && $3 == b { n++; if ($f ~ /^[0-9.]+$/) v[++k] = $f + 0; else bad = $f }
    END {
      if (n == 0) { print "-"; exit }
      if (k == 0) { print bad; exit }
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      m = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
      if (f == 6) printf "%d", m / 1024; else printf "%.2f", m
    }' "$results"
}
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "-" }'
}

echo
echo "medians of $runs run(s); seconds, peak RSS in MiB; ratio < 1: hako faster"
fmt='%-14s %-7s %9s %9s %9s %12s %13s %8s %10s %11s\n'
# shellcheck disable=SC2059 # the format is the table's
printf "$fmt" workload scenario "hako s" "buildah s" "buildkit s" hako/buildah hako/buildkit "hako MiB" "buildah MiB" "buildkit MiB"
for w in "${workloads[@]}"; do
  read -r -a scen <<<"$(scenarios_of "$w")"
  for s in "${scen[@]}"; do
    ps=$s # the peers' cells of this row: cold-oci's are their cold builds
    [[ $s == cold-oci ]] && ps=cold
    h=$(cell "$w" "$s" hako 5)
    ba=$(cell "$w" "$ps" buildah 5)
    bk=$(cell "$w" "$ps" buildkit 5)
    # shellcheck disable=SC2059
    printf "$fmt" "$w" "$s" "$h" "$ba" "$bk" "$(ratio "$h" "$ba")" "$(ratio "$h" "$bk")" \
      "$(cell "$w" "$s" hako 6)" "$(cell "$w" "$ps" buildah 6)" "$(cell "$w" "$ps" buildkit 6)"
  done
done

# hako's largest peak RSS over every run of each workload (its own processes: the builder and
# its sandbox helpers, not the RUN steps' processes).
rss_limit_kib=62500 # issue 13's 64 MB; GNU time counts KiB
echo
echo "hako peak RSS, the largest of every run of a workload (issue 13: at most 64 MB, $rss_limit_kib KiB):"
rss_over=0
for w in "${workloads[@]}"; do
  line=$(awk -F'\t' -v w="$w" -v lim="$rss_limit_kib" '
    $1 == w && $3 == "hako" && $6 ~ /^[0-9]+$/ && $6 + 0 > max { max = $6 + 0; at = $2 " run " $4 }
    END {
      if (max == "") { print "-"; exit }
      printf "%d MiB, %d KiB (%s)%s", max / 1024, max, at, (max > lim ? ": over" : "")
    }' "$results")
  [[ $line == *": over" ]] && rss_over=1
  printf '  %-14s %s\n' "$w" "$line"
done

# Issue 13's "done when" targets, from the medians above, where this run measured them.
# target WHAT VALUE LIMIT [DETAIL]: VALUE ≤ LIMIT, said as met, not met or not measured.
target() {
  awk -v what="$1" -v v="$2" -v lim="$3" -v detail="${4:-}" 'BEGIN {
    if (v !~ /^[0-9.]+$/) verdict = "not measured"
    else verdict = (v + 0 <= lim + 0 ? "met" : "NOT met")
    printf "  %-44s %-12s %s\n", what, verdict, (v ~ /^[0-9.]+$/ ? v " (limit " lim ")" : "") (detail == "" ? "" : ", " detail)
  }'
}
# best_peer WORKLOAD SCENARIO: the fastest peer's median, "-" when none was measured.
best_peer() {
  local a b
  a=$(cell "$1" "$2" buildah 5)
  b=$(cell "$1" "$2" buildkit 5)
  awk -v a="$a" -v b="$b" 'BEGIN {
    if (a ~ /^[0-9.]+$/ && (b !~ /^[0-9.]+$/ || a + 0 < b + 0)) print a; else if (b ~ /^[0-9.]+$/) print b; else print "-" }'
}
has() { [[ " ${workloads[*]} " == *" $1 "* && " $(scenarios_of "$1") " == *" $2 "* ]]; }
echo
echo "issue 13 targets (ratios of medians; \"not measured\" when this run lacks a cell):"
if has multistage cold; then
  target "multistage cold / best peer" "$(ratio "$(cell multistage cold hako 5)" "$(best_peer multistage cold)")" 0.8
fi
if has copy-many cold; then
  target "copy-many cold / best peer" "$(ratio "$(cell copy-many cold hako 5)" "$(best_peer copy-many cold)")" 0.5
fi
if has big-layer cold-oci; then
  target "big-layer gzip OCI archive / BuildKit cold" \
    "$(ratio "$(cell big-layer cold-oci hako 5)" "$(cell big-layer cold buildkit 5)")" 0.8
fi
if has big-layer cold-zstd; then
  target "big-layer zstd OCI archive, seconds" "$(cell big-layer cold-zstd hako 5)" 6
fi
if has big-layer push; then
  target "big-layer push / BuildKit push" "$(ratio "$(cell big-layer push hako 5)" "$(cell big-layer push buildkit 5)")" 0.5
fi
printf '  %-44s %s\n' "hako peak RSS <= 64 MB, every run" "$( ((rss_over)) && echo "NOT met" || echo met)"
echo
echo "raw results: $results; build logs: $work/logs"

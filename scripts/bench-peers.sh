#!/usr/bin/env bash
# Installs, starts and stops the builders scripts/bench.sh compares hako with. Run by hand, never by CI
# or the test suite. Needs root and a Debian 12 machine that reaches Debian's mirror; installs what it
# needs with apt-get. Everything it starts listens on 127.0.0.1 or a unix socket only.
#
# Usage: scripts/bench-peers.sh start [registry|buildah|buildkit|all]   (default all; idempotent)
#        scripts/bench-peers.sh stop [registry|buildkit|all]...          (default all; buildah has no daemon)
#        scripts/bench-peers.sh status                                   (exit 0 when something runs)
#        scripts/bench-peers.sh env                                      (KEY=VALUE lines for bench.sh:
#                                                                         REGISTRY, REGISTRY_DATA, DOCKER_*)
#
# - registry: Debian's `docker-registry` (CNCF distribution 2.8) with its own config on 127.0.0.1 and a
#   free port; the peers pull the benchmark base images from it.
# - buildah: Debian's buildah 1.28 (+ runc; crun fails on this cgroup-v1 hybrid host). No daemon.
# - buildkit: BuildKit v0.13 as embedded in dockerd 26.1: Debian trixie's docker.io and containerd .debs,
#   fetched with `apt-get download` under a private apt configuration and unpacked with `dpkg-deb -x`
#   into $HAKO_BENCH_OPT/trixie (nothing is installed into the system), started with their own roots
#   and sockets, without iptables or a bridge. It is driven by the docker 20.10 CLI from bookworm's
#   docker.io (/usr/bin/docker when installed, else unpacked from that .deb too) with DOCKER_BUILDKIT=1:
#   the docker 26 CLI would need buildx to build.
set -euo pipefail

state=${HAKO_BENCH_PEERS_STATE:-/var/tmp/hako-bench/peers}
opt=${HAKO_BENCH_OPT:-/opt/hako-bench}
trixie=$opt/trixie

log() { echo "bench-peers: $*" >&2; }
die() {
  log "$*"
  exit 1
}

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

need_root() { [[ $(id -u) -eq 0 ]] || die "needs root (it installs packages and starts daemons)"; }

# apt-get install of the named packages that are missing.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

mirror() {
  local m
  m=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  echo "${m:-http://deb.debian.org/debian}"
}

# Downloads PACKAGE... of SUITE with a private apt configuration (own sources, lists and cache: the
# machine's apt state is untouched) and unpacks them into DEST.
fetch_debs() {
  local suite=$1 dest=$2
  shift 2
  local apt=$opt/apt-$suite
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(mirror) $suite main" >"$apt/sources.list"
  local conf=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Dir::Etc::Preferences=/dev/null
    -o Dir::Etc::PreferencesParts=/dev/null -o APT::Sandbox::User=root -o Acquire::Languages=none)
  log "fetching $* from $suite"
  apt-get "${conf[@]}" update -qq
  rm -f "$apt/debs/"*.deb
  (cd "$apt/debs" && apt-get "${conf[@]}" download -qq "$@")
  mkdir -p "$dest"
  local deb
  for deb in "$apt/debs/"*.deb; do dpkg-deb -x "$deb" "$dest"; done
}

# The docker 20.10 CLI (it builds through BuildKit without buildx).
docker_cli() {
  if [[ -x /usr/bin/docker ]] && /usr/bin/docker --version 2>/dev/null | grep -q 'version 20\.'; then
    echo /usr/bin/docker
  else
    echo "$opt/bookworm/usr/bin/docker"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() { # SECONDS WHAT COMMAND...
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what did not come up within ${secs}s"
}

start_registry() {
  apt_install docker-registry skopeo curl
  local dir=$state/registry
  mkdir -p "$dir/data"
  if alive "$dir/pid"; then
    log "registry: running on 127.0.0.1:$(cat "$dir/port")"
    return 0
  fi
  local port
  port=$(free_port)
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
  setsid docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  echo "$port" >"$dir/port"
  wait_for 20 "docker-registry (log: $dir/log)" curl -fsS "http://127.0.0.1:$port/v2/"
  log "registry: started on 127.0.0.1:$port"
}

start_buildah() {
  apt_install buildah runc skopeo
  log "buildah: $(buildah --version) (no daemon)"
}

start_buildkit() {
  apt_install runc skopeo
  if [[ ! -x $trixie/usr/sbin/dockerd || ! -x $trixie/usr/bin/containerd ]]; then
    fetch_debs trixie "$trixie" docker.io containerd
  fi
  local cli
  cli=$(docker_cli)
  if [[ ! -x $cli ]]; then
    fetch_debs bookworm "$opt/bookworm" docker.io
  fi
  local dir=$state/buildkit
  mkdir -p "$dir/containerd/root" "$dir/containerd/state" "$dir/docker/data" "$dir/docker/exec" "$dir/cli"
  # The shims and runc are found through PATH: trixie's shim, the system's runc.
  local path=$trixie/usr/bin:$trixie/usr/sbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  if ! alive "$dir/containerd.pid"; then
    cat >"$dir/containerd.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
EOF
    PATH=$path setsid "$trixie/usr/bin/containerd" --config "$dir/containerd.toml" \
      >"$dir/containerd.log" 2>&1 </dev/null &
    echo $! >"$dir/containerd.pid"
    wait_for 30 "containerd (log: $dir/containerd.log)" test -S "$dir/containerd.sock"
  fi
  if ! alive "$dir/dockerd.pid"; then
    echo '{}' >"$dir/daemon.json"
    PATH=$path setsid "$trixie/usr/sbin/dockerd" --config-file "$dir/daemon.json" \
      --host "unix://$dir/docker.sock" --containerd "$dir/containerd.sock" \
      --data-root "$dir/docker/data" --exec-root "$dir/docker/exec" --pidfile "$dir/docker/exec/dockerd.pid" \
      --iptables=false --ip6tables=false --bridge=none --log-level warn \
      >"$dir/dockerd.log" 2>&1 </dev/null &
    echo $! >"$dir/dockerd.pid"
  fi
  wait_for 60 "dockerd (log: $dir/dockerd.log)" \
    env DOCKER_HOST="unix://$dir/docker.sock" DOCKER_CONFIG="$dir/cli" "$cli" version
  log "buildkit: dockerd $(DOCKER_HOST="unix://$dir/docker.sock" DOCKER_CONFIG="$dir/cli" "$cli" \
    version --format '{{.Server.Version}}') on unix://$dir/docker.sock"
}

stop_pid() { # PIDFILE NAME
  local f=$1 pid i
  alive "$f" || {
    rm -f "$f"
    return 0
  }
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$2 ($pid) did not stop in 30s: killing it"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
  log "$2: stopped"
}

cmd_stop() {
  local what=" ${*:-all} "
  if [[ $what == *" buildkit "* || $what == *" all "* ]]; then
    stop_pid "$state/buildkit/dockerd.pid" dockerd
    stop_pid "$state/buildkit/containerd.pid" containerd
    # dockerd unmounts its data root when it stops cleanly; not when it died or failed to start.
    local m
    for m in $(findmnt -rn -o TARGET | sort -r); do
      if [[ $m == "$state/buildkit/"* ]] && umount "$m"; then
        log "unmounted $m (left by a dockerd that did not stop cleanly)"
      fi
    done
  fi
  if [[ $what == *" registry "* || $what == *" all "* ]]; then
    stop_pid "$state/registry/pid" registry
  fi
}

cmd_status() {
  local any=1
  if alive "$state/registry/pid"; then
    echo "registry: 127.0.0.1:$(cat "$state/registry/port")"
    any=0
  fi
  if alive "$state/buildkit/dockerd.pid"; then
    echo "buildkit: unix://$state/buildkit/docker.sock"
    any=0
  fi
  command -v buildah >/dev/null && echo "buildah: $(command -v buildah)"
  return $any
}

cmd_env() {
  if alive "$state/registry/pid"; then
    echo "REGISTRY=127.0.0.1:$(cat "$state/registry/port")"
    echo "REGISTRY_DATA=$state/registry/data"
  fi
  if alive "$state/buildkit/dockerd.pid"; then
    echo "DOCKER_CLI=$(docker_cli)"
    echo "DOCKER_HOST=unix://$state/buildkit/docker.sock"
    echo "DOCKER_CONFIG=$state/buildkit/cli"
    echo "DOCKERD_PID=$(cat "$state/buildkit/dockerd.pid")"
  fi
  return 0
}

case ${1:-} in
start)
  need_root
  mkdir -p "$state"
  case ${2:-all} in
  registry) start_registry ;;
  buildah) start_registry && start_buildah ;;
  buildkit) start_registry && start_buildkit ;;
  all) start_registry && start_buildah && start_buildkit ;;
  *) die "start: unknown peer ${2} (registry, buildah, buildkit or all)" ;;
  esac
  ;;
stop)
  shift
  cmd_stop "$@"
  ;;
status) cmd_status ;;
env) cmd_env ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac

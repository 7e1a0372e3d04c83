#!/usr/bin/env bash
# Creates the unprivileged user the rootless RUN tests build as (tests/integration/run.rs), with
# sub-uid and sub-gid ranges so images keep files owned by ids other than the user's own.
# Idempotent; needs root (as a non-root user the tests build rootless as that user instead).
set -euo pipefail
user=hakotest
if [[ $(id -u) -ne 0 ]]; then
  echo "test-user: not root, so the rootless tests run as $(id -un) and the root ones are skipped"
  exit 0
fi
if ! id "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$user"
fi
# useradd gives new users a range when /etc/login.defs asks for it; make sure there is one.
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  if ! grep -q "^$user:" "$f"; then
    flag=$([[ $f == /etc/subuid ]] && echo --add-subuids || echo --add-subgids)
    usermod "$flag" 300000-365535 "$user"
  fi
done
echo "test-user: $user ($(id -u "$user")) with $(grep "^$user:" /etc/subuid | tr '\n' ' ')"
# A second user with no sub-id ranges: rootless builds then map only the user's own id.
plain=hakotest-nosubid
if ! id "$plain" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$plain"
fi
for f in /etc/subuid /etc/subgid; do
  sed -i "/^$plain:/d" "$f"
done
echo "test-user: $plain ($(id -u "$plain")) without sub-ids"

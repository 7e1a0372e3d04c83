#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian 12 machine: the Debian packages listed in
# scripts/debian-packages.txt that are missing (as root), and PyYAML for the python3 on PATH.
# A no-op when everything is present.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < "$here/debian-packages.txt"
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing Debian packages: ${missing[*]}; run this script as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The examples test validates YAML with PyYAML (from PyPI when the python3 on PATH lacks it).
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "install-deps: installing PyYAML for python3" >&2
  python3 -m pip install -q pyyaml || echo "install-deps: PyYAML not installed; the YAML example check will skip" >&2
fi

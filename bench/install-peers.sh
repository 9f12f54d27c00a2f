#!/usr/bin/env bash
# Install the peer tools `npm run bench` compares reshard with, from the distribution's packages
# (Debian/Ubuntu): mydumper/myloader, sysbench, percona-toolkit (pt-table-checksum) and the
# MariaDB client tools (mariadb, mysqldump). Installs only what is missing; safe to re-run.
set -euo pipefail

declare -A want=(
  [mydumper]=mydumper
  [myloader]=mydumper
  [sysbench]=sysbench
  [pt-table-checksum]=percona-toolkit
  [mysqldump]=mariadb-client
  [mariadb]=mariadb-client
)

missing=()
for bin in "${!want[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("${want[$bin]}")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-peers: all peers present (mydumper, myloader, sysbench, pt-table-checksum, mysqldump, mariadb)"
  exit 0
fi
mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-peers: no apt-get here; install these packages with your package manager: ${pkgs[*]}" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "install-peers: run as root: apt-get install -y ${pkgs[*]}" >&2
  exit 1
fi

echo "install-peers: installing ${pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y --no-install-recommends "${pkgs[@]}"

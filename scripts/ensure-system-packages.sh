#!/usr/bin/env bash
# Installs the Debian packages the tests need: the MariaDB client headers (mysqlclient builds
# against them) and redis-server (the shared request budget's tests start their own). Does nothing
# when they are already there; needs root or sudo otherwise.
set -euo pipefail
needed=()
for pkg in libmariadb-dev pkg-config redis-server; do
  dpkg -s "$pkg" >/dev/null 2>&1 || needed+=("$pkg")
done
((${#needed[@]})) || exit 0
sudo=""
[[ $(id -u) == 0 ]] || sudo="sudo"
echo "Installing Debian packages: ${needed[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${needed[@]}" >/dev/null

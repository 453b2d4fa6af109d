#!/usr/bin/env bash
# Installs the Debian packages the test extras need to build (mysqlclient wants the MariaDB
# client headers). Does nothing when they are already there; needs root or sudo otherwise.
set -euo pipefail
needed=()
for pkg in libmariadb-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || needed+=("$pkg")
done
((${#needed[@]})) || exit 0
sudo=""
[[ $(id -u) == 0 ]] || sudo="sudo"
echo "Installing Debian packages: ${needed[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${needed[@]}" >/dev/null

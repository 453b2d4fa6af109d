#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test (tests/integration/test_connection_form_browser.py)
# when it is missing. Idempotent and quiet: does nothing when the packages are already there; needs
# root or sudo otherwise. Test tools must never download a browser of their own: the test drives
# /usr/bin/chromium through Playwright's executable_path.
# Extra packages (e.g. chromium-driver for Selenium) can be named as arguments.
set -euo pipefail
needed=()
installed() {
  # `dpkg -s` alone also succeeds for a removed package whose config files remain.
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}
for pkg in chromium "$@"; do
  installed "$pkg" || needed+=("$pkg")
done
((${#needed[@]})) || exit 0
sudo=""
if [[ $(id -u) != 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "ensure-browser: need root or sudo to install: ${needed[*]}" >&2
    exit 1
  fi
  sudo="sudo -n"
fi
echo "ensure-browser: installing Debian packages: ${needed[*]}" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${needed[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "ensure-browser: could not install ${needed[*]}" >&2
  exit 1
fi

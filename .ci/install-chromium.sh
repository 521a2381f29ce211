#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the browser tests of the slide views
# (tests/test_view_browser.py). Idempotent and quiet: does nothing when both are there.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-chromium: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
log="$(mktemp)"
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >"$log" 2>&1 \
  || { cat "$log" >&2; exit 1; }
rm -f "$log"

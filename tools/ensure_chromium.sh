#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver are installed (Debian packages); idempotent.
# Prints one line. Used by `make test` before the capacity planner's browser test.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium: $(chromium --version 2>/dev/null | head -n1) with chromedriver, already installed"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver; } >"$log" 2>&1; then
  echo "chromium: install failed (apt-get install chromium chromium-driver); last lines:" >&2
  tail -n 5 "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
echo "chromium: installed $(chromium --version 2>/dev/null | head -n1) with chromedriver"

#!/usr/bin/env bash
# Installs what the test suite needs and a fresh Debian machine lacks: each argument is a Debian package
# whose command has the same name (chromium: the browser tests in ./web drive headless Chromium), or
# package:command when they differ (simple-whip-client:whip-client). Fails loudly, saying what to install,
# when it cannot install.
set -euo pipefail
need=()
declare -A cmd_of=()
for arg in "$@"; do
  pkg="${arg%%:*}"
  cmd_of[$pkg]="${arg#*:}"
  command -v "${cmd_of[$pkg]}" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
fail() {
  {
    echo
    echo "*** make test needs: ${need[*]}"
    echo "*** $1"
    echo "*** install them as root (apt-get update && apt-get install -y ${need[*]}) and run make test again"
    echo
  } >&2
  exit 1
}
if [ "$(id -u)" -ne 0 ]; then
  fail "not root, so they cannot be installed here"
fi
if ! command -v apt-get >/dev/null 2>&1; then
  fail "this machine has no apt-get"
fi
echo "installing ${need[*]} (needed by the tests)" >&2
for i in 1 2 3; do
  # The apt lock can be busy for a moment (unattended upgrades): retry.
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; then
    for pkg in "${need[@]}"; do
      command -v "${cmd_of[$pkg]}" >/dev/null 2>&1 || fail "apt-get installed $pkg but its command ${cmd_of[$pkg]} is not on PATH"
    done
    exit 0
  fi
  echo "apt-get failed (try $i of 3), retrying in 5 s" >&2
  sleep 5
done
fail "apt-get could not install them (see its errors above)"

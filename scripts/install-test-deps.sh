#!/usr/bin/env bash
# Installs what the test suite needs and a fresh Debian machine lacks. Today that is nothing beyond Go;
# redis-server and chromium join the list with the Redis broker and the browser tests.
set -euo pipefail
need=()
for pkg in "$@"; do
  command -v "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing: ${need[*]} — install them (apt-get install ${need[*]}) and run make test again" >&2
  exit 1
fi
for i in 1 2 3; do
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; then
    exit 0
  fi
  echo "apt-get failed (try $i), retrying" >&2
  sleep 5
done
echo "could not install ${need[*]}" >&2
exit 1

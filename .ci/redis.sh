#!/usr/bin/env bash
# Makes sure redis-server is installed for the Redis queue tests; does not start it (the test fixture
# starts its own on a free port). Safe to run again: it does nothing when redis-server is on PATH.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
command -v redis-server >/dev/null

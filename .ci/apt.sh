#!/usr/bin/env bash
# Makes sure a Debian package is installed for the tests that need its real server: `apt.sh PROGRAM
# PACKAGE` does nothing when PROGRAM is on PATH (or an executable path), else installs PACKAGE. It
# starts nothing: each test fixture starts its own server on a free port.
set -euo pipefail
program=$1 package=$2
if command -v "$program" >/dev/null 2>&1; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "$package" >/dev/null
command -v "$program" >/dev/null

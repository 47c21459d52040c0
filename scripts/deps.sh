#!/bin/sh
# make deps: installs the packages of .ci/packages that are missing, with apt-get (after
# apt-get update) when run as root; otherwise prints the exact command and fails.  When
# every package is present it asks dpkg once and does nothing else (no apt-get, no output):
# make demo and make test run it every time.
set -eu
cd "$(dirname "$0")/.."
list=${DEPS_LIST:-.ci/packages} # another list: for testing this script
packages=$(grep -v '^[[:space:]]*\(#\|$\)' "$list")
# One dpkg-query for all of them: it prints a line for each package it knows (and only
# complains about the others); a package is missing unless its line says "installed".
# shellcheck disable=SC2086 # one word per package
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' $packages 2>/dev/null | awk '$2 == "installed" {print $1}' || true)
missing=$(for p in $packages; do echo "$installed" | grep -qxF "$p" || echo "$p"; done)
[ -z "$missing" ] && exit 0
missing=$(printf '%s\n' "$missing" | paste -sd ' ') # one line
if [ "$(id -u)" != 0 ]; then
    echo "deps: missing Debian packages: $missing" >&2
    echo "deps: install them as root, then run make again:" >&2
    echo "    apt-get update && apt-get install -y --no-install-recommends $missing" >&2
    exit 1
fi
echo "deps: installing $missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null

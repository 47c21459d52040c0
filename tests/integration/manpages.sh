#!/usr/bin/env bash
# The man pages (docs/man): each renders with man -l and with groff -ww without a warning,
# every option and command that meshd --help and meshctl --help print is in its page, every
# environment variable the shim reads is in libmesh(7), and make install puts them under
# $(PREFIX)/share/man with the installed paths.
# Usage: BUILD=/abs/build bash tests/integration/manpages.sh [CASE...]
# Cases (default: all): render coverage install.  Nothing here waits for anything.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases render coverage install
SRC=$(cd "$(dirname "$0")/../.." && pwd)
MAN=$SRC/docs/man

if ! command -v man >/dev/null || ! command -v groff >/dev/null; then
    echo "SKIP: man or groff not installed"
    exit 0
fi

# render PAGE: the page as plain text, on stdout; warnings on stderr.
render() { MANWIDTH=100 man -l "$1" | col -b; }

for page in "$MAN"/meshd.8 "$MAN"/meshctl.8 "$MAN"/libmesh.7; do
    name=$(basename "$page")
    if ! want render; then # only the text, for coverage
        render "$page" >"$TMP/$name.txt" 2>/dev/null || true
        continue
    fi
    if ! render "$page" >"$TMP/$name.txt" 2>"$TMP/$name.err" || [ -s "$TMP/$name.err" ] ||
        [ "$(wc -l <"$TMP/$name.txt")" -lt 40 ]; then
        fail "man -l $name: $(cat "$TMP/$name.err")"
    elif ! groff -man -Tutf8 -ww -z "$page" 2>"$TMP/$name.groff" || [ -s "$TMP/$name.groff" ]; then
        fail "groff -ww $name: $(cat "$TMP/$name.groff")"
    else
        pass "$name renders ($(wc -l <"$TMP/$name.txt") lines), no groff warnings"
    fi
done

# covers PAGE WHAT WORD...: every WORD appears in the rendered PAGE as a whole word.
covers() {
    local page=$1 what=$2 missing=() w
    shift 2
    for w in "$@"; do
        grep -qE -- "(^|[^a-z_-])$w([^a-z_]|$)" "$TMP/$page.txt" || missing+=("$w")
    done
    if [ ${#missing[@]} = 0 ]; then
        pass "$page: all $# $what"
    else
        fail "$page: missing $what: ${missing[*]}"
    fi
}

if want coverage; then
    "$MESHD" --help >"$TMP/meshd.help"
    "$MESHCTL" --help >"$TMP/meshctl.help"
    mapfile -t opts < <(grep -oE -- '--[a-z][a-z-]*' "$TMP/meshd.help" | sort -u)
    covers meshd.8 "options of meshd --help" "${opts[@]}"
    # the policy keys: meshd --help lists every row of the settings table (meshd/settings.c)
    # as "    KEY=DEFAULT  help"; the page has each KEY=DEFAULT, alone on its tag line
    mapfile -t keys < <(sed -n '/keys, with their defaults:/,$p' "$TMP/meshd.help" | sed -n 's/^    \([a-z_0-9]*=[^ ]*\) .*/\1/p')
    missing=()
    for kv in "${keys[@]}"; do
        grep -qxF -- "$kv" <(sed 's/^ *//; s/ *$//' "$TMP/meshd.8.txt") || missing+=("$kv")
    done
    if [ ${#keys[@]} = 0 ]; then
        fail "meshd --help lists no policy keys: $(cat "$TMP/meshd.help")"
    elif [ ${#missing[@]} = 0 ]; then
        pass "meshd.8: all ${#keys[@]} policy keys of meshd --help, with the same defaults"
    else
        fail "meshd.8: missing or with another default: ${missing[*]}"
    fi
    mapfile -t opts < <(grep -oE -- '--[a-z][a-z-]*' "$TMP/meshctl.help" | sort -u)
    covers meshctl.8 "options of meshctl --help" "${opts[@]}"
    mapfile -t cmds < <(sed -n 's/^.*meshctl \[--socket PATH\] \([a-z]*\).*/\1/p' "$TMP/meshctl.help")
    covers meshctl.8 "commands of meshctl --help" "${cmds[@]}"
    mapfile -t envs < <(grep -rhoE 'getenv\("[A-Z_]+"\)' "$SRC/shim" "$SRC/proto" | sed 's/getenv("\(.*\)")/\1/' | sort -u)
    covers libmesh.7 "environment variables the shim reads" "${envs[@]}"
    if grep -q 'vm.max_map_count' "$TMP/libmesh.7.txt" && grep -q '60-libmesh.conf' "$TMP/libmesh.7.txt"; then
        pass "libmesh.7: the vm.max_map_count drop-in"
    else
        fail "libmesh.7 does not explain the vm.max_map_count drop-in"
    fi
fi

want install || { [ "$FAILED" = 0 ] && echo "manpages: all passed"; exit "$FAILED"; }

# make install: the pages land in man8/man7 with the prefix substituted.
if make -s -C "$SRC" install BUILD="$BUILD" DESTDIR="$TMP/inst" PREFIX=/opt/mesh >"$TMP/install.out" 2>&1 &&
    [ -f "$TMP/inst/opt/mesh/share/man/man8/meshd.8" ] &&
    [ -f "$TMP/inst/opt/mesh/share/man/man8/meshctl.8" ] &&
    [ -f "$TMP/inst/opt/mesh/share/man/man7/libmesh.7" ] &&
    grep -q '/opt/mesh/lib/libmesh.so' "$TMP/inst/opt/mesh/share/man/man7/libmesh.7" &&
    ! grep -q '/usr/local' "$TMP/inst/opt/mesh/share/man/man7/libmesh.7"; then
    pass "make install: man8/meshd.8, man8/meshctl.8, man7/libmesh.7 under PREFIX, paths substituted"
else
    fail "make install of the man pages: $(cat "$TMP/install.out"; find "$TMP/inst" -name "*.[78]")"
fi

[ "$FAILED" = 0 ] || exit 1
echo "manpages: all passed"

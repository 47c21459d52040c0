#!/usr/bin/env bash
# C++ operator new/delete (issue 12): tests/prog/cxx_new.cpp, compiled here with g++, runs
# under the shim and checks that every C++14/17 form of new and delete is libmesh's own
# and hands out libmesh memory, that sized and aligned deletes work, that a failing new
# throws std::bad_alloc the program catches, that nothrow new returns nullptr, and that
# the new_handler is called between tries.  Then a C++ program from Debian's packages
# (g++ itself: cc1plus) compiles the test under the shim, its output compared with glibc's.
# Usage: BUILD=/abs/build bash tests/integration/cxx_new.sh [CASE...]
# Cases (default: all): forms compiler.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cases forms compiler
SRC=$(cd "$(dirname "$0")/../prog" && pwd)/cxx_new.cpp

g++ -std=c++17 -O2 -Wall -Wextra -Werror "$SRC" -o "$TMP/cxx_new" -ldl ||
    die "cannot compile $SRC with g++"

if want forms; then
    rc=0
    MESH_NO_MESHD=1 LD_PRELOAD="$LIB" "$TMP/cxx_new" >"$TMP/forms.out" 2>&1 || rc=$?
    if [ $rc = 0 ] && grep -qx 'cxx_new: ok' "$TMP/forms.out"; then
        pass "forms: every new/delete form is libmesh's, bad_alloc and new_handler work"
    else
        fail "forms: exit $rc: $(tail -20 "$TMP/forms.out")"
    fi
fi

if want compiler; then
    # g++'s own front end (C++, heavy on new/delete) under the shim: the same object code.
    g++ -std=c++17 -O2 -c "$SRC" -o "$TMP/glibc.o"
    rc=0
    MESH_NO_MESHD=1 LD_PRELOAD="$LIB" g++ -std=c++17 -O2 -c "$SRC" -o "$TMP/mesh.o" \
        >"$TMP/compiler.out" 2>&1 || rc=$?
    if [ $rc != 0 ]; then
        fail "compiler: g++ under the shim exited $rc: $(tail -20 "$TMP/compiler.out")"
    elif ! cmp -s "$TMP/glibc.o" "$TMP/mesh.o"; then
        fail "compiler: g++ under the shim wrote a different object file"
    else
        pass "compiler: g++ under the shim wrote the same object file"
    fi
fi
exit $FAILED

#!/usr/bin/env bash
# A user's view of an installed txmsg: installs this build into a temporary
# prefix, builds examples/quickstart/quickstart.c there twice, once with
# pkg-config (and once more statically, through Requires.private) and once
# as a CMake project with find_package(txmsg), then runs the builds one
# after the other on SQLite + the embedded broker with the installed
# txmsg-relay: each greeting is sent once and received once, also across
# the change of binary.
#   tests/external/external_test.sh BUILD_DIR [CFLAGS]
# CFLAGS (e.g. the sanitizers a build of the library needs) go to every
# compiler run.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$1
cflags=${2:-}
tmp=$(mktemp -d)
pids=()
fail() {
    echo "FAIL: $*"
    for f in "$tmp"/*.log; do [ -f "$f" ] && { echo "---- $f"; tail -n 15 "$f"; }; done
    exit 1
}
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 || fail "cmake --install"
pc=$(dirname "$(find "$prefix" -name txmsg.pc)")
libdir=$(dirname "$pc")
export PKG_CONFIG_PATH=$pc
src=$root/examples/quickstart/quickstart.c
cc=${CC:-cc}

# With pkg-config: the shared library, then the static one with the
# libraries its Requires.private names (shared: Debian ships no static
# libpq dependencies), which fails if that list misses one.
# shellcheck disable=SC2046,SC2086 # pkg-config's output and cflags are lists of words
"$cc" -std=c17 -Wall -Werror $cflags -o "$tmp/quickstart-pc" "$src" $(pkg-config --cflags --libs txmsg) \
    >"$tmp/cc.log" 2>&1 || fail "pkg-config build"
# shellcheck disable=SC2046,SC2086
"$cc" -std=c17 -Wall -Werror $cflags -o "$tmp/quickstart-static" "$src" \
    $(pkg-config --cflags txmsg) "$libdir/libtxmsg.a" \
    $(pkg-config --libs $(pkg-config --print-requires-private txmsg)) -pthread \
    >"$tmp/cc-static.log" 2>&1 || fail "static build with the libraries of Requires.private"
# With CMake's find_package.
cmake -S "$root/tests/external" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$cflags" \
    >"$tmp/cmake.log" 2>&1 || fail "find_package(txmsg)"
cmake --build "$tmp/cmake" >>"$tmp/cmake.log" 2>&1 || fail "CMake build"

# The builds load the installed library, not the build tree's.
export LD_LIBRARY_PATH=$libdir
# (ldd's output is read whole: grep -q ending early would make the pipe fail.)
for b in "$tmp/quickstart-pc" "$tmp/cmake/quickstart"; do
    [[ "$(ldd "$b")" == *"libtxmsg.so.0 => $libdir/"* ]] ||
        fail "$b does not load $libdir/libtxmsg.so.0"
done
[[ "$(ldd "$tmp/quickstart-static")" != *libtxmsg* ]] || fail "the static build loads libtxmsg"

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=""
for _ in $(seq 1 50); do
    p=$((10000 + RANDOM % 22000))
    if port_is_free "$p"; then port=$p; break; fi
done
[ -n "$port" ] || fail "no free port"
export PORT=$port TXMSG_DATABASE_URL=sqlite:$tmp/quickstart.db
export TXMSG_BROKER_URL=embedded:$tmp/broker.db
url=http://127.0.0.1:$port

# Starts a build of the quickstart; waits for its health check.
start() {
    "$1" >"$tmp/$(basename "$1").log" 2>&1 &
    svc=$!
    pids+=("$svc")
    for _ in $(seq 1 200); do
        curl -fs "$url/quickstart/health" >/dev/null && return 0
        kill -0 "$svc" 2>/dev/null || fail "$1 ended at start"
        sleep 0.05
    done
    fail "$1 not healthy in 10 s"
}
stop() {
    kill -TERM "$svc"
    wait "$svc" || fail "the quickstart did not exit 0 on SIGTERM"
}
# Waits until GET /greetings/NAME says sent and received are both $2.
expect() {
    local want="{\"name\":\"$1\",\"sent\":$2,\"received\":$2}" got=""
    for _ in $(seq 1 200); do
        got=$(curl -fs "$url/greetings/$1")
        [ "$got" = "$want" ] && return 0
        sleep 0.05
    done
    fail "GET /greetings/$1 answered '$got', want '$want'"
}
post() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url/greetings/$1")
    [ "$code" = 202 ] || fail "POST /greetings/$1 answered $code"
}

"$prefix/bin/txmsg-relay" >"$tmp/relay.log" 2>&1 &
pids+=($!)
start "$tmp/quickstart-pc"
post ada
post ada
expect ada 2
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url/greetings/Ada%20Lovelace")
[ "$code" = 400 ] || fail "a bad name answered $code, want 400"
stop
start "$tmp/cmake/quickstart"
post bob
expect bob 1
expect ada 2
stop
start "$tmp/quickstart-static"
post ada
expect ada 3
expect bob 1
stop
echo "ok: installed, built with pkg-config (shared and static) and find_package; each greeting received once"

#!/usr/bin/env bash
# bench/http_run.sh: the HTTP create-order figure of the orders example next
# to its database's ceiling. (a) POST /orders at HTTP_CONNECTIONS (16)
# connections with wrk (bench/http_orders.lua), req/s and p99, on SQLite and
# on PostgreSQL; (b) the same two writes per transaction (order row, outbox
# row) in a bare loop of 16 threads (bench_commit_raw) on each, and (c) the
# same through txmsg's units of work without HTTP (lib_*), which tells the
# library's share of a gap from the HTTP layer's. Builds what
# it needs, then runs itself again under scripts/with-servers (bench/run can
# call it the same way). Prints key=value lines on stdout, progress on stderr.
#   bench/http_run.sh
#   HTTP_SECONDS=10 HTTP_CONNECTIONS=16 HTTP_PG=0 HTTP_PERF=1 bench/http_run.sh
# HTTP_PG=0 skips PostgreSQL; HTTP_PERF=1 records the SQLite service with
# perf record -g during its wrk run and keeps the report in
# /tmp/txmsg-http-perf.txt (perf.data in /tmp/txmsg-http-perf.data).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${TXMSG_BUILD:-$root/build}
targets="orders-service bench_commit_raw"

if [ -z "${TXMSG_TEST_PG_URL:-}" ]; then
    for tool in wrk curl; do
        command -v "$tool" >/dev/null || { echo "http_run: $tool is missing (scripts/install-deps)" >&2; exit 1; }
    done
    # shellcheck disable=SC2086
    if ! cmake -S "$root" -B "$build" >/dev/null || ! cmake --build "$build" -j2 --target $targets >/dev/null; then
        echo "http_run: the build failed; nothing was measured" >&2
        exit 1
    fi
    exec "$root/scripts/with-servers" "$0" "$@"
fi

SECONDS_RUN=${HTTP_SECONDS:-10}
CONNS=${HTTP_CONNECTIONS:-16}
RAW_THREADS=16

work=$(mktemp -d /tmp/txmsg-http-XXXXXX)
chmod 755 "$work"
svc_pid=""
cleanup() {
    if [ -n "$svc_pid" ]; then kill -TERM "$svc_pid" 2>/dev/null || true; wait "$svc_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
cp "$build/examples/orders/orders-service" "$build/bench/bench_commit_raw" "$work/"

say() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 30000))
        if port_is_free "$p"; then echo "$p"; return 0; fi
    done
    echo "http_run: no free port" >&2; return 1
}

# wrk_figures FILE: "RATE P99_MS" from wrk --latency output.
wrk_figures() {
    awk '/^Requests\/sec:/ { rate = $2 }
         $1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
                       ms = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }
         END { printf "%.0f %.1f\n", rate, ms }' "$1"
}

# http_case NAME DATABASE_URL: starts orders-service on the database, warms
# it up, runs wrk, stops it; prints "http_NAME rate=... p99_ms=...".
http_case() {
    local name=$1 db=$2 port
    port=$(free_port)
    TXMSG_DATABASE_URL=$db TXMSG_BROKER_URL="embedded:$work/broker-$name.db" PORT=$port \
        "$work/orders-service" >"$work/svc-$name.log" 2>&1 </dev/null &
    svc_pid=$!
    local url="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        curl -sf "$url/orders/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -sf "$url/orders/health" >/dev/null || { say "orders-service did not start:"; tail -5 "$work/svc-$name.log" >&2; exit 1; }
    wrk -t2 -c"$CONNS" -d2s -s "$root/bench/http_orders.lua" "$url/orders" >/dev/null
    local perf_pid=""
    if [ "${HTTP_PERF:-0}" = 1 ] && [ "$name" = sqlite ]; then
        perf record -g -o /tmp/txmsg-http-perf.data -p "$svc_pid" -- sleep "$SECONDS_RUN" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    say "http $name: wrk -t2 -c$CONNS -d${SECONDS_RUN}s --latency"
    wrk -t2 -c"$CONNS" -d"${SECONDS_RUN}s" --latency -s "$root/bench/http_orders.lua" \
        "$url/orders" >"$work/wrk-$name.txt"
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid" || true
        perf report -i /tmp/txmsg-http-perf.data --no-children --stdio 2>/dev/null | head -150 >/tmp/txmsg-http-perf.txt || true
        say "perf report: /tmp/txmsg-http-perf.txt"
    fi
    kill -TERM "$svc_pid"; wait "$svc_pid" || true; svc_pid=""
    local non2xx
    non2xx=$(awk '/Non-2xx/ { print $NF }' "$work/wrk-$name.txt")
    [ -z "$non2xx" ] || { say "http $name: $non2xx answers were not 2xx"; exit 1; }
    read -r rate p99 < <(wrk_figures "$work/wrk-$name.txt")
    echo "http_$name rate=$rate p99_ms=$p99 connections=$CONNS seconds=$SECONDS_RUN"
}

# raw_case NAME MODE TARGET: bench_commit_raw MODE TARGET, printed as NAME.
raw_case() {
    local name=$1 mode=$2 target=$3 line
    say "$name: bench_commit_raw $mode $RAW_THREADS threads ${SECONDS_RUN}s"
    line=$("$work/bench_commit_raw" "$mode" "$target" "$RAW_THREADS" "$SECONDS_RUN")
    echo "$name $line threads=$RAW_THREADS"
}

pg_db() { # pg_db NAME: a fresh database on the private cluster, its URL
    PGOPTIONS="-c client_min_messages=warning" "$TXMSG_TEST_PG_BIN/psql" -qAt -v ON_ERROR_STOP=1 \
        "$TXMSG_TEST_PG_URL" \
        -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
    echo "${TXMSG_TEST_PG_URL%/*}/$1"
}

http_case sqlite "sqlite:$work/orders.db"
raw_case raw_sqlite sqlite "$work/raw.db"
raw_case lib_sqlite txmsg "sqlite:$work/lib.db"
if [ "${HTTP_PG:-1}" != 0 ]; then
    http_case pg "$(pg_db bench_http_orders)"
    raw_case raw_pg pg "$(pg_db bench_http_raw)"
    raw_case lib_pg txmsg "$(pg_db bench_http_lib)"
fi

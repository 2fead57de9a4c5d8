#!/usr/bin/env bash
# `make demo-cluster` as a user runs it: scripts/demo-cluster starts; one
# order saga goes through it (customer on one customers instance, order on
# the second orders instance, read back on the first); Ctrl-C (SIGINT to
# its process group, as a terminal sends it) stops it with status 0, no
# process of it remains (the servers run in sessions of their own: none
# may still name the demo's folders) and its private data is gone.
#   tests/e2e/demo_cluster_test.sh BUILD_DIR
# Exits 77 (skipped) without PostgreSQL 15 or nats-server.
set -uo pipefail
set -m # the demo runs in its own process group, like a terminal's job

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$1
if [ ! -x /usr/lib/postgresql/15/bin/initdb ] || ! command -v nats-server >/dev/null ||
    ! command -v curl >/dev/null; then
    echo "skipped: needs PostgreSQL 15, nats-server and curl"
    exit 77
fi

# Ports below the kernel's ephemeral range, which the servers' own
# outgoing connections (NATS routes, replication) draw from.
port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
span=$(((low - 10100) / 100))
[ "$span" -gt 0 ] || span=1
base=""
for _ in $(seq 1 50); do
    b=$((10000 + RANDOM % span * 100))
    ok=1
    for off in 1 2 11 12 32 33 42 43 44 52 53 54 62 63 64; do port_is_free $((b + off)) || ok=0; done
    if [ "$ok" = 1 ]; then base=$b; break; fi
done
[ -n "$base" ] || { echo "FAIL: no free range of ports"; exit 1; }

# The demo's temporary folders go in tmp, removed at the end on every path
# (postgres must reach the data inside).
tmp=$(mktemp -d)
chmod 755 "$tmp"
log="$tmp/demo.log"
started=$(date +%s.%N)
TMPDIR=$tmp TXMSG_DEMO_CLUSTER_PORT=$base "$root/scripts/demo-cluster" "$build" >"$log" 2>&1 &
demo=$!
data=""

elapsed() { printf '%.1f' "$(echo "$(date +%s.%N) - $started" | bc)"; }

fail() {
    echo "FAIL after $(elapsed) s: $*"
    echo "---- end of the demo's output ----"
    tail -n 60 "$log"
    kill -KILL -- "-$demo" 2>/dev/null
    wait "$demo" 2>/dev/null
    rm -rf "$tmp"
    exit 1
}

# GET or POST (with a body); prints the body, fails unless 200.
http() {
    local out code
    if [ $# -ge 2 ]; then
        out=$(curl -s -m 10 -w '\n%{http_code}' -XPOST "http://127.0.0.1:$1" -d "$2")
    else
        out=$(curl -s -m 10 -w '\n%{http_code}' "http://127.0.0.1:$1")
    fi
    code=${out##*$'\n'}
    [ "$code" = 200 ] || fail "$1: status $code: ${out%$'\n'*}"
    printf '%s' "${out%$'\n'*}"
}
field() { grep -o "\"$1\":\"\{0,1\}[^\",]*" | head -n 1 | sed 's/.*:"\{0,1\}//'; }

# Every instance healthy within 60 s.
for svc in "$((base + 1)) customers" "$((base + 11)) customers" "$((base + 2)) orders" \
    "$((base + 12)) orders"; do
    set -- "${svc% *}" "${svc#* }"
    for i in $(seq 1 600); do
        kill -0 "$demo" 2>/dev/null || fail "the demo ended before port $1 answered"
        [ -z "$data" ] && data=$(sed -n 's/.*private data in \([^ ]*\) .*/\1/p' "$log")
        curl -s -m 2 "http://127.0.0.1:$1/$2/health" | grep -q '"status":"ok"' && break
        [ "$i" = 600 ] && fail "GET :$1/$2/health did not answer ok in 60 s"
        sleep 0.1
    done
done
echo "demo-cluster up in $(elapsed) s"

customer=$(http "$((base + 1))/customers" '{"name":"Demo","credit_limit":5000}' | field id)
[ -n "$customer" ] || fail "no customer id"
order=$(http "$((base + 12))/orders" "{\"customer_id\":\"$customer\",\"order_total\":1500}" |
    field id)
[ -n "$order" ] || fail "no order id"
state=""
for _ in $(seq 1 300); do
    state=$(http "$((base + 2))/order/$order" | field state)
    [ "$state" = PENDING ] || break
    sleep 0.1
done
[ "$state" = APPROVED ] || fail "order $order is $state, want APPROVED"
credit=$(http "$((base + 11))/customer/$customer" | field available_credit)
[ "$credit" = 3500 ] || fail "available_credit $credit, want 3500"
echo "order saga approved at $(elapsed) s"

kill -INT -- "-$demo"
for i in $(seq 1 300); do
    kill -0 "$demo" 2>/dev/null || break
    [ "$i" = 300 ] && fail "still running 30 s after Ctrl-C"
    sleep 0.1
done
wait "$demo"
status=$?
[ "$status" = 0 ] || fail "exit status $status after Ctrl-C, want 0"
grep -q "while stopping" "$log" && fail "a service or relay did not stop cleanly"
ps -eo pgid=,pid=,args= >"$tmp/ps"
left=$(awk -v g="$demo" -v t="$tmp" '$1 == g || index($0, t)' "$tmp/ps")
rm -f "$tmp/ps"
[ -z "$left" ] || fail "processes left after Ctrl-C: $left"
[ -n "$data" ] && [ -e "$data" ] && fail "$data is still there"
[ "$(ls "$tmp")" = demo.log ] || fail "left in $tmp: $(ls "$tmp")"
echo "stopped cleanly at $(elapsed) s"
rm -rf "$tmp"

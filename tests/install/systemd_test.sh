#!/bin/sh
# The systemd units as installed pass `systemd-analyze verify`: directives
# and their values, ExecStart programs that exist, and Documentation= man
# pages that man finds. They are installed (component runtime) into a
# temporary prefix, whose programs the units then name, and verified for the
# example services. The example environment files hold only variables the
# programs read, and the relay accepts the options they give it.
#   tests/install/systemd_test.sh BUILD_DIR
# systemd-analyze exits 0 on a misspelled directive and only prints it, so
# any output fails the test; a unit spoiled on purpose shows the check sees
# such a mistake here (in a container without systemd running, too).
set -u
build=$1
status=0
fail() {
    echo "FAIL: $*"
    status=1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/usr
if ! cmake --install "$build" --prefix "$prefix" --component runtime >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log"
    echo "FAIL: cmake --install failed"
    exit 1
fi
units=$prefix/lib/systemd/system
for unit in txmsg-relay@.service txmsg-service@.service; do
    [ -f "$units/$unit" ] || fail "$unit was not installed in lib/systemd/system"
done
[ "$status" -eq 0 ] || exit 1

# verify UNIT...: prints what systemd-analyze says about the units.
verify() {
    (cd "$units" && MANPATH=$prefix/share/man SYSTEMD_LOG_COLOR=0 \
        systemd-analyze verify "$@" 2>&1)
}

instances="./txmsg-relay@customers.service ./txmsg-relay@orders.service
./txmsg-service@customers.service ./txmsg-service@orders.service"
# shellcheck disable=SC2086 # a list of unit names
out=$(verify $instances)
if [ -n "$out" ]; then
    fail "systemd-analyze verify:"
    printf '%s\n' "$out"
fi

# The check must see a misspelled directive.
sed 's/^NoNewPrivileges=/NoNewPrivilege=/' "$units/txmsg-relay@.service" \
    >"$units/txmsg-spoiled@.service"
if [ -z "$(verify ./txmsg-spoiled@customers.service)" ]; then
    fail "systemd-analyze verify said nothing about a misspelled directive"
fi
rm -f "$units/txmsg-spoiled@.service"

# The units keep the hardening they promise.
for unit in txmsg-relay@.service txmsg-service@.service; do
    for line in DynamicUser=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
        NoNewPrivileges=yes Restart=on-failure KillSignal=SIGTERM 'StateDirectory=txmsg/%i txmsg/broker' \
        'EnvironmentFile=/etc/txmsg/%i.env' 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6'; do
        grep -qxF "$line" "$units/$unit" || fail "$unit lacks $line"
    done
done

# Example environment files: VAR=value lines, variables a service or the
# relay reads (services list theirs in --help), relay options it accepts.
libdir=$(dirname "$(find "$prefix" -name 'libtxmsg.so.*' | head -n 1)")
service_help=$(LD_LIBRARY_PATH=$libdir "$prefix/libexec/txmsg/customers-service" --help)
for env in "$prefix"/share/doc/txmsg/examples/*.env; do
    name=$(basename "$env")
    if grep -vE '^(#.*|[A-Z_]+=.*|)$' "$env" >/dev/null; then
        fail "$name has lines that are neither comments nor VAR=value"
    fi
    # shellcheck disable=SC2013 # variable names are single words
    for var in $(sed -n 's/^\([A-Z_]*\)=.*/\1/p' "$env"); do
        [ "$var" = TXMSG_RELAY_OPTS ] && continue
        printf '%s\n' "$service_help" | grep -qw "$var" || fail "$name sets $var, which no program reads"
    done
    opts=$(sed -n 's/^TXMSG_RELAY_OPTS=//p' "$env")
    # shellcheck disable=SC2086 # options are words, as systemd splits $TXMSG_RELAY_OPTS
    if ! LD_LIBRARY_PATH=$libdir "$prefix/bin/txmsg-relay" $opts --help >/dev/null 2>&1; then
        fail "$name: txmsg-relay does not accept TXMSG_RELAY_OPTS=$opts"
    fi
done

[ "$status" -eq 0 ] && echo "ok: systemd-analyze verify passes on the installed units"
exit $status

#!/bin/sh
# The man pages render without a groff warning, and say what the programs'
# --help says: every long option that `txmsg-relay --help` prints is in
# txmsg-relay(1), and every command of txmsg (found in the help's "Commands:"
# lists) and every long option of its --help is in txmsg(1). So adding an
# option or a command without documenting it fails here.
#   tests/install/man_test.sh MANDIR TXMSG TXMSG_RELAY
# MANDIR holds txmsg.1, txmsg-relay.1 and txmsg.7 as built by scdoc
# (cmake/man.cmake).
set -u
mandir=$1
txmsg=$2
relay=$3
status=0
fail() { # on stderr: render's output goes to a file
    echo "FAIL: $*" >&2
    status=1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# man-db hands --warnings to groff, which reports on standard error; the
# width and locale are lintian's. The text the checks below read has a line
# per paragraph (MANWIDTH=5000) and no hyphenation (-rHY=0), so no option is
# split across two lines.
render() {
    MANROFFSEQ='' MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -E UTF-8 -l "$1" 2>"$tmp/warn" \
        >/dev/null
    if [ -s "$tmp/warn" ]; then
        fail "$(basename "$1") renders with warnings:"
        cat "$tmp/warn" >&2
    fi
    MANROFFOPT='-rHY=0' MANWIDTH=5000 LC_ALL=C man -l "$1" 2>/dev/null
}

# The long options in a text, one per line: "--" after a non-word character
# (so "customer--order-created" is no option).
options() {
    grep -oE '(^|[^A-Za-z0-9-])--[a-z][a-z-]*' | sed 's/^[^-]*//' | sort -u
}

for page in txmsg.1 txmsg-relay.1 txmsg.7; do
    if [ ! -f "$mandir/$page" ]; then
        fail "$mandir/$page is missing: is scdoc installed (scripts/install-deps)?"
        continue
    fi
    render "$mandir/$page" >"$tmp/$page.txt"
    if ! grep -q '^NAME' "$tmp/$page.txt"; then
        fail "$page rendered without a NAME section"
    fi
done
[ "$status" -eq 0 ] || exit 1

# check_options PAGE HELPTEXT WHAT: every option of HELPTEXT is in PAGE.
check_options() {
    printf '%s\n' "$2" | options >"$tmp/help-options"
    if [ ! -s "$tmp/help-options" ]; then
        fail "$3 printed no long option: did --help change?"
    fi
    options <"$tmp/$1.txt" >"$tmp/page-options"
    for opt in $(comm -23 "$tmp/help-options" "$tmp/page-options"); do
        fail "$3 prints $opt, which $1 does not mention"
    done
}

# "Commands:" lists: the first word of each indented line after the heading.
commands() {
    sed -n '/^Commands:/,/^$/{/^  [a-z]/p}' | awk '{print $1}' | sed 's/|.*//' | sort -u
}

# All the page's text on one line, for phrases that a line break may split.
tr -s ' \n' '  ' <"$tmp/txmsg.1.txt" >"$tmp/txmsg.1.flat"

checked=0
help=$("$txmsg" --help) || fail "txmsg --help failed"
check_options txmsg.1 "$help" "txmsg --help"
groups=$(printf '%s\n' "$help" | commands)
[ -n "$groups" ] || fail "txmsg --help lists no command"
for group in $groups; do
    ghelp=$("$txmsg" "$group" --help) || fail "txmsg $group --help failed"
    subs=$(printf '%s\n' "$ghelp" | commands)
    if [ -z "$subs" ]; then # a command of its own, such as monitor
        check_options txmsg.1 "$ghelp" "txmsg $group --help"
        if ! grep -qF " $group " "$tmp/txmsg.1.flat"; then
            fail "txmsg.1 does not describe the command $group"
        fi
        checked=$((checked + 1))
        continue
    fi
    for sub in $subs; do
        chelp=$("$txmsg" "$group" "$sub" --help) || fail "txmsg $group $sub --help failed"
        check_options txmsg.1 "$chelp" "txmsg $group $sub --help"
        if ! grep -qF " $group $sub " "$tmp/txmsg.1.flat"; then
            fail "txmsg.1 does not describe the command \"$group $sub\""
        fi
        checked=$((checked + 1))
    done
done

rhelp=$("$relay" --help) || fail "txmsg-relay --help failed"
check_options txmsg-relay.1 "$rhelp" "txmsg-relay --help"

# txmsg(7) covers the environment and the URL forms services are given.
tr -s ' \n' '  ' <"$tmp/txmsg.7.txt" >"$tmp/txmsg.7.flat"
for word in TXMSG_DATABASE_URL TXMSG_BROKER_URL PORT TXMSG_BIND_ADDRESS sqlite:PATH \
    postgresql:// embedded:PATH nats://h1:p1 '?replicas=N' GUARANTEES; do
    if ! grep -qF -- "$word" "$tmp/txmsg.7.flat"; then
        fail "txmsg.7 does not mention $word"
    fi
done

[ "$status" -eq 0 ] && echo "ok: 3 man pages render cleanly; txmsg.1 covers $checked commands" \
    "and their options, txmsg-relay.1 the relay's"
exit $status

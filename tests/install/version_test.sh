#!/bin/sh
# Every program prints "NAME VERSION" for --version, VERSION being the one in
# CMakeLists.txt, exits 0 for --help and 2 for an unknown option.
#   tests/install/version_test.sh VERSION PROGRAM...
set -u
version=$1
shift
status=0
for prog in "$@"; do
    name=$(basename "$prog")
    out=$("$prog" --version 2>&1)
    if [ "$out" != "$name $version" ]; then
        echo "FAIL: $name --version printed \"$out\", want \"$name $version\""
        status=1
    fi
    if ! "$prog" --help >/dev/null 2>&1; then
        echo "FAIL: $name --help did not exit 0"
        status=1
    fi
    "$prog" --no-such-option >/dev/null 2>&1
    rc=$?
    if [ "$rc" -ne 2 ]; then
        echo "FAIL: $name --no-such-option exited $rc, want 2"
        status=1
    fi
done
[ "$status" -eq 0 ] && echo "ok: $# programs print version $version"
exit $status

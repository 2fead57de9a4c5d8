#!/bin/sh
# The Debian package as a user gets it: cpack builds it into a temporary
# folder; its control file names the runtime libraries in Depends; it holds
# the files under /usr where Debian wants them; unpacked with dpkg-deb -x,
# its txmsg and txmsg-relay run from there; lintian finds no error in it.
#   tests/install/package_test.sh BUILD_DIR VERSION
set -u
build=$1
version=$2
status=0
fail() {
    echo "FAIL: $*"
    status=1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$build" && cpack --config CPackConfig.cmake -B "$tmp/out") >"$tmp/cpack.log" 2>&1; then
    cat "$tmp/cpack.log"
    echo "FAIL: cpack failed"
    exit 1
fi
deb=$(find "$tmp/out" -maxdepth 1 -name 'txmsg_*.deb')
arch=$(dpkg --print-architecture)
if [ "$(basename "$deb")" != "txmsg_${version}_${arch}.deb" ]; then
    echo "FAIL: cpack made \"$deb\", want txmsg_${version}_${arch}.deb"
    exit 1
fi

# Control fields.
[ "$(dpkg-deb -f "$deb" Package)" = txmsg ] || fail "Package is not txmsg"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "Version is not $version"
for field in Maintainer Description Section; do
    [ -n "$(dpkg-deb -f "$deb" "$field")" ] || fail "no $field field"
done
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libc6 libsqlite3-0 libpq5 libnats3.4 libjansson4 libmicrohttpd12; do
    printf '%s\n' "$depends" | grep -qE "(^|, )$lib( |,|$)" ||
        fail "Depends lacks $lib: $depends"
done
dpkg-deb -I "$deb" triggers 2>/dev/null | grep -qx 'activate-noawait ldconfig' ||
    fail "no ldconfig trigger"

# Where the files are.
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
dpkg-deb -x "$deb" "$tmp/root"
lib=$tmp/root/usr/lib/$multiarch
for f in usr/bin/txmsg usr/bin/txmsg-relay usr/libexec/txmsg/customers-service \
    usr/libexec/txmsg/orders-service "usr/lib/$multiarch/libtxmsg.so.$version" \
    "usr/lib/$multiarch/libtxmsg.so.0" "usr/lib/$multiarch/libtxmsg.a" \
    "usr/lib/$multiarch/pkgconfig/txmsg.pc" "usr/lib/$multiarch/cmake/txmsg/txmsgConfig.cmake" \
    usr/include/txmsg/txmsg.h usr/share/man/man1/txmsg.1.gz usr/share/man/man1/txmsg-relay.1.gz \
    usr/share/man/man7/txmsg.7.gz usr/lib/systemd/system/txmsg-relay@.service \
    usr/lib/systemd/system/txmsg-service@.service usr/share/doc/txmsg/copyright \
    usr/share/doc/txmsg/changelog.gz usr/share/doc/txmsg/examples/customers.env; do
    [ -e "$tmp/root/$f" ] || [ -L "$tmp/root/$f" ] || fail "the package lacks /$f"
done
grep -q '^prefix=/usr$' "$lib/pkgconfig/txmsg.pc" 2>/dev/null || fail "txmsg.pc does not say prefix=/usr"
# shellcheck disable=SC2016 # the unit's text: systemd expands it, not sh
grep -qx 'ExecStart=/usr/bin/txmsg-relay $TXMSG_RELAY_OPTS' \
    "$tmp/root/usr/lib/systemd/system/txmsg-relay@.service" 2>/dev/null ||
    fail "txmsg-relay@.service does not run /usr/bin/txmsg-relay"

# The programs run from the unpacked tree, on the packaged library.
out=$(LD_LIBRARY_PATH=$lib "$tmp/root/usr/bin/txmsg" --version 2>&1)
[ "$out" = "txmsg $version" ] || fail "txmsg --version printed \"$out\""
out=$(LD_LIBRARY_PATH=$lib "$tmp/root/usr/bin/txmsg-relay" --help 2>&1) ||
    fail "txmsg-relay --help failed: $out"
printf '%s\n' "$out" | grep -q -- '--database-url' || fail "txmsg-relay --help printed \"$out\""
LD_LIBRARY_PATH=$lib ldd "$tmp/root/usr/bin/txmsg-relay" | grep -q "$lib/libtxmsg.so.0" ||
    fail "txmsg-relay does not load the packaged libtxmsg.so.0"

# lintian: no error (E:); its warnings are listed for the reader.
if ! command -v lintian >/dev/null; then
    fail "lintian is missing: run scripts/install-deps"
elif ! lintian --no-tag-display-limit "$deb" >"$tmp/lintian" 2>"$tmp/lintian.err" &&
    ! grep -q '^E:' "$tmp/lintian"; then
    fail "lintian did not run:"
    cat "$tmp/lintian.err"
elif grep -q '^E:' "$tmp/lintian"; then
    fail "lintian finds errors:"
    cat "$tmp/lintian"
elif [ -s "$tmp/lintian" ]; then
    echo "lintian warnings:"
    cat "$tmp/lintian"
fi

[ "$status" -eq 0 ] && echo "ok: $(basename "$deb") installs under /usr and runs; Depends: $depends"
exit $status

#!/usr/bin/env bash
# Checks a prefix made by scripts/install.sh: the files and links, the soname and version
# against Cargo.toml, that the shared library needs only the C runtime, that debug info is
# kept beside it (not in it, nor in the archive), and that pkg-config and CMake see the version.
# Prints the shipped library's size and NEEDED list (BENCHMARKS.md, "Library size").
#   scripts/check_install.sh <prefix>
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=$(cd "${1:?usage: $0 <prefix>}" && pwd)
LIB=$PREFIX/lib
status=0
fail() { echo "FAIL install: $*"; status=1; }

VERSION=$(cargo pkgid -p lungseg-sys)
VERSION=${VERSION##*[#@]}
SONAME=liblungseg.so.${VERSION%%.*}
REAL=liblungseg.so.$VERSION

for f in "$LIB/$REAL" "$LIB/liblungseg.a" "$LIB/.debug/$REAL.debug" \
         "$LIB/pkgconfig/lungseg.pc" "$LIB/pkgconfig/lungseg-static.pc" \
         "$LIB/cmake/lungseg/lungsegConfig.cmake" "$LIB/cmake/lungseg/lungsegConfigVersion.cmake"; do
  [ -f "$f" ] && [ ! -L "$f" ] || fail "$f is not a file"
done
[ "$(readlink "$LIB/$SONAME")" = "$REAL" ] || fail "$SONAME does not link to $REAL"
[ "$(readlink "$LIB/liblungseg.so")" = "$SONAME" ] || fail "liblungseg.so does not link to $SONAME"
for h in lungseg.h lungseg.hpp; do
  cmp -s "include/$h" "$PREFIX/include/$h" || fail "installed $h differs from include/$h"
done

dyn=$(readelf -d "$LIB/$REAL")
grep -q "Library soname: \[$SONAME\]" <<<"$dyn" || fail "soname is not $SONAME"
needed=$(sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' <<<"$dyn" | tr '\n' ' ')
for n in $needed; do
  case "$n" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|libgcc_s.so.*|ld-linux*) ;;
    *) fail "$REAL needs $n (only the C runtime is allowed)" ;;
  esac
done

sections() { readelf -S --wide "$1" | sed -n 's/^ *\[ *[0-9]*\] \([^ ]*\) .*/\1/p'; }
if sections "$LIB/$REAL" | grep -q '^\.debug_'; then fail "$REAL carries debug sections"; fi
sections "$LIB/$REAL" | grep -qx '\.gnu_debuglink' || fail "$REAL has no .gnu_debuglink"
link=$(readelf --string-dump=.gnu_debuglink "$LIB/$REAL" 2>/dev/null | sed -n 's/.*\] *//p' | head -1)
[ "$link" = "$REAL.debug" ] || fail "$REAL links to debug file '$link', not $REAL.debug"
sections "$LIB/.debug/$REAL.debug" | grep -qx '\.debug_info' || fail "$REAL.debug has no .debug_info"
build_id() { readelf -n "$1" | sed -n 's/.*Build ID: //p'; }
[ "$(build_id "$LIB/$REAL")" = "$(build_id "$LIB/.debug/$REAL.debug")" ] \
  || fail "$REAL and its .debug file have different build ids"
if readelf -S --wide "$LIB/liblungseg.a" | grep -q ' \.debug_info'; then
  fail "liblungseg.a carries debug info"
fi

pc=$(PKG_CONFIG_PATH=$LIB/pkgconfig pkg-config --modversion lungseg)
[ "$pc" = "$VERSION" ] || fail "lungseg.pc says $pc, Cargo.toml $VERSION"
grep -qx "set(PACKAGE_VERSION \"$VERSION\")" "$LIB/cmake/lungseg/lungsegConfigVersion.cmake" \
  || fail "lungsegConfigVersion.cmake does not say $VERSION"

echo "installed $REAL: $(stat -c %s "$LIB/$REAL") bytes stripped" \
  "($(stat -c %s "$LIB/.debug/$REAL.debug") bytes of debug info apart), soname $SONAME, NEEDED: $needed"
[ $status = 0 ] && echo "ok   install layout"
exit $status

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

# Section names, read whole (grep -q on a pipe would end readelf early: a false "no" under pipefail).
sections() { readelf -S --wide "$1" 2>/dev/null | sed -n 's/^ *\[ *[0-9]*\] \([^ ]*\) .*/\1/p'; }
so_sections=$(sections "$LIB/$REAL")
if grep -q '^\.debug_' <<<"$so_sections"; then fail "$REAL carries debug sections"; fi
grep -qx '\.gnu_debuglink' <<<"$so_sections" || fail "$REAL has no .gnu_debuglink"
link=$(readelf --string-dump=.gnu_debuglink "$LIB/$REAL" 2>/dev/null | sed -n 's/.*\] *//p' | head -1)
[ "$link" = "$REAL.debug" ] || fail "$REAL links to debug file '$link', not $REAL.debug"
grep -qx '\.debug_info' <<<"$(sections "$LIB/.debug/$REAL.debug")" || fail "$REAL.debug has no .debug_info"
build_id() { readelf -n "$1" | sed -n 's/.*Build ID: //p'; }
[ "$(build_id "$LIB/$REAL")" = "$(build_id "$LIB/.debug/$REAL.debug")" ] \
  || fail "$REAL and its .debug file have different build ids"
if grep -qx '\.debug_info' <<<"$(sections "$LIB/liblungseg.a")"; then
  fail "liblungseg.a carries debug info"
fi

pc=$(PKG_CONFIG_PATH=$LIB/pkgconfig pkg-config --modversion lungseg)
[ "$pc" = "$VERSION" ] || fail "lungseg.pc says $pc, Cargo.toml $VERSION"
grep -qx "set(PACKAGE_VERSION \"$VERSION\")" "$LIB/cmake/lungseg/lungsegConfigVersion.cmake" \
  || fail "lungsegConfigVersion.cmake does not say $VERSION"

# The default model is installed, byte for byte, where pkg-config points.
model=$(PKG_CONFIG_PATH=$LIB/pkgconfig pkg-config --variable=default_model lungseg)
cmp -s "$model" models/lungseg-default.safetensors \
  || fail "pkg-config's default_model ($model) is not models/lungseg-default.safetensors"

# The .pc files find the prefix from their own place: a moved copy links and runs, shared
# (through its rpath) and static.
moved=$(mktemp -d)
cp -a "$PREFIX" "$moved/prefix"
printf '#include <stdio.h>\n#include <lungseg.h>\nint main(void) { puts(lungseg_version()); return 0; }\n' \
  > "$moved/v.c"
for pc in lungseg lungseg-static; do
  flags=$(PKG_CONFIG_PATH=$moved/prefix/lib/pkgconfig pkg-config --cflags --libs $pc)
  if cc "$moved/v.c" -o "$moved/v-$pc" $flags -Wl,-rpath,"$moved/prefix/lib" \
     && [ "$("$moved/v-$pc")" = "$VERSION" ]; then :; else fail "a moved prefix does not link with $pc.pc"; fi
done
rm -rf "$moved"

# find_package takes any request of the same major version that is not newer.
cmake_finds() { # <requested version or "">
  local dir; dir=$(mktemp -d)
  printf 'cmake_minimum_required(VERSION 3.16)\nproject(probe NONE)\nfind_package(lungseg %s CONFIG REQUIRED)\n' "$1" \
    > "$dir/CMakeLists.txt"
  cmake -S "$dir" -B "$dir/build" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null 2>&1; local rc=$?
  rm -rf "$dir"; return $rc
}
next_minor=${VERSION%%.*}.$(( $(cut -d. -f2 <<<"$VERSION") + 1 ))
next_major=$(( ${VERSION%%.*} + 1 )).0
for v in "" "$VERSION" "${VERSION%%.*}"; do cmake_finds "$v" || fail "find_package(lungseg $v) failed"; done
for v in "$next_minor" "$next_major"; do
  if cmake_finds "$v"; then fail "find_package(lungseg $v) accepted $VERSION"; fi
done

echo "installed $REAL: $(stat -c %s "$LIB/$REAL") bytes" \
  "($(stat -c %s "$LIB/.debug/$REAL.debug") bytes of debug info apart), soname $SONAME, NEEDED: $needed"
[ $status = 0 ] && echo "ok   install layout"
exit $status

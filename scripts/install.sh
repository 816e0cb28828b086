#!/usr/bin/env bash
# Builds lungseg-sys and installs it as a C/C++ library under a prefix:
#   lib/liblungseg.so.X.Y.Z (soname liblungseg.so.X) + liblungseg.so.X + liblungseg.so links
#   lib/liblungseg.a
#   lib/.debug/liblungseg.so.X.Y.Z.debug   the shared library's debug info (gdb finds it
#                                           through the .gnu_debuglink of the stripped library)
#   include/lungseg.h, include/lungseg.hpp
#   lib/pkgconfig/lungseg.pc, lungseg-static.pc
#   lib/cmake/lungseg/lungsegConfig.cmake, lungsegConfigVersion.cmake
#   share/lungseg/lungseg-default.safetensors   the default model (models/), with its README
#                                               and evaluation report
# The .pc and CMake files come from packaging/*.in with the version of lungseg-sys/Cargo.toml;
# they locate the prefix relative to themselves, so the tree can be moved as a whole.
#   scripts/install.sh --prefix DIR [--release]
# The cargo target folder is $CARGO_TARGET_DIR (default: target).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 --prefix DIR [--release]" >&2; exit 2; }
PREFIX="" PROFILE=debug CARGO_PROFILE=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || usage; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#--prefix=}; shift ;;
    --release) PROFILE=release CARGO_PROFILE=(--release); shift ;;
    *) usage ;;
  esac
done
[ -n "$PREFIX" ] || usage
mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
TARGET=${CARGO_TARGET_DIR:-$PWD/target}

# What the static library needs from the system besides libc (rustc --print
# native-static-libs, less what every C compiler driver links anyway).
LINK_LIBS=(pthread dl m)

# "path+file:///…/lungseg-sys#lungseg@0.1.0" or "…#0.1.0", depending on cargo's format.
VERSION=$(cargo pkgid -p lungseg-sys)
VERSION=${VERSION##*[#@]}
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "unexpected version '$VERSION'" >&2; exit 1; }
SOVERSION=${VERSION%%.*}
SONAME=liblungseg.so.$SOVERSION
REAL=liblungseg.so.$VERSION

cargo build -p lungseg-sys --lib "${CARGO_PROFILE[@]}"
BUILT=$TARGET/$PROFILE
# lungseg-sys/build.rs sets the soname; without it a program records the unversioned name.
grep -q "Library soname: \[$SONAME\]" <<<"$(readelf -d "$BUILT/liblungseg.so")" \
  || { echo "$BUILT/liblungseg.so lacks the soname $SONAME" >&2; exit 1; }

LIB=$PREFIX/lib
mkdir -p "$LIB/.debug" "$LIB/pkgconfig" "$LIB/cmake/lungseg" "$PREFIX/include"

# Debug info goes beside, not into, the shipped library; its symbol table goes with it.
objcopy --only-keep-debug "$BUILT/liblungseg.so" "$LIB/.debug/$REAL.debug"
chmod 0644 "$LIB/.debug/$REAL.debug"
objcopy --strip-unneeded --remove-section=.comment \
  --add-gnu-debuglink="$LIB/.debug/$REAL.debug" "$BUILT/liblungseg.so" "$LIB/$REAL.tmp"
mv -f "$LIB/$REAL.tmp" "$LIB/$REAL"
ln -sfn "$REAL" "$LIB/$SONAME"
ln -sfn "$SONAME" "$LIB/liblungseg.so"
# The archive keeps its symbols (a linker needs them) but not its debug info.
objcopy --strip-debug "$BUILT/liblungseg.a" "$LIB/liblungseg.a.tmp"
mv -f "$LIB/liblungseg.a.tmp" "$LIB/liblungseg.a"

install -m 0644 include/lungseg.h include/lungseg.hpp "$PREFIX/include/"
# The default model beside the library: hosts and the examples find it through
# pkg-config --variable=default_model lungseg, or lungseg_DEFAULT_MODEL in CMake.
mkdir -p "$PREFIX/share/lungseg"
install -m 0644 models/lungseg-default.safetensors models/README.md "$PREFIX/share/lungseg/"
# Where models/README.md links it (its figures stay in the source tree).
mkdir -p "$PREFIX/share/lungseg/lungseg-default-report"
install -m 0644 models/lungseg-default-report/report.md "$PREFIX/share/lungseg/lungseg-default-report/"

fill() { # <template> <destination>
  sed -e "s|@VERSION@|$VERSION|g" -e "s|@SOVERSION@|$SOVERSION|g" \
      -e "s|@LINK_FLAGS@|${LINK_LIBS[*]/#/-l}|g" \
      -e "s|@LINK_LIBS@|$(IFS=';'; echo "${LINK_LIBS[*]}")|g" "$1" > "$2.tmp"
  if grep -n '@[A-Z_]*@' "$2.tmp" >&2; then echo "unfilled placeholder in $1" >&2; exit 1; fi
  mv -f "$2.tmp" "$2"
}
fill packaging/lungseg.pc.in "$LIB/pkgconfig/lungseg.pc"
fill packaging/lungseg-static.pc.in "$LIB/pkgconfig/lungseg-static.pc"
fill packaging/lungsegConfig.cmake.in "$LIB/cmake/lungseg/lungsegConfig.cmake"
fill packaging/lungsegConfigVersion.cmake.in "$LIB/cmake/lungseg/lungsegConfigVersion.cmake"

echo "installed lungseg $VERSION ($PROFILE) under $PREFIX"

#!/usr/bin/env bash
# The C/C++ examples (lungseg.hpp's among them) as memory checkers see them, built against an
# install prefix (scripts/install.sh --release):
#  - built with AddressSanitizer + UndefinedBehaviorSanitizer (any report is fatal) and linked
#    against the static library, run on a synthetic scan with the small fixture model;
#  - the plain shared build run under valgrind memcheck, which also sees the (uninstrumented)
#    Rust code: invalid reads/writes or uninitialised jumps anywhere in lungseg fail the step
#    (the C programs and the C++ wrapper's example).
#   scripts/check_c_sanitizers.sh <cargo target dir>
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${1:-${CARGO_TARGET_DIR:-target}}
TARGET=$(cd "$TARGET" && pwd)
MODEL=$PWD/lungseg-sys/tests/fixtures/small_f16_element.safetensors
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

PREFIX=$WORK/prefix
CARGO_TARGET_DIR=$TARGET scripts/install.sh --release --prefix "$PREFIX"
cargo build -p lungseg-train --target-dir "$TARGET"
"$TARGET/debug/lungseg-train" synth --out "$WORK/data" --scans 1 --seed 11 >/dev/null
SCAN=$(ls "$WORK"/data/subset0/*.mhd | head -1)
read -r X Y Z < <(awk -F, 'NR==2 {print $2, $3, $4; exit}' "$WORK/data/annotations.csv")
: "${X:=0}" "${Y:=0}" "${Z:=0}"

SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"
make -s -C c-examples PREFIX="$PREFIX" BIN="$WORK/asan" \
  CFLAGS="-std=c99 -Wall -Wextra -Werror -pedantic $SAN" \
  CXXFLAGS="-std=c++17 -Wall -Wextra -Werror -pedantic $SAN" all
make -s -C c-examples PREFIX="$PREFIX" BIN="$WORK/plain" all

# The arguments each example takes; predict_nodule writes its maps into <maps dir>.
example_args() { # <exe name> <maps dir>
  case "$1" in
    scan_patch_*) args=("$SCAN" "$X" "$Y" "$Z") ;;
    predict_nodule_*) mkdir -p "$2"; args=("$SCAN" "$X" "$Y" "$Z" "$MODEL" "$2") ;;
    volume_uncertainty_*) args=("$MODEL") ;;
    lungseg_hpp_test_*) args=() ;;
  esac
}

status=0
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for exe in "$WORK"/asan/*_static "$WORK"/asan/*_cpp20_shared; do
  name=$(basename "$exe")
  example_args "$name" "$WORK/maps-$name"
  if "$exe" "${args[@]}" > "$WORK/$name.out" 2> "$WORK/$name.err" \
     && grep -q '^ok$' "$WORK/$name.out"; then
    echo "ok   asan+ubsan $name"
  else
    echo "FAIL asan+ubsan $name"; tail -40 "$WORK/$name.err"; status=1
  fi
done
for exe in "$WORK"/plain/*_c_shared "$WORK"/plain/volume_uncertainty_cpp_shared; do
  name=$(basename "$exe")
  example_args "$name" "$WORK/vg-$name"
  if valgrind -q --error-exitcode=99 --track-origins=yes "$exe" "${args[@]}" \
       > "$WORK/vg-$name.out" 2> "$WORK/vg-$name.err" && grep -q '^ok$' "$WORK/vg-$name.out"; then
    echo "ok   valgrind $name"
  else
    echo "FAIL valgrind $name"; tail -60 "$WORK/vg-$name.err"; status=1
  fi
done
exit $status

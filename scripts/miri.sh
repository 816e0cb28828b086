#!/usr/bin/env bash
# Runs the unsafe-heavy unit tests under miri (undefined behaviour, data races, leaks): the C ABI
# argument helpers (pointer/length/alignment/struct_size checks, enum conversions; `ffi::`) and
# the process-wide worker pool (`nn::team`). The rest of the library (SIMD kernels, file I/O)
# is outside miri's reach or too slow under it; tests that open models or files are marked
# `cfg_attr(miri, ignore)`.
#
# Installs the nightly toolchain's miri component when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  # The machine's nightly first (no toolchain download); a fresh nightly only if that fails.
  rustup component add --toolchain nightly miri rust-src ||
    rustup toolchain install nightly --profile minimal --component miri,rust-src
fi
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
filters=("$@")
[ "${#filters[@]}" -gt 0 ] || filters=(ffi:: nn::team)
cargo +nightly miri test -p lungseg-sys --lib -- "${filters[@]}"

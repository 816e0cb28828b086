#!/usr/bin/env bash
# The one command that runs every test (README; .ci/run calls exactly this).
# Installs what it needs: SimpleITK + numpy (outside oracle), cmake (C example build), valgrind,
# nightly miri (scripts/miri.sh), cargo-fuzz (scripts/fuzz.sh), the aarch64 rustup target,
# gcc-aarch64-linux-gnu and qemu-user (scripts/aarch64-check.sh).
# FUZZ_SECONDS (default 60) sets the time per fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
export CARGO_TERM_COLOR=never
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "setup"
if ! python3 -c 'import SimpleITK, numpy' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check SimpleITK numpy
fi
if ! command -v cmake >/dev/null; then
  SUDO=$(command -v sudo >/dev/null && [ "$(id -u)" != 0 ] && echo sudo || true)
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
fi
if ! command -v valgrind >/dev/null; then
  SUDO=$(command -v sudo >/dev/null && [ "$(id -u)" != 0 ] && echo sudo || true)
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi

step "format"
cargo fmt --all --check

step "clippy (workspace, all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

# The workspace tests run with lungseg-train's LibTorch backend compiled in (the flex tests run
# as well), so the Burn stack is built once; clippy above checks the default build without it.
# LUNGSEG_TEST_TCH=0 skips LibTorch (and its ~3 GB pip install of torch 2.9.0).
if [ "${LUNGSEG_TEST_TCH:-1}" = 1 ]; then
  step "cargo test (workspace, lungseg-train with --features tch; torch via scripts/torch_env.sh)"
  ( source scripts/torch_env.sh
    cargo test --workspace --no-fail-fast --features lungseg-train/tch )
else
  step "cargo test (workspace)"
  cargo test --workspace --no-fail-fast
fi

if grep -q '^cuda *=' lungseg-sys/Cargo.toml; then
  step "cuda feature builds without a CUDA toolkit"
  cargo clippy -p lungseg-sys --features cuda --all-targets -- -D warnings
  cargo test -p lungseg-sys --features cuda --no-fail-fast
  step "CUDA kernels compile with NVRTC for sm_80 and sm_90, no register spills"
  scripts/nvrtc-check.sh
fi

step "aarch64: the engine tests (NEON kernel) cross-built and run under qemu-user"
scripts/aarch64-check.sh

step "C and C++ examples (shared + static, make + cmake)"
scripts/check_c_examples.sh "$CARGO_TARGET_DIR"

step "C and C++ examples under AddressSanitizer+UBSan, and valgrind over the Rust code"
scripts/check_c_sanitizers.sh "$CARGO_TARGET_DIR"

step "miri: FFI argument helpers and the worker pool"
scripts/miri.sh

if [ -x scripts/fuzz.sh ]; then
  step "fuzz targets, ${FUZZ_SECONDS}s each"
  scripts/fuzz.sh "$FUZZ_SECONDS"
fi

step "all tests passed"

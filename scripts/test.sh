#!/usr/bin/env bash
# The one command that runs every test (README; .ci/run calls exactly this).
# Installs what it needs: SimpleITK + numpy (outside oracle), cmake and pkg-config (C example
# builds against an install prefix), valgrind, nightly miri (scripts/miri.sh), cargo-fuzz
# (scripts/fuzz.sh), the aarch64 rustup target, gcc-aarch64-linux-gnu and qemu-user
# (scripts/aarch64-check.sh).
# FUZZ_SECONDS (default 30) sets the time per fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
export CARGO_TERM_COLOR=never
# A one-off build gains nothing from incremental caches, which took 9 GB beside the binaries.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "setup"
if ! python3 -c 'import SimpleITK, numpy, highdicom, pydicom' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check SimpleITK numpy highdicom pydicom
fi
# Installs a Debian package when its command is missing.
need() { # <command> <package>
  command -v "$1" >/dev/null && return
  local sudo; sudo=$(command -v sudo >/dev/null && [ "$(id -u)" != 0 ] && echo sudo || true)
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need cmake cmake
need pkg-config pkg-config
need valgrind valgrind

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
  cargo clippy -p lungseg-sys --features cuda-emu --all-targets -- -D warnings
  # The library's unit tests and the tests whose code or expectations change with the feature
  # (the rest of the suite runs the same CPU code as above).
  cargo test -p lungseg-sys --features cuda --no-fail-fast --lib --test cuda_device \
    --test cuda_reference --test cuda_philox_c --test c_abi --test ffi_model
  step "CUDA kernels executed on the CPU by the host emulator (ASan + UBSan)"
  scripts/cuda-emu.sh
  step "CUDA kernels: NVRTC for sm_80 and sm_90, no register spills, SASS counts as designed"
  # Runs scripts/nvrtc-check.sh (compile + spill check) and compares each tiled kernel's
  # static SASS counts (HMMA, LDSM, LDGSTS, LDG, ...) with the design line in its .cu header.
  scripts/cuda-sass-check.sh
fi

# lungseg-sys's `dicom` feature needs no step of its own: lungseg-train enables it, so the
# workspace clippy and tests above build lungseg-sys with it (dicom_series, dicom_seg against
# highdicom, the dicom C tests and fuzz seeds included); the cuda step's `-p lungseg-sys` builds
# check the library without it.

step "aarch64: the engine tests (NEON kernel) cross-built and run under qemu-user; NEON spill check"
scripts/aarch64-check.sh

step "install into a prefix; C and C++ examples against it (shared + static, pkg-config + find_package)"
scripts/check_c_examples.sh "$CARGO_TARGET_DIR"

if [ "$(uname -m)" = x86_64 ]; then
  step "CPU kernels: no register spills in the AVX-512 and AVX2 FMA loops (the release build above)"
  python3 scripts/cpu-spill-check.py "$CARGO_TARGET_DIR/release/liblungseg.so"
fi

step "C and C++ examples under AddressSanitizer+UBSan, and valgrind over the Rust code"
scripts/check_c_sanitizers.sh "$CARGO_TARGET_DIR"

step "miri: FFI argument helpers and the worker pool"
scripts/miri.sh

if [ -x scripts/fuzz.sh ]; then
  step "fuzz targets, ${FUZZ_SECONDS}s each"
  scripts/fuzz.sh "$FUZZ_SECONDS"
fi

step "all tests passed"

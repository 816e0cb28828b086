#!/usr/bin/env bash
# Correctness of the CPU engine on aarch64 (the NEON kernel), cross-built and run under
# qemu-user: the kernel, parity and determinism tests of lungseg-sys that exercise `nn`, on
# every kernel the emulated CPU runs (NEON and portable). Speed under emulation means nothing.
# Installs what it needs: the rustup target, Debian's aarch64 cross gcc (the linker) and qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
TARGET=aarch64-unknown-linux-gnu

if ! rustup target list --installed | grep -qx "$TARGET"; then
  rustup target add "$TARGET"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  SUDO=$(command -v sudo >/dev/null && [ "$(id -u)" != 0 ] && echo sudo || true)
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user >/dev/null
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
# The variable must not force an x86 kernel onto the emulated CPU.
unset LUNGSEG_CPU_KERNEL

test_args=(-p lungseg-sys --target "$TARGET" --no-fail-fast)
# Unit tests of the kernel selection and the thread team.
cargo test "${test_args[@]}" --lib -- nn::
# Kernels against their references on odd shapes, all kernels bit-identical across threads.
cargo test "${test_args[@]}" --test engine_kernels
# Winograd against the direct convolution and the f64 reference, FMA kernels bit-identical.
cargo test "${test_args[@]}" --test engine_winograd
# The small PyTorch fixtures on every kernel (the default network is left to native runs:
# minutes under emulation), and MC determinism across thread counts.
cargo test "${test_args[@]}" --test engine_parity -- small
cargo test "${test_args[@]}" --test engine_mc -- same_seed
# The NEON tiles' register budget (conv3.rs, winograd/gemm.rs): no vector register reaches the
# stack inside an FMA loop of the release build (optimisation decides spills; the test builds above are dev).
cargo build -p lungseg-sys --lib --release --target "$TARGET"
python3 scripts/cpu-spill-check.py --arch aarch64 "$CARGO_TARGET_DIR/$TARGET/release/liblungseg.so"

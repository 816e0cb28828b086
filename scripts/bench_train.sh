#!/usr/bin/env bash
# Training throughput of every Burn CPU backend against PyTorch (CPU), same U-Net, loss (mean BCE
# + pooled soft Dice), Adam step, channel dropout 0.2, BatchNorm in training mode, patch size
# and batch, interleaved in one run so that all see the same load: forward + backward + Adam on
# random data, median of STEPS steps after one warm-up step, for the demo net (32³, batch 8) and
# the default net (64³, batch 2). Each line also gives the CPU seconds per step: "cores busy"
# well below THREADS means the machine was loaded.
#
# Usage: scripts/bench_train.sh [STEPS] [ROUNDS]
#   THREADS (default: nproc) threads for every peer; PROFILE (default release) cargo profile;
#   X86V4=1 also builds and runs flex with its AVX-512 kernels (feature x86-v4; a second
#   build of the Burn stack). AB=1 also runs LibTorch through the stock burn-tch (the vendored
#   crate built with LUNGSEG_TCH_STOCK=1: Burn's generic convolution and batch-norm gradients,
#   vendor/burn-tch/LUNGSEG-PATCH.md), so the patch is measured against its absence in one run. Installs the pinned PyTorch (scripts/torch_env.sh), which is also
#   the libtorch that `--backend tch` runs on.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-5}
ROUNDS=${2:-2}
PROFILE=${PROFILE:-release}
THREADS=${THREADS:-$(nproc)}
source scripts/torch_env.sh
TARGET=${CARGO_TARGET_DIR:-target}
OUT=$TARGET/bench-train
mkdir -p "$OUT"

build() { # features, name of the copy
  cargo build -q --profile "$PROFILE" -p lungseg-train --features "$1" --example train_throughput
  local dir=$PROFILE
  [ "$PROFILE" = dev ] && dir=debug
  cp "$TARGET/$dir/examples/train_throughput" "$OUT/$2"
}
if [ "${AB:-0}" = 1 ]; then
  LUNGSEG_TCH_STOCK=1 build tch burn-stock
fi
build tch burn
[ "${X86V4:-0}" = 1 ] && build tch,x86-v4 burn-x86v4

# Both LibTorch (OpenMP) and flex (rayon) take their thread count from these.
export OMP_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS
lscpu | grep -m1 "Model name" || true
echo "threads: $THREADS, profile: $PROFILE, $(python -c 'import torch; print("torch", torch.__version__)')"
uptime
for round in $(seq "$ROUNDS"); do
  # size batch channels: the demo's config, then the default config.
  for cfg in "32 8 8,16,32,64" "64 2 16,32,64,128,256"; do
    set -- $cfg
    "$OUT/burn" "$1" "$2" "$STEPS" "$3" flex 2>/dev/null
    [ -x "$OUT/burn-x86v4" ] && [ "${X86V4:-0}" = 1 ] && \
      "$OUT/burn-x86v4" "$1" "$2" "$STEPS" "$3" flex 2>/dev/null | sed 's/^burn Flex/burn Flex+x86-v4/'
    "$OUT/burn" "$1" "$2" "$STEPS" "$3" tch cpu 2>/dev/null
    [ "${AB:-0}" = 1 ] && \
      "$OUT/burn-stock" "$1" "$2" "$STEPS" "$3" tch cpu 2>/dev/null | sed 's/^burn \([A-Za-z]*\)/burn \1 (stock burn-tch)/'
    python scripts/train_torch.py --bench "$STEPS" --size "$1" --batch "$2" --channels "$3" \
      --threads "$THREADS" --dropout 0.2
  done
done
uptime

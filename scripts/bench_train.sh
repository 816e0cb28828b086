#!/usr/bin/env bash
# Training throughput, Burn (flex CPU) vs PyTorch (CPU), same U-Net, loss, optimiser, patch size
# and batch, interleaved in one run: forward + backward + Adam step on random data, median of
# STEPS steps after one warm-up step. Usage: scripts/bench_train.sh [STEPS] [ROUNDS]
# Needs: pip install torch numpy. Prints one line per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-5}
ROUNDS=${2:-2}
cargo build --release -q -p lungseg-train --example train_throughput
BURN=${CARGO_TARGET_DIR:-target}/release/examples/train_throughput
THREADS=$(nproc)
lscpu | grep -m1 "Model name" || true
echo "threads: $THREADS"
for round in $(seq "$ROUNDS"); do
  # size batch channels: the demo's config, then the default config.
  for cfg in "32 8 8,16,32,64" "64 2 16,32,64,128,256"; do
    set -- $cfg
    "$BURN" "$1" "$2" "$STEPS" "$3" 2>/dev/null
    python3 scripts/train_torch.py --bench "$STEPS" --size "$1" --batch "$2" --channels "$3" \
      --threads "$THREADS" --dropout 0.2
  done
done

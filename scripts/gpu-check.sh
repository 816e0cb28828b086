#!/usr/bin/env bash
# GPU verification of the CUDA backend in two halves (docs/cuda.md):
#   scripts/gpu-check.sh build   here (Rust toolchain, no GPU): builds the GPU test binary, the
#                                device-selection test and the benchmark with --features cuda
#                                into .gpu-carry/ (ignored, < 64 MiB) with what they need.
#   scripts/gpu-check.sh run     on the GPU machine (no Rust, no network; nvcc, PyTorch,
#                                compute-sanitizer): GPU tests with LUNGSEG_GPU_TESTS=1 (a
#                                missing GPU fails them), compute-sanitizer memcheck on one MC
#                                prediction, lungseg vs PyTorch+cuDNN fp16, a table last.
#                                Under 8 minutes; exit status non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CARRY=$ROOT/.gpu-carry
mode=${1:-}

build() {
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  rm -rf "$CARRY" && mkdir -p "$CARRY/bin" "$CARRY/prebuilt"
  # Test binaries: find them through cargo's JSON messages.
  cargo test -p lungseg-sys --features cuda --no-run --message-format=json \
      --test cuda_gpu --test cuda_device > "$CARRY/build.json"
  python3 - "$CARRY" <<'PY'
import json, shutil, sys, os
carry = sys.argv[1]
for line in open(os.path.join(carry, "build.json")):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("cuda_gpu", "cuda_device"):
        shutil.copy(m["executable"], os.path.join(carry, "bin", m["target"]["name"]))
PY
  rm "$CARRY/build.json"
  cargo build -p lungseg-sys --features cuda --example cuda_bench
  cp "$CARGO_TARGET_DIR/debug/examples/cuda_bench" "$CARRY/bin/"
  # Fixtures the GPU tests read (they look in LUNGSEG_FIXTURES), the benchmark's model for
  # PyTorch, and prebuilt cubins in case the GPU host's libnvrtc is missing or too old.
  mkdir -p "$CARRY/fixtures"
  cp lungseg-sys/tests/fixtures/default.input.f32 "$CARRY/fixtures/"
  "$CARRY/bin/cuda_bench" --write-model "$CARRY/model.safetensors" >/dev/null
  cp scripts/bench_cuda_torch.py "$CARRY/"
  scripts/nvrtc-check.sh --emit "$CARRY/prebuilt" > "$CARRY/nvrtc-report.txt"
  strip "$CARRY"/bin/* 2>/dev/null || true
  du -sh "$CARRY"
  size=$(du -sm "$CARRY" | cut -f1)
  [ "$size" -le 64 ] || { echo "FAIL: .gpu-carry is ${size} MiB (> 64)" >&2; exit 1; }
  echo "built: carry .gpu-carry, then run: scripts/gpu-check.sh run"
}

run() {
  [ -x "$CARRY/bin/cuda_gpu" ] || { echo "FAIL: $CARRY/bin/cuda_gpu missing: run 'scripts/gpu-check.sh build' first and carry .gpu-carry" >&2; exit 1; }
  export LUNGSEG_GPU_TESTS=1 LUNGSEG_FIXTURES="$CARRY/fixtures"
  export LUNGSEG_CUDA_CACHE=${LUNGSEG_CUDA_CACHE:-$CARRY/cache}
  # Used only when libnvrtc cannot be loaded (the probe and compile.rs decide).
  export LUNGSEG_CUDA_PREBUILT="$CARRY/prebuilt"
  for d in /usr/local/cuda/lib64 ${CUDA_HOME:+$CUDA_HOME/lib64}; do
    [ -e "$d/libnvrtc.so.12" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
  fail=0
  results=$CARRY/results.md
  : > "$results"
  step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }
  step "device"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  step "GPU tests (LUNGSEG_GPU_TESTS=1)"
  if timeout 240 "$CARRY/bin/cuda_gpu" --test-threads=1 --nocapture; then tests=pass; else tests=FAIL; fail=1; fi
  if timeout 30 "$CARRY/bin/cuda_device" --test-threads=1; then :; else tests="$tests (device test FAIL)"; fail=1; fi
  step "compute-sanitizer memcheck, one MC-20 prediction"
  if command -v compute-sanitizer >/dev/null; then
    if timeout 120 compute-sanitizer --tool memcheck --error-exitcode 3 \
        "$CARRY/bin/cuda_bench" --samples 20 --iters 1 --patches 1 > "$CARRY/memcheck.txt" 2>&1; then
      memcheck=clean
    else memcheck=FAIL; fail=1; tail -30 "$CARRY/memcheck.txt"; fi
  else memcheck="not run (no compute-sanitizer)"; fail=1; fi
  step "benchmark: lungseg CUDA"
  timeout 90 "$CARRY/bin/cuda_bench" --samples 20 --iters 10 --patches 50 | tee -a "$results" || fail=1
  step "benchmark: PyTorch + cuDNN fp16"
  timeout 120 python3 "$CARRY/bench_cuda_torch.py" "$CARRY/model.safetensors" --samples 20 --iters 10 \
    | tee -a "$results" || fail=1
  step "summary"
  echo "GPU tests: $tests; memcheck: $memcheck"
  echo
  echo "| engine | card | measurement | value |"
  echo "| --- | --- | --- | --- |"
  cat "$results"
  exit $fail
}

case "$mode" in
  build) build ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh build|run" >&2; exit 2 ;;
esac

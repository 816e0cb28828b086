#!/usr/bin/env bash
# Static SASS check of the tensor-core kernels: NVRTC compiles every kernel to a cubin for sm_80
# and sm_90 (scripts/nvrtc-check.sh --emit), nvdisasm (PyPI wheel, pinned, installed with pip
# into SASS_TOOLS, default target/sass-tools) disassembles the kernels whose .cu file states a
# design line, and the static instruction counts of each such function are compared with it:
#   sass-design FUNCTION: NAME=N NAME<=N NAME>=N A/B<=X ...
# NAME is a SASS opcode without modifiers (HMMA, LDSM, LDS, LDG, LDGSTS, LDL, STL, ...); A/B is
# the ratio of two counts. Instructions predicated on !PT (never executed, e.g. the
# `@!PT LDS RZ, [RZ]` ptxas places before LDGSTS) are not counted. Fails on any line not met.
# Needs no GPU, driver or CUDA toolkit. Usage: scripts/cuda-sass-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
NVDISASM_WHEEL=${NVDISASM_WHEEL:-nvidia-cuda-nvdisasm==13.5.37}
SASS_TOOLS=${SASS_TOOLS:-$CARGO_TARGET_DIR/sass-tools}
# Before the first install the folder is missing: find fails there, and pipefail would exit.
find_nvdisasm() { { find "$SASS_TOOLS" -name nvdisasm -type f 2>/dev/null || true; } | head -n 1; }
nvdisasm=$(find_nvdisasm)
if [ -z "$nvdisasm" ]; then
  echo "installing $NVDISASM_WHEEL into $SASS_TOOLS"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$SASS_TOOLS" "$NVDISASM_WHEEL"
  nvdisasm=$(find_nvdisasm)
fi
[ -n "$nvdisasm" ] || { echo "FAIL: no nvdisasm under $SASS_TOOLS after install" >&2; exit 1; }
work="$CARGO_TARGET_DIR/sass-check"
rm -rf "$work"
mkdir -p "$work"
scripts/nvrtc-check.sh --emit "$work/cubin" >"$work/nvrtc.log" ||
  { cat "$work/nvrtc.log" >&2; echo "FAIL: nvrtc-check" >&2; exit 1; }
failed=0
for cu in lungseg-sys/src/cuda/kernels/*.cu; do
  grep -q "sass-design " "$cu" || continue
  k=$(basename "$cu" .cu)
  for arch in 80 90; do
    # Every compilation of the file: `K` and its variants `K_*` (conv3_narrow: conv3.cu with
    # another tile), one listing whose design lines name their functions.
    sass="$work/$k.sm_$arch.sass"
    : >"$sass"
    for cubin in "$work/cubin/$k.sm_$arch.cubin" "$work/cubin/${k}"_*.sm_"$arch".cubin; do
      [ -e "$cubin" ] || continue
      "$nvdisasm" -c "$cubin" >>"$sass" 2>>"$work/$k.sm_$arch.nvdisasm.log"
    done
    python3 - "$cu" "$sass" "sm_$arch" <<'PY' || failed=1
import re, sys
cu, sass, arch = sys.argv[1:]
designs = re.findall(r"sass-design (\w+):\s*(.*)", open(cu).read())
# Functions: ".text.NAME:" starts a function's code section.
counts, fn = {}, None
for line in open(sass):
    m = re.match(r"\s*\.text\.(\w+):", line)
    if m:
        fn = m.group(1)
        counts.setdefault(fn, {})
        continue
    m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
    if fn and m:
        if m.group(1) and m.group(1).strip() == "@!PT":
            continue
        op = m.group(2)
        counts[fn][op] = counts[fn].get(op, 0) + 1
bad = 0
for name, rule in designs:
    c = counts.get(name)
    if c is None:
        print(f"FAIL {arch} {name}: not in the SASS"); bad = 1; continue
    got = []
    for term in rule.split():
        m = re.fullmatch(r"(\w+)(?:/(\w+))?(<=|>=|=)([0-9.]+)", term)
        if not m:
            print(f"FAIL {arch} {name}: cannot read design term {term!r}"); bad = 1; continue
        a, b, op, want = m.group(1), m.group(2), m.group(3), float(m.group(4))
        if b:
            v = c.get(a, 0) / c[b] if c.get(b, 0) else float("inf")
        else:
            v = float(c.get(a, 0))
        ok = v == want if op == "=" else v <= want if op == "<=" else v >= want
        got.append(f"{a}{'/' + b if b else ''}={v:g}")
        if not ok:
            print(f"FAIL {arch} {name}: {term} but the SASS has {v:g}"); bad = 1
    print(f"{arch} {name}: " + " ".join(got))
sys.exit(bad)
PY
  done
done
if [ "$failed" != 0 ]; then
  echo "cuda-sass-check: FAILED (SASS in $work)" >&2
  exit 1
fi
echo "cuda-sass-check: every design line met (SASS in $work)"

#!/usr/bin/env python3
"""Static check of the CPU kernels' hot loops: no register spills.

The conv micro-kernels (direct: nn/conv3.rs; Winograd GEMMs: nn/winograd/gemm.rs) keep a tile of
accumulators in vector registers (AVX-512: up to 16 zmm of 32; AVX2: 12 of 16 ymm; NEON: 24 of
32 q; lungseg-sys/src/nn/conv3.rs states the budgets). A tile that does
not fit makes the compiler spill accumulators to the stack inside the FMA loop, which costs
more than the whole tile gains and shows in no test. This script disassembles the release
library (objdump), finds each kernel function's innermost loops that contain FMAs (a backward
conditional branch and its target delimit a loop), and fails when such a loop touches a vector
register through the stack (x86 `(%rsp)`/`(%rbp)`, aarch64 `[sp]`/`[x29]`), or when a function has no FMA loop at all (a
renamed or vanished kernel must not pass silently). Stack traffic outside the FMA loops (tile
epilogues, partial-lane stores) is allowed.

Usage: scripts/cpu-spill-check.py [--arch x86_64|aarch64] [target/release/liblungseg.so]
(aarch64: a cross-built library, disassembled with aarch64-linux-gnu-objdump)
"""
import re
import subprocess
import sys

INSN = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")


class Arch:
    """What differs between instruction sets: the objdump, the kernels, the FMA mnemonic, the
    conditional branches and what a vector register reached through the stack looks like."""

    def __init__(self, objdump, kernels, fma, branch, stack_vec):
        self.objdump, self.kernels, self.fma = objdump, kernels, fma
        self.branch, self.stack_vec = re.compile(branch), re.compile(stack_vec)


ARCHES = {
    # The 3³ conv micro-kernels, inlined into one function per ISA (the tile sizes are theirs),
    # and the Winograd GEMMs, inlined into the block function of each ISA.
    "x86_64": Arch("objdump",
                   ["lungseg::nn::conv3::avx512::row", "lungseg::nn::conv3::avx512::ymm::row",
                    "lungseg::nn::conv3::avx2::row",
                    "lungseg::nn::winograd::gemm::avx512::block",
                    "lungseg::nn::winograd::gemm::avx2::block"],
                   fma="vfmadd", branch=r"^j(?!mp)[a-z]+$",  # conditional jumps only
                   stack_vec=r"%[yz]mm\d+.*\((%rsp|%rbp)\)|\((%rsp|%rbp)\).*%[yz]mm\d+"),
    "aarch64": Arch("aarch64-linux-gnu-objdump",
                    ["lungseg::nn::conv3::neon::row", "lungseg::nn::winograd::gemm::neon::block"],
                    fma="fmla", branch=r"^(b\.[a-z]+|cbn?z|tbn?z)$",
                    # q/d/s/v registers loaded from or stored to the stack or frame
                    stack_vec=r"\b[qdsv]\d+\b.*\[(sp|x29)\b"),
}


def functions(arch, lib):
    """{name: [(addr, mnemonic, operands)]} for the kernels, from objdump."""
    out = subprocess.run([arch.objdump, "-d", "--no-show-raw-insn", "-C", lib],
                         check=True, capture_output=True, text=True).stdout
    funcs, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            cur = m.group(1) if m.group(1) in arch.kernels else None
            if cur:
                funcs[cur] = []
            continue
        m = INSN.match(line)
        if cur and m:
            funcs[cur].append((int(m.group(1), 16), m.group(2), m.group(3)))
    return funcs


def fma_loops(arch, insns):
    """Innermost loops (target..branch address ranges) that contain an FMA."""
    loops = []
    for addr, mnem, ops in insns:
        if not arch.branch.match(mnem):
            continue
        t = re.search(r"\b([0-9a-f]+) <", ops)
        if not t or int(t.group(1), 16) >= addr:
            continue
        lo = int(t.group(1), 16)
        body = [i for i in insns if lo <= i[0] <= addr]
        if any(m.startswith(arch.fma) for _, m, _ in body):
            loops.append((lo, addr, body))
    # innermost: no other FMA loop strictly inside
    return [l for l in loops
            if not any(o is not l and l[0] <= o[0] and o[1] <= l[1] and o[:2] != l[:2]
                       for o in loops)]


def main():
    args = sys.argv[1:]
    name = "x86_64"
    if args[:1] == ["--arch"] and len(args) >= 2:
        name, args = args[1], args[2:]
    if name not in ARCHES:
        sys.exit(f"unknown --arch {name}: one of {', '.join(ARCHES)}")
    arch = ARCHES[name]
    lib = args[0] if args else "target/release/liblungseg.so"
    funcs = functions(arch, lib)
    failed = False
    for name in arch.kernels:
        insns = funcs.get(name)
        if not insns:
            print(f"FAIL {name}: not found in {lib}")
            failed = True
            continue
        loops = fma_loops(arch, insns)
        spills = [(lo, a, m, o) for lo, _, body in loops for a, m, o in body
                  if arch.stack_vec.search(o)]
        fmas = sum(1 for _, _, b in loops for _, m, _ in b if m.startswith(arch.fma))
        if not loops:
            print(f"FAIL {name}: no FMA loop found")
            failed = True
        elif spills:
            print(f"FAIL {name}: {len(spills)} stack vector accesses in FMA loops, e.g.")
            for lo, a, m, o in spills[:5]:
                print(f"    loop at {lo:x}: {a:x} {m} {o}")
            failed = True
        else:
            print(f"ok   {name}: {len(loops)} FMA loops, {fmas} FMAs, no stack vector access")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

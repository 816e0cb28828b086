#!/usr/bin/env python3
"""Every CPU kernel path of lungseg against its own FMA ceiling and against the peers, one run.

One command for a quiet machine; it prints a markdown report ready to paste (progress goes to
stderr, raw numbers to --json-out). Each case runs in its own process; the cases of a round
run in a rotating order and the report gives medians over rounds (noise hits all alike).

Cases (--threads T, default 2, for everything but the batch study)
  ceiling     examples/fma_peak: per kernel path, the multiply-add throughput of the
              instructions that path's conv kernel uses (AVX-512: zmm FMA, AVX2: ymm FMA,
              NEON: q FMA, portable: baseline-vector mul + add), independent register chains,
              no memory traffic, on 1 and T threads; best of 3 (see that file's doc).
  lungseg     examples/bench_mc with LUNGSEG_CPU_KERNEL=<path>, for every path this CPU runs:
              deterministic pass and MC-20 (channel dropout, mean + MI maps), Rust API.
  ORT         ONNX Runtime (scripts/bench_mc.py cases): deterministic; MC-20 as one batch of 20
              and as 20 x batch 1 ("ORT best" = the faster of the two).
  PyTorch     channels_last_3d, deterministic (batch 1) and MC-20 (batch 20), default ISA and
              restricted to AVX2 (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2,
              MKL_ENABLE_INSTRUCTIONS=AVX2); a check run before round 1 records what each ran
              on: torch.backends.cpu.get_cpu_capability(), oneDNN verbose (ISA and conv
              implementations) and the aten conv ops (profiler).
  batch       examples/bench_batch, first --batch-rounds rounds: MC-20 at 32 candidate points
              of one scan (patch extraction included), patches/s; per T in --batch-threads:
              sample-level (one lungseg_predict_uncertainty_batch call, model threads = T) and
              patch-level (T host threads, single-threaded lungseg_predict_uncertainty_at
              calls; at T = 1 this is the same computation as sample-level and is not rerun).
              Both must give bit-identical summaries (checked).

FLOPs (owner: lungseg-sys/examples/common/flops.rs): 2 per multiply-add of the 3³ convs, the
2³ transposed convs and the 1x1 head (29.842 GFLOP per 64³ forward of the default net).
MC "nominal" = 20 x forward (the peers' work); MC "executed" = what lungseg runs: enc.0.conv1
once, then per sample only the kept input channels of every consumer of a dropout tensor,
counted from the same Philox masks. "% ceiling" = executed GFLOP/s / the path's T-thread ceiling.

Usage (from the repository root; a Python with numpy, safetensors, torch, onnx, onnxruntime):
  cargo build --release -p lungseg-sys --example bench_mc --example fma_peak --example bench_batch
  python3 scripts/bench_kernels.py [--rounds 3] [--threads 2] [--batch-threads 1,2]
         [--batch-rounds 1] [--out /tmp/lungseg-bench-kernels] [--json-out FILE]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_mc  # noqa: E402  (its cases, inputs and export are the peers' definition)

N = bench_mc.N
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
TORCH_VARIANTS = {"torch": {}, "torch_avx2": AVX2_ENV}
ORT_CASES = ["ort_det", "ort_mc_b20", "ort_mc_20x1"]
# Below this share of its cores (CPU time ÷ wall × threads) a lungseg case was crowded out.
QUIET_UTIL = 0.85


def exe(name):
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    path = os.path.join(target, "release", "examples", name)
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: cargo build --release -p lungseg-sys --example {name}")
    return path


def env_with(extra):
    """This process's environment without the ISA restrictions, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in AVX2_ENV and k != "LUNGSEG_CPU_KERNEL"}
    env.update(extra)
    return env


def json_line(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])


def cpu_info():
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    f = dict(l.split(":", 1) for l in out.splitlines() if ":" in l)
    g = lambda k: f.get(k, "?").strip()  # noqa: E731
    flags = [x for x in ("avx512f", "avx2", "fma", "asimd") if x in g("Flags").split()]
    return (f"{g('Model name')} (family {g('CPU family')}, model {g('Model')}), {g('CPU(s)')} CPUs, "
            f"flags: {' '.join(flags)}")


def commit():
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True)
    return r.stdout.strip() or "?"


def isa_check(variant, out):
    """Child: what PyTorch runs on in this environment (one det and one MC forward)."""
    import torch
    from torch.profiler import profile

    torch.set_num_threads(2)
    res = {"variant": variant, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    for mc in (False, True):
        m = bench_mc.build_torch(mc).to(memory_format=torch.channels_last_3d)
        x = np.repeat(bench_mc.norm(bench_mc.patch(out)), N if mc else 1, axis=0)
        xb = torch.from_numpy(x).to(memory_format=torch.channels_last_3d)
        with torch.no_grad(), profile() as p:
            m(xb)
        ops = sorted({e.name for e in p.events() if "conv" in e.name and e.name.startswith("aten::")})
        res["mc_ops" if mc else "det_ops"] = ops
    sys.stdout.flush()
    print("\n" + json.dumps({"isa_check": res}), flush=True)


def run_isa_check(variant, env, out):
    env = dict(env, ONEDNN_VERBOSE="1")
    r = subprocess.run([sys.executable, __file__, "--isa-check", variant, "--out", out],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"PyTorch check ({variant}) failed:\n{r.stderr[-3000:]}")
    lines = r.stdout.splitlines()
    res = json.loads([l for l in lines if l.startswith('{"isa_check"')][-1])["isa_check"]
    isa = [l.split("isa:", 1)[1] for l in lines if l.startswith("onednn_verbose") and ",isa:" in l]
    impls = sorted({l.split(",")[6] for l in lines
                    if l.startswith("onednn_verbose") and ",exec," in l
                    and ("convolution" in l or "deconvolution" in l)})
    res["onednn_isa"] = isa[0] if isa else "(oneDNN not initialised)"
    res["onednn_conv_impls"] = impls
    return res


class Bench:
    def __init__(self, a):
        self.a = a
        self.model = os.path.join(a.out, "model.safetensors")
        self.res = {}  # case -> list of per-round dicts

    def add(self, case, r):
        self.res.setdefault(case, []).append(r)

    def ceiling(self):
        t = ",".join(sorted({"1", str(self.a.threads)}, key=int))
        r = json_line([exe("fma_peak"), "--threads", t, "--ms", str(self.a.fma_ms), "--json"], env_with({}))
        for p in r["peaks"]:
            self.add(f"peak_{p['kernel']}_{p['threads']}", p)

    def lungseg(self, k):
        r = bench_mc.run_lungseg(self.a.runs, self.a.out, exe("bench_mc"), self.a.threads,
                                 extra=("--warmup-samples", "2"), env=env_with({"LUNGSEG_CPU_KERNEL": k}))
        assert r["kernel"] == k, f"asked for {k}, ran {r['kernel']}"
        self.add(f"lungseg_{k}", r)

    def peer(self, case, name, env):
        self.add(name, bench_mc.run_child(case, self.a.runs, self.a.out, self.a.threads, env_with(env)))

    def batch(self, mode, t):
        r = json_line([exe("bench_batch"), self.model, "--mode", mode, "--threads", str(t),
                       "--points", str(self.a.points), "--samples", str(N), "--json"], env_with({}))
        self.add(f"batch_{mode}_{t}", r)

    def cases(self, kernels, with_batch):
        c = [("ceiling", self.ceiling)]
        c += [(f"lungseg_{k}", lambda k=k: self.lungseg(k)) for k in kernels]
        skip = self.a.skip
        c += [(o, lambda o=o: self.peer(o, o, {})) for o in ORT_CASES if "ort" not in skip]
        for v, env in TORCH_VARIANTS.items():
            if v not in skip:
                for case in ("torch_det", "torch_mc_b20"):
                    name = case.replace("torch", v)
                    c.append((name, lambda case=case, name=name, env=env: self.peer(case, name, env)))
        if with_batch:
            for t in self.a.batch_threads:
                c.append((f"batch_sample_{t}", lambda t=t: self.batch("sample", t)))
                if t > 1:
                    c.append((f"batch_patch_{t}", lambda t=t: self.batch("patch", t)))
        return c

    def med(self, case, key):
        v = [r[key] for r in self.res.get(case, [])]
        return float(np.median(v)) if v else float("nan")


def fmt(x, d=2):
    return "–" if x != x else f"{x:.{d}f}"


def report(b, kernels, checks, meta):
    a = b.a
    T = a.threads
    L = []
    w = L.append
    w(f"### CPU kernel paths vs peers ({meta['date']}, {a.rounds} rounds, {T} threads)")
    w("")
    w(f"- CPU: {meta['cpu']}")
    w(f"- Load average (1/5/15 min) before: {meta['load_before']}, after: {meta['load_after']}; "
      f"1-min at each round start: {', '.join(fmt(x, 1) for x in meta['load_rounds'])}")
    w(f"- lungseg {meta['commit']}; ONNX Runtime {meta.get('onnxruntime', '–')}; PyTorch {meta.get('torch', '–')}; "
      f"wall time of the whole run {meta['elapsed_min']:.1f} min")
    w(f"- `python3 scripts/bench_kernels.py {' '.join(meta['argv'])}`")
    util = min(b.med(f"lungseg_{k}", "mc_cpu_s") / (b.med(f"lungseg_{k}", "mc_s") * T) for k in kernels)
    if util < QUIET_UTIL:
        w(f"- **Not a quiet run**: a lungseg MC case got {util:.2f} of its {T} cores (CPU ÷ wall·{T}); "
          "other work shared the machine, so times and ceilings are not the machine's.")
    w("")
    gf = b.med(f"lungseg_{kernels[0]}", "gflop_per_forward")
    ex = b.med(f"lungseg_{kernels[0]}", "mc_gflop_executed")
    w(f"Per lungseg kernel path (median s; one forward = {gf:.3f} GFLOP, MC-{N} = {N * gf:.1f} GFLOP nominal, "
      f"{ex:.1f} GFLOP executed):")
    w("")
    w(f"| path | FMA ceiling GFLOP/s, 1 / {T} thr | det s | det GFLOP/s | det % ceiling | MC-{N} s | "
      f"MC GFLOP/s nominal | MC GFLOP/s executed | MC % ceiling | MC CPU ÷ (wall·{T}) |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k in kernels:
        c = f"lungseg_{k}"
        p1, pt = b.med(f"peak_{k}_1", "gflops"), b.med(f"peak_{k}_{T}", "gflops")
        det, mc = b.med(c, "deterministic_s"), b.med(c, "mc_s")
        gd, gmc = gf / det, ex / mc
        util = b.med(c, "mc_cpu_s") / (mc * T)
        w(f"| {k} | {fmt(p1, 0)} / {fmt(pt, 0)} | {fmt(det, 3)} | {fmt(gd, 1)} | {fmt(100 * gd / pt, 0)} % | "
          f"{fmt(mc, 2)} | {fmt(N * gf / mc, 1)} | {fmt(gmc, 1)} | {fmt(100 * gmc / pt, 0)} % | {fmt(util, 2)} |")
    w("")
    ort_mc = {o: b.med(o, "s") for o in ("ort_mc_b20", "ort_mc_20x1")}
    best = min(ort_mc, key=lambda o: ort_mc[o] if ort_mc[o] == ort_mc[o] else float("inf"))
    peers_det = {"ORT": b.med("ort_det", "s"), "PyTorch": b.med("torch_det", "s"),
                 "PyTorch AVX2": b.med("torch_avx2_det", "s")}
    peers_mc = {f"ORT best ({best.replace('ort_mc_', '')})": ort_mc[best], "PyTorch": b.med("torch_mc_b20", "s"),
                "PyTorch AVX2": b.med("torch_avx2_mc_b20", "s")}
    w("Time ratios lungseg path ÷ peer (medians; below 1 = lungseg faster):")
    w("")
    w("| path | " + " | ".join(f"det ÷ {p}" for p in peers_det) + " | "
      + " | ".join(f"MC-{N} ÷ {p}" for p in peers_mc) + " |")
    w("| --- |" + " ---: |" * (len(peers_det) + len(peers_mc)))
    for k in kernels:
        c = f"lungseg_{k}"
        det, mc = b.med(c, "deterministic_s"), b.med(c, "mc_s")
        w(f"| {k} | " + " | ".join(fmt(det / v) for v in peers_det.values()) + " | "
          + " | ".join(fmt(mc / v) for v in peers_mc.values()) + " |")
    w("")
    w("Peers (median s; GFLOP/s on the nominal count; % of the ceiling of the ISA they ran on):")
    w("")
    w("| peer | ran on | det s | det GFLOP/s | MC-{0} s | MC-{0} GFLOP/s | MC % ceiling | peak RSS MiB (det / MC) |"
      .format(N))
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    top = kernels[0]
    rows = [("ONNX Runtime; MC batch 20", "ort_det", "ort_mc_b20", "MLAS, its own dispatch", top),
            ("ONNX Runtime; MC 20 × batch 1", None, "ort_mc_20x1", "MLAS, its own dispatch", top)]
    for v in TORCH_VARIANTS:
        ch = checks.get(v)
        if ch:
            on = f"ATen {ch['cpu_capability']}; oneDNN {', '.join(ch['onednn_conv_impls']) or 'not used'}"
            path = "avx2" if ch["cpu_capability"] == "AVX2" else top
        else:
            on, path = "?", top
        rows.append(("PyTorch" + (" restricted to AVX2" if v.endswith("avx2") else ""),
                     f"{v}_det", f"{v}_mc_b20", on, path))
    for name, d, m, on, path in rows:
        det, mc = b.med(d, "s"), b.med(m, "s")
        pt = b.med(f"peak_{path}_{T}", "gflops")
        rss = f"{fmt(b.med(d, 'peak_rss_mib'), 0)} / {fmt(b.med(m, 'peak_rss_mib'), 0)}"
        if d is None:
            det, rss = float("nan"), f"– / {fmt(b.med(m, 'peak_rss_mib'), 0)}"
        w(f"| {name} | {on} | {fmt(det, 3)} | {fmt(gf / det, 1)} | {fmt(mc, 2)} | {fmt(N * gf / mc, 1)} | "
          f"{fmt(100 * N * gf / mc / pt, 0)} % of {path} | {rss} |")
    w("")
    if checks:
        w("PyTorch check (one det and one MC forward each, before round 1):")
        w("")
        for v, ch in checks.items():
            w(f"- {v}: get_cpu_capability() = {ch['cpu_capability']}; oneDNN isa: {ch['onednn_isa']}; "
              f"oneDNN conv implementations: {', '.join(ch['onednn_conv_impls']) or 'none'}; aten conv ops: "
              f"det {', '.join(ch['det_ops'])}, MC {', '.join(ch['mc_ops'])}")
        w("")
    batch = [c for c in b.res if c.startswith("batch_")]
    if batch:
        rounds = len(b.res[batch[0]])
        w(f"Batch: MC-{N} at {a.points} candidate points of one scan (patch extraction included), kernel "
          f"{b.res[batch[0]][0]['kernel']}, median of {rounds} round(s):")
        w("")
        w("| parallelism | threads | wall s | patches/s | CPU ÷ (wall·threads) | peak RSS MiB | ÷ sample-level |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for t in a.batch_threads:
            base = b.med(f"batch_sample_{t}", "patches_per_s")
            for mode in ("sample", "patch"):
                c = f"batch_{mode}_{t}"
                if c not in b.res:
                    if mode == "patch":
                        w(f"| patch-level | {t} | = sample-level at 1 thread | | | | |")
                    continue
                wall, rate = b.med(c, "wall_s"), b.med(c, "patches_per_s")
                util = b.med(c, "cpu_s") / (wall * t)
                w(f"| {mode}-level | {t} | {fmt(wall, 1)} | {fmt(rate, 3)} | {fmt(util, 2)} | "
                  f"{fmt(b.med(c, 'peak_rss_mib'), 0)} | {fmt(rate / base, 2)} |")
        w("")
    w("Columns: *FMA ceiling*: examples/fma_peak, the path's own multiply-add instructions on "
      "independent register chains (no loads), all threads together, best of 3. *det*: one deterministic "
      f"64³ forward; *MC-{N}*: {N} channel-dropout samples with mean and MI maps (lungseg: one "
      "predict_uncertainty call after a 2-sample warm-up; peers: after a full warm-up). *executed* GFLOP: "
      "lungseg skips dropped input channels and runs enc.0.conv1 once per call. *% ceiling*: achieved "
      f"GFLOP/s ÷ the {T}-thread ceiling (lungseg MC: executed FLOPs). *CPU ÷ (wall·T)*: process CPU "
      "time over wall time × threads; well below 1 means the run did not get its cores.")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=1, help="timed runs per case per round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kernels", default="", help="comma-separated paths (default: every path this CPU runs)")
    ap.add_argument("--batch-threads", default="1,2", help="thread counts of the batch study, e.g. 1,2,8,16")
    ap.add_argument("--batch-rounds", type=int, default=1, help="rounds that include the batch study (0: none)")
    ap.add_argument("--points", type=int, default=32, help="candidate points of the batch study")
    ap.add_argument("--fma-ms", type=int, default=200, help="length of one FMA-ceiling measurement")
    ap.add_argument("--skip", default="", help="comma-separated: ort, torch, torch_avx2")
    ap.add_argument("--out", default="/tmp/lungseg-bench-kernels")
    ap.add_argument("--json-out", default="")
    ap.add_argument("--isa-check", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.skip = set(filter(None, a.skip.split(",")))
    a.batch_threads = [int(t) for t in a.batch_threads.split(",") if t]
    os.makedirs(a.out, exist_ok=True)
    if a.isa_check:
        return isa_check(a.isa_check, a.out)
    started = time.time()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu_info(), "load_before": "/".join(f"{x:.2f}" for x in os.getloadavg()),
            "commit": commit(), "argv": sys.argv[1:], "load_rounds": []}
    bench_mc.write_inputs(a.out)
    if not a.skip >= {"ort", "torch", "torch_avx2"}:
        bench_mc.export(a.out)
    peaks = json_line([exe("fma_peak"), "--threads", "1", "--ms", "20", "--json"], env_with({}))["peaks"]
    kernels = [k.strip() for k in a.kernels.split(",") if k.strip()] or [p["kernel"] for p in peaks]
    b = Bench(a)
    checks = {}
    for v, env in TORCH_VARIANTS.items():
        if v not in a.skip:
            print(f"PyTorch check: {v}", file=sys.stderr, flush=True)
            checks[v] = run_isa_check(v, env_with(env), a.out)
    if "torch_avx2" in checks and checks["torch_avx2"]["cpu_capability"] != "AVX2":
        sys.exit(f"ATEN_CPU_CAPABILITY=avx2 did not take effect: {checks['torch_avx2']}")
    for rnd in range(a.rounds):
        meta["load_rounds"].append(os.getloadavg()[0])
        cases = b.cases(kernels, rnd < a.batch_rounds)
        k = rnd % len(cases)
        for name, run in cases[k:] + cases[:k]:
            t = time.time()
            run()
            print(f"round {rnd}: {name} done in {time.time() - t:.1f} s", file=sys.stderr, flush=True)
    digests = {r["digest"] for c in b.res if c.startswith("batch_") for r in b.res[c]}
    if len(digests) > 1:
        sys.exit(f"the batch modes disagree: digests {digests}")
    for name in ("ort_det", "torch_det"):
        if name in b.res:
            r = b.res[name][0]
            meta["onnxruntime" if name == "ort_det" else "torch"] = r.get("onnxruntime", r.get("torch"))
    meta["load_after"] = "/".join(f"{x:.2f}" for x in os.getloadavg())
    meta["elapsed_min"] = (time.time() - started) / 60
    print(report(b, kernels, checks, meta))
    path = a.json_out or os.path.join(a.out, "bench_kernels.json")
    with open(path, "w") as f:
        json.dump({"meta": meta, "kernels": kernels, "checks": checks, "results": b.res}, f, indent=1)
    print(f"raw results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/fuzz_targets/ for N seconds each (default 60), starting
# from fuzz/seeds/<target>/ with the dictionary fuzz/<target>.dict or fuzz/<prefix>.dict
# (mhd_volume -> mhd.dict, lidc_xml -> lidc.dict, luna_csv -> luna.dict, dicom_file -> dicom.dict).
# Crash inputs are copied to fuzz/regressions/<target>/ (replayed on stable by the test suite:
# lungseg-sys/tests/fuzz_seeds.rs, lungseg-train/tests/data/prepare_lidc.rs for lidc_xml and
# lungseg-train/tests/data/prepare_luna.rs for luna_csv) and make the script fail.
#
# Targets: mhd_header, mhd_volume, model_load, model_config, c_api, dicom_file (lungseg-sys, the
# last with its `dicom` feature), lidc_xml and luna_csv (lungseg-train's LIDC reader-XML parser
# and LUNA16 table reader, each compiled on its own by path).
#
# Usage: scripts/fuzz.sh [seconds] [target...]
set -euo pipefail

secs="${1:-60}"
shift || true
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz needs nightly flags (sanitizers); use a nightly toolchain when there is one,
# otherwise unlock them on stable.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

status=0
for t in "${targets[@]}"; do
    # The harness bodies use the library's real default limits; the process is capped instead:
    # -rss_limit_mb is memory actually touched (a model or header that makes us use more is a
    # finding), -timeout is per input (a hang is a finding). -malloc_limit_mb (which defaults to
    # the RSS cap) is raised to the reader's default max_bytes: a header may declare a pixel
    # buffer that large, it is allocated zeroed and untouched until data arrives to fill it.
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=16384
        -max_len=65536 -print_final_stats=1)
    dict="fuzz/$t.dict"
    [ -f "$dict" ] || dict="fuzz/${t%%_*}.dict"
    if [ -f "$dict" ]; then args+=(-dict="$root/$dict"); else dict="none"; fi
    corpus=("fuzz/corpus/$t")
    [ -d "fuzz/seeds/$t" ] && corpus+=("fuzz/seeds/$t")
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    rm -f "fuzz/artifacts/$t"/*
    echo "== fuzzing $t for ${secs}s (dict: ${dict})" >&2
    if ! "${fuzz[@]}" run --fuzz-dir fuzz "$t" "${corpus[@]}" -- \
        -artifact_prefix="$root/fuzz/artifacts/$t/" "${args[@]}"; then
        status=1
    fi
    shopt -s nullglob
    found=(fuzz/artifacts/"$t"/*)
    shopt -u nullglob
    if [ "${#found[@]}" -gt 0 ]; then
        mkdir -p "fuzz/regressions/$t"
        cp "${found[@]}" "fuzz/regressions/$t/"
        echo "fuzz.sh: $t found ${#found[@]} failing input(s), saved to fuzz/regressions/$t/" >&2
        status=1
    fi
done
exit "$status"

#!/usr/bin/env bash
# Installs lungseg into a temporary prefix (scripts/install.sh --release), checks what was
# installed (soname, NEEDED, debug info kept apart), builds the C/C++ examples against that
# prefix through pkg-config (Makefile) and find_package (CMake), shared and static, checks
# what each executable links, runs them on a synthetic LUNA16-style scan and checks what they
# print against SimpleITK.
#   scripts/check_c_examples.sh <cargo target dir>
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${1:-${CARGO_TARGET_DIR:-target}}
TARGET=$(cd "$TARGET" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PREFIX=$WORK/prefix
# The examples run the installed default model unless LUNGSEG_EXAMPLE_MODEL names another.
MODEL=${LUNGSEG_EXAMPLE_MODEL:-}

echo "== install lungseg (release) into $PREFIX"
CARGO_TARGET_DIR=$TARGET scripts/install.sh --release --prefix "$PREFIX"
scripts/check_install.sh "$PREFIX"
SONAME=$(readelf -d "$PREFIX/lib/liblungseg.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
echo "== build lungseg-train (dev: the examples only need its synth)"
cargo build -p lungseg-train --target-dir "$TARGET"
echo "== synthetic scan"
"$TARGET/debug/lungseg-train" synth --out "$WORK/data" --scans 2 --seed 11 >/dev/null
SCAN=$(ls "$WORK"/data/subset0/*.mhd | head -1)
UID_=$(basename "$SCAN" .mhd)
read -r X Y Z < <(awk -F, -v u="$UID_" 'NR>1 && $1==u {print $2, $3, $4; exit}' "$WORK/data/annotations.csv")
if [ -z "${X:-}" ]; then X=0; Y=0; Z=0; fi
echo "scan $SCAN at ($X, $Y, $Z)"

echo "== make (pkg-config)"
make -s -C c-examples PREFIX="$PREFIX" BIN="$WORK/make" all
echo "== cmake (find_package)"
cmake -S c-examples -B "$WORK/cmake" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
cmake --build "$WORK/cmake" -j 2 >/dev/null

# SimpleITK is the outside oracle for the geometry the examples print.
python3 - "$SCAN" "$X" "$Y" "$Z" > "$WORK/expected.txt" <<'PY'
import sys, SimpleITK as sitk
img = sitk.ReadImage(sys.argv[1])
w = [float(v) for v in sys.argv[2:5]]
print("dims %d %d %d" % img.GetSize())
print("spacing %.6f %.6f %.6f" % img.GetSpacing())
print("origin %.6f %.6f %.6f" % img.GetOrigin())
print("direction " + " ".join("%g" % d for d in img.GetDirection()))
v = img.TransformPhysicalPointToContinuousIndex(w)
print("world %.3f %.3f %.3f -> voxel %.4f %.4f %.4f" % (w[0], w[1], w[2], v[0], v[1], v[2]))
PY

# Checks what predict_nodule build <name> wrote to $WORK/maps-<name>; sets status=1 on a failure.
check_predict_maps() {
  local name=$1 threshold min_mm3 radius point_t point_r empty said
  # The maps must read in SimpleITK, on the model's grid centred on the queried point, and
  # the scan written back must be the scan.
  # The mask is the mean at the model's own threshold, with the components of the mean at
  # the point threshold that come closer than the point radius to the queried point added,
  # then the components below its minimum dropped unless a voxel of theirs is closer than
  # the spare radius to that point, all printed by the example; SimpleITK's connected
  # components and physical points redo it.
  threshold=$(sed -n 's/^mask threshold: //p' "$WORK/$name.out")
  min_mm3=$(sed -n 's/^minimum component: \(.*\) mm3$/\1/p' "$WORK/$name.out")
  radius=$(sed -n 's/^component spare radius: \(.*\) mm$/\1/p' "$WORK/$name.out")
  point_t=$(sed -n 's/^point threshold: //p' "$WORK/$name.out")
  point_r=$(sed -n 's/^point radius: \(.*\) mm$/\1/p' "$WORK/$name.out")
  python3 - "$WORK/maps-$name" "$SCAN" "$X" "$Y" "$Z" "$threshold" "$min_mm3" "$radius" "$point_t" "$point_r" <<'PY' || { echo "FAIL $name: written maps"; status=1; return; }
import sys
import SimpleITK as sitk, numpy as np
d, scan = sys.argv[1], sys.argv[2]
w = [float(v) for v in sys.argv[3:6]]
t = np.float32(float(sys.argv[6]))
mean = sitk.ReadImage(d + "/mean.mha")
ent = sitk.ReadImage(d + "/entropy.mhd")
mask = sitk.ReadImage(d + "/mask.mha")
for im in (ent, mask):
    assert im.GetSize() == mean.GetSize() and im.GetOrigin() == mean.GetOrigin(), im
size, sp, o = mean.GetSize(), mean.GetSpacing(), mean.GetOrigin()
for a in range(3):
    assert abs(o[a] + (size[a] // 2) * sp[a] - w[a]) < 1e-6, (o, w)
m = sitk.GetArrayFromImage(mean)
assert m.min() >= 0 and m.max() <= 1
centre = np.array(mean.TransformIndexToPhysicalPoint([s // 2 for s in size]))
def components(on):
    im = sitk.GetImageFromArray(on.astype(np.uint8))
    im.CopyInformation(mean)
    return sitk.GetArrayFromImage(sitk.ConnectedComponent(im, True))
def near(cc, label, radius):
    zyx = np.argwhere(cc == label)
    pts = np.array([mean.TransformIndexToPhysicalPoint((int(x), int(y), int(z))) for z, y, x in zyx])
    return (((pts - centre) ** 2).sum(axis=1) < radius * radius).any()
on = m >= t
pt, pr = np.float32(float(sys.argv[9])), float(sys.argv[10])
if pr > 0 and pt < t:
    low = components(m >= pt)
    for label in range(1, low.max() + 1):
        if near(low, label, pr):
            on |= low == label
cc = components(on)
sizes = np.bincount(cc.ravel())
voxel_mm3 = sp[0] * sp[1] * sp[2]
keep = sizes * voxel_mm3 >= float(sys.argv[7])
r = float(sys.argv[8])
for label in [k for k in range(1, len(sizes)) if r > 0 and not keep[k]]:
    keep[label] = near(cc, label, r)
keep[0] = False
assert (sitk.GetArrayFromImage(mask) == keep[cc]).all()
a, b = sitk.ReadImage(scan), sitk.ReadImage(d + "/scan.mha")
assert (sitk.GetArrayFromImage(a) == sitk.GetArrayFromImage(b)).all()
assert a.GetOrigin() == b.GetOrigin() and a.GetDirection() == b.GetDirection()
PY
  # The verdict follows the mask it wrote: an empty mask at the asked-for nodule is "not
  # segmented" (docs/c-abi.md, "An empty mask"), whatever the review flag says.
  empty=$(python3 -c 'import sys, SimpleITK as s; print(int(s.GetArrayFromImage(s.ReadImage(sys.argv[1])).sum() == 0))' "$WORK/maps-$name/mask.mha")
  said=0
  grep -q 'NOT SEGMENTED' "$WORK/$name.out" && said=1
  if [ "$empty" != "$said" ]; then
    echo "FAIL $name: verdict does not follow the written mask (empty = $empty)"; status=1
  fi
}

status=0
first=""
for exe in "$WORK"/make/* "$WORK"/cmake/*_shared "$WORK"/cmake/*_static; do
  [ -x "$exe" ] && [ -f "$exe" ] || continue
  base=$(basename "$exe")
  name=$(basename "$(dirname "$exe")")-$base
  case "$base" in
    scan_patch_*) args=("$SCAN" "$X" "$Y" "$Z") ;;
    predict_nodule_*) mkdir -p "$WORK/maps-$name"
      args=("$SCAN" "$X" "$Y" "$Z" "${MODEL:--}" "$WORK/maps-$name") ;;
    volume_uncertainty_*) args=(${MODEL:+"$MODEL"}) ;;
    lungseg_hpp_test_*) args=() ;;
    *) continue ;;
  esac
  # Shared builds name the library by its soname; static builds do not need it at all.
  needed=$(readelf -d "$exe" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  case "$name" in
    *_shared) [[ " $needed " == *" $SONAME "* ]] \
      || { echo "FAIL $name: NEEDED is '$needed', without $SONAME"; status=1; } ;;
    *_static) [[ "$needed" != *liblungseg* ]] \
      || { echo "FAIL $name: a static build NEEDs '$needed'"; status=1; } ;;
  esac
  if ! "$exe" "${args[@]}" > "$WORK/$name.out" 2> "$WORK/$name.err"; then
    echo "FAIL $name exited non-zero"; cat "$WORK/$name.err"; status=1; continue
  fi
  grep -q '^ok$' "$WORK/$name.out" || { echo "FAIL $name did not print ok"; status=1; }
  if [[ $name == *-predict_nodule_* && -z $MODEL ]]; then
    # The compiled-in default is the model installed under the prefix.
    opened=$(sed -n 's/^model file: //p' "$WORK/$name.out")
    [ -n "$opened" ] && [ "$(realpath "$opened")" = "$(realpath "$PREFIX/share/lungseg/lungseg-default.safetensors")" ] \
      || { echo "FAIL $name opened '$opened', not the installed default model"; status=1; }
  fi
  if [[ $name == *_cpp20_* && $name == *lungseg_hpp_test* ]]; then
    grep -q '^C++20 span overloads checked$' "$WORK/$name.out" \
      || { echo "FAIL $name: the C++20 build did not check the span overloads"; status=1; }
  fi
  if [[ $name == *-scan_patch_* ]]; then
    while read -r line; do
      grep -qxF "$line" "$WORK/$name.out" || { echo "FAIL $name: missing '$line'"; cat "$WORK/$name.out"; status=1; }
    done < "$WORK/expected.txt"
    # Every build of the same program must print the same thing.
    if [ -z "$first" ]; then first=$name; else
      diff <(grep -v '^bad input' "$WORK/$first.out") <(grep -v '^bad input' "$WORK/$name.out") >/dev/null \
        || { echo "FAIL $name differs from $first"; status=1; }
    fi
  fi
  if [[ $name == *-predict_nodule_* ]]; then
    check_predict_maps "$name"
  fi
  echo "ok   $name"
done
[ -n "$first" ] || { echo "FAIL no example ran"; status=1; }
# Asked at a point in the air outside the body (the scan's first voxel: a corner of the field of
# view), the model segments nothing and the example must say so.
if [ -x "$WORK/make/predict_nodule_c_shared" ]; then
  read -r CX CY CZ < <(python3 -c 'import sys, SimpleITK as s; print(*s.ReadImage(sys.argv[1]).GetOrigin())' "$SCAN")
  mkdir -p "$WORK/maps-air"
  if "$WORK/make/predict_nodule_c_shared" "$SCAN" "$CX" "$CY" "$CZ" "${MODEL:--}" "$WORK/maps-air" > "$WORK/air.out" 2>&1; then
    grep -q 'foreground voxels 0,' "$WORK/air.out" && grep -q 'NOT SEGMENTED' "$WORK/air.out" \
      || { echo "FAIL predict_nodule at an air corner: expected an empty mask called NOT SEGMENTED"; grep summary "$WORK/air.out"; status=1; }
  else
    echo "FAIL predict_nodule at an air corner exited non-zero"; cat "$WORK/air.out"; status=1
  fi
fi
# with_config <model> <out> <format version> <JSON>: a copy of <model> whose config has the
# JSON's keys set, saying at least <format version> (the keys' version, or the file's newer one).
with_config() {
  python3 - "$@" <<'PY'
import json, struct, sys
src, dst, version, keys = sys.argv[1:5]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
meta = header["__metadata__"]
config = json.loads(meta["config"])
config.update(json.loads(keys))
meta["config"] = json.dumps(config)
meta["format_version"] = str(max(int(meta["format_version"]), int(version)))
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
open(dst, "wb").write(struct.pack("<Q", len(text)) + text + raw[8 + n:])
PY
}
# A model whose file carries a point rule (the default model's weights and settings with the
# lesion at the point cut at 0.3 within 8 mm): the example prints the rule, SimpleITK redoes the
# mask, and the rule must add voxels to the default model's mask here, so
# that the oracle's point branch is exercised.
plain=$WORK/make-predict_nodule_c_shared.out
if [ -x "$WORK/make/predict_nodule_c_shared" ] && [ -f "$plain" ]; then
  DEFAULT=${MODEL:-$PREFIX/share/lungseg/lungseg-default.safetensors}
  with_config "$DEFAULT" "$WORK/point.safetensors" 7 '{"point_mask_threshold": 0.3, "point_radius_mm": 8.0}'
  name=make-predict_nodule_c_shared-point
  mkdir -p "$WORK/maps-$name"
  if "$WORK/make/predict_nodule_c_shared" "$SCAN" "$X" "$Y" "$Z" "$WORK/point.safetensors" "$WORK/maps-$name" > "$WORK/$name.out" 2> "$WORK/$name.err"; then
    grep -qx 'point threshold: 0.300000012' "$WORK/$name.out" && grep -qx 'point radius: 8 mm' "$WORK/$name.out" \
      || { echo "FAIL $name: the point rule is not printed"; status=1; }
    check_predict_maps "$name"
    count() { sed -n 's/.*foreground voxels \([0-9]*\),.*/\1/p' "$1" | head -1; }
    [ "$(count "$WORK/$name.out")" -gt "$(count "$plain")" ] \
      || { echo "FAIL $name: the point rule added no voxel ($(count "$plain") -> $(count "$WORK/$name.out"))"; status=1; }
    echo "ok   $name"
  else
    echo "FAIL $name exited non-zero"; cat "$WORK/$name.err"; status=1
  fi
fi
# A model meant for scans no coarser than 0.5 mm (the default model with
# `max_scan_spacing_mm` 0.5) on the test scan, which is coarser: the example
# must report the scan outside the intended use and the patch flagged for review.
if [ -x "$WORK/make/predict_nodule_c_shared" ]; then
  DEFAULT=${MODEL:-$PREFIX/share/lungseg/lungseg-default.safetensors}
  with_config "$DEFAULT" "$WORK/limit.safetensors" 8 '{"max_scan_spacing_mm": 0.5}'
  name=make-predict_nodule_c_shared-limit
  if "$WORK/make/predict_nodule_c_shared" "$SCAN" "$X" "$Y" "$Z" "$WORK/limit.safetensors" > "$WORK/$name.out" 2> "$WORK/$name.err"; then
    grep -q '^intended use: scans up to 0.5 mm voxel spacing; this scan: COARSER' "$WORK/$name.out" \
      && grep -q "NEEDS REVIEW .*intended use" "$WORK/$name.out" \
      || { echo "FAIL $name: the coarse scan is not reported and flagged"; grep -E 'intended|summary' "$WORK/$name.out"; status=1; }
    grep -q '^intended use: ' "$plain" \
      || { echo "FAIL make-predict_nodule_c_shared: the intended use is not printed"; status=1; }
    echo "ok   $name"
  else
    echo "FAIL $name exited non-zero"; cat "$WORK/$name.err"; status=1
  fi
fi
# Both build systems build every variant of every program.
for exe in "$WORK"/make/*; do
  [ -x "$WORK/cmake/$(basename "$exe")" ] || { echo "FAIL cmake did not build $(basename "$exe")"; status=1; }
done
cat "$WORK/$first.out" 2>/dev/null | sed 's/^/     /' || true
exit $status

#!/usr/bin/env python3
"""Real-CT smoke test: a model on the two chest CTs with lesion masks that pyradiomics 3.0.1
ships (data/lung1_*, data/lung2_*; 5 mm slices, NRRD).

    python3 scripts/real_ct_smoke.py --model M.safetensors [--out runs/real-ct-smoke]

For each lesion (a connected component of a label mask) it calls the library through its C ABI
(ctypes on liblungseg.so, as an integrator would): `lungseg_predict_uncertainty_at` at the
lesion's centroid, MC dropout on the model's patch there; the lesion mask is resampled onto that
patch grid (nearest neighbour, SimpleITK) and compared with the final mask the call writes
(`lungseg_mc_options.final_mask`: the model's mask of the mean, mean probability >= its mask
threshold with small components away from the point dropped, joined with its second look where
the model has one and the scan is thin enough; `mask_source` says which): Dice,
volumes, whether the scan is within the model's intended use (`lungseg_model_admits_volume`), the
uncertainty score and whether the review flag fired. A smoke test, not an evaluation: two patients, and
nothing may be chosen on them (no threshold, score, model or setting); it shows whether a model
fails on real CT and whether the flag says so.

Needs python3 with SimpleITK and numpy, network access to PyPI's files once (the sdist is
fetched by its pinned URL and SHA-256 into the cache folder), and the built shared library
(LUNGSEG_LIB, default target/release/liblungseg.so: `cargo build --release -p lungseg-sys`).
"""
import argparse
import ctypes as C
import hashlib
import json
import os
import sys
import tarfile
import urllib.request

import numpy as np
import SimpleITK as sitk

SDIST = ("https://files.pythonhosted.org/packages/1b/35/"
         "c7f7fb7affd302fd8107dcee6b6e7aaf3708b75ad69d5f9a3dfcadb73eaa/pyradiomics-3.0.1.tar.gz")
SHA256 = "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5"
CASES = ["lung1", "lung2"]


def fetch(cache):
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, "pyradiomics-3.0.1.tar.gz")
    if not os.path.exists(path):
        urllib.request.urlretrieve(SDIST, path + ".part")
        os.replace(path + ".part", path)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != SHA256:
        sys.exit(f"{path}: SHA-256 {digest}, expected {SHA256}")
    out = {}
    with tarfile.open(path) as tar:
        for case in CASES:
            for kind in ("image", "label"):
                name = f"pyradiomics-3.0.1/data/{case}_{kind}.nrrd"
                dst = os.path.join(cache, f"{case}_{kind}.nrrd")
                if not os.path.exists(dst):
                    with tar.extractfile(name) as src, open(dst, "wb") as f:
                        f.write(src.read())
                out[(case, kind)] = dst
    return out


def lesions(label):
    """(component id, centroid in world mm, equivalent diameter mm, voxels) per lesion."""
    cc = sitk.ConnectedComponent(label > 0)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(cc)
    found = []
    for i in stats.GetLabels():
        found.append((i, stats.GetCentroid(i), 2 * stats.GetEquivalentSphericalRadius(i),
                      stats.GetNumberOfPixels(i)))
    return cc, found


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(a, b).sum() / s


class Summary(C.Structure):  # lungseg_patch_summary (56 bytes)
    _fields_ = [("foreground_voxels", C.c_uint64), ("volume_mm3", C.c_double),
                ("equivalent_diameter_mm", C.c_double), ("mean_probability", C.c_float),
                ("mean_entropy", C.c_float), ("mean_mutual_info", C.c_float),
                ("uncertainty_score", C.c_float), ("review_threshold", C.c_float),
                ("n_samples", C.c_uint32), ("needs_review", C.c_bool)]


class Uncertainty(C.Structure):  # lungseg_uncertainty (96 bytes)
    _fields_ = [("mean", C.POINTER(C.c_float)), ("variance", C.POINTER(C.c_float)),
                ("entropy", C.POINTER(C.c_float)), ("mutual_info", C.POINTER(C.c_float)),
                ("len", C.c_size_t), ("summary", Summary)]


class McOptions(C.Structure):  # lungseg_mc_options V5 (96 bytes)
    _fields_ = [("struct_size", C.c_uint32), ("n_samples", C.c_uint32), ("seed", C.c_uint64),
                ("override_review_threshold", C.c_uint32), ("review_threshold", C.c_float),
                ("structure_measures", C.c_void_p), ("review_score", C.c_uint32),
                ("run", C.c_void_p), ("scan_resolution_mm", C.c_double * 3),
                ("final_mask", C.POINTER(C.c_uint8)), ("final_mask_len", C.c_size_t),
                ("mask_source", C.POINTER(C.c_uint32))]


# lungseg_mask_source: how the call's final mask was made.
MASK_SOURCES = {1: "model mask", 2: "no scan", 3: "scan too coarse", 4: "first look only",
                5: "joined"}


class ModelInfo(C.Structure):  # lungseg_model_info (176 bytes)
    _fields_ = [("patch_size", C.c_uint32 * 3), ("spacing_mm", C.c_double * 3),
                ("hu_window", C.c_float * 2), ("levels", C.c_uint32),
                ("channels", C.c_uint32 * 8), ("dropout_p", C.c_float),
                ("dropout_kind", C.c_uint32), ("review_threshold", C.c_float),
                ("parameter_count", C.c_uint64), ("device", C.c_uint32),
                ("device_name", C.c_char * 64)]


assert (C.sizeof(Summary), C.sizeof(Uncertainty), C.sizeof(McOptions), C.sizeof(ModelInfo)) \
    == (56, 96, 96, 176), "ctypes layouts differ from lungseg.h"


class Lungseg:
    """The few C ABI calls the smoke test needs; a failing call raises with the message."""

    def __init__(self, path):
        self.lib = C.CDLL(path)
        self.lib.lungseg_last_error.restype = C.c_size_t

    def check(self, status, call):
        if status != 0:
            buf = C.create_string_buffer(1024)
            self.lib.lungseg_last_error(buf, C.sizeof(buf))
            raise RuntimeError(f"{call}: status {status}: {buf.value.decode()}")

    def open_model(self, path):
        m = C.c_void_p()
        self.check(self.lib.lungseg_model_open(path.encode(), None, C.byref(m)), "model_open")
        info = ModelInfo()
        self.check(self.lib.lungseg_model_get_info(m, C.byref(info)), "model_get_info")
        t = C.c_float()
        self.check(self.lib.lungseg_model_get_mask_threshold(m, C.byref(t)),
                   "model_get_mask_threshold")
        return m, info, t.value

    def open_volume(self, path):
        v = C.c_void_p()
        self.check(self.lib.lungseg_volume_open(path.encode(), C.byref(v)), "volume_open")
        return v

    def admits(self, model, volume):
        """Whether the scan is within the model's intended use (its scan-spacing limit)."""
        ok = C.c_bool()
        self.check(self.lib.lungseg_model_admits_volume(model, volume, C.byref(ok)),
                   "model_admits_volume")
        return ok.value

    def predict_at(self, model, volume, world, voxels, samples):
        """The mean map, the summary, the call's final mask (the model's second look included
        where it runs) and how that mask was made."""
        mean = (C.c_float * voxels)()
        mask = (C.c_uint8 * voxels)()
        source = C.c_uint32()
        out = Uncertainty(mean=mean, len=voxels)
        opts = McOptions(struct_size=C.sizeof(McOptions), n_samples=samples, seed=0,
                         final_mask=mask, final_mask_len=voxels, mask_source=C.pointer(source))
        centre = (C.c_double * 3)(*world)
        self.check(self.lib.lungseg_predict_uncertainty_at(model, volume, centre, C.byref(opts),
                                                           C.byref(out)), "predict_at")
        return (np.frombuffer(mean, dtype=np.float32).copy(), out.summary,
                np.frombuffer(mask, dtype=np.uint8).astype(bool), MASK_SOURCES[source.value])

    def final_mask(self, model, mean):
        """The mask the library returns for `mean` (threshold and component filter of the model)."""
        src = mean.ctypes.data_as(C.POINTER(C.c_float))
        mask = (C.c_uint8 * mean.size)()
        self.check(self.lib.lungseg_final_mask(model, src, C.c_size_t(mean.size), mask, None),
                   "final_mask")
        return np.frombuffer(mask, dtype=np.uint8).astype(bool)


def patch_grid(info, centre):
    """The model's patch around `centre` as an image (lungseg's patch grid: identity direction,
    voxel i at centre + (i - size // 2) * spacing)."""
    size = [int(n) for n in info.patch_size]
    spacing = [float(s) for s in info.spacing_mm]
    ref = sitk.Image(size, sitk.sitkUInt8)
    ref.SetSpacing(spacing)
    ref.SetOrigin([c - (n // 2) * s for c, n, s in zip(centre, size, spacing)])
    return ref


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", default="runs/real-ct-smoke")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/lungseg/pyradiomics"))
    ap.add_argument("--samples", type=int, default=20)
    a = ap.parse_args()
    lib = Lungseg(os.environ.get("LUNGSEG_LIB", "target/release/liblungseg.so"))
    model, info, mask_threshold = lib.open_model(a.model)
    voxels = int(np.prod([int(n) for n in info.patch_size]))
    files = fetch(a.cache)
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for case in CASES:
        image = sitk.ReadImage(files[(case, "image")])
        label = sitk.ReadImage(files[(case, "label")])
        scan = os.path.join(a.out, f"{case}.mhd")
        sitk.WriteImage(sitk.Cast(image, sitk.sitkInt16), scan)
        volume = lib.open_volume(scan)
        admitted = lib.admits(model, volume)
        cc, found = lesions(label)
        for comp, centroid, diameter, n in found:
            mean, s, mask, source = lib.predict_at(model, volume, centroid, voxels, a.samples)
            truth = sitk.Resample(sitk.Cast(cc == comp, sitk.sitkUInt8),
                                  patch_grid(info, centroid), sitk.Transform(),
                                  sitk.sitkNearestNeighbor, 0)
            truth = sitk.GetArrayFromImage(truth).reshape(-1) > 0  # z-major, x fastest
            lesion_mm3 = float(n * np.prod(image.GetSpacing()))
            rows.append({
                "case": case, "lesion": comp, "centroid_mm": centroid,
                "diameter_mm": diameter, "lesion_volume_mm3": lesion_mm3,
                "lesion_share_in_patch": float(truth.sum() * np.prod(info.spacing_mm) / lesion_mm3),
                "dice_in_patch": float(dice(mask, truth)),
                "mask_source": source,
                # The model's own mask of the mean, without a second look.
                "dice_model_mask": float(dice(lib.final_mask(model, mean), truth)),
                # The mean cut at the threshold alone, before the component filter: tells a
                # loss of the weights from one of the filter.
                "dice_threshold_only": float(dice(mean >= mask_threshold, truth)),
                # How sure the model is over the lesion itself: a low mean with a high Dice
                # at a lower cut is a threshold's loss, a low mean everywhere a miss.
                "lesion_mean_probability": float(mean[truth].mean()) if truth.any() else 0.0,
                "lesion_share_at": {f"{t:g}": float((mean[truth] >= t).mean()) if truth.any()
                                    else 0.0 for t in (0.3, 0.5, mask_threshold)},
                "predicted_volume_mm3": s.volume_mm3,
                "scan_spacing_mm": list(image.GetSpacing()),
                # False: the scan is coarser than the model is meant for, and every patch of
                # it needs review whatever its score.
                "scan_admitted": admitted,
                "needs_review": bool(s.needs_review),
                "uncertainty_score": s.uncertainty_score,
                "review_threshold": s.review_threshold,
            })
        lib.lib.lungseg_volume_free(volume)
    lib.lib.lungseg_model_free(model)
    json.dump({"model": a.model, "lesions": rows}, open(os.path.join(a.out, "smoke.json"), "w"),
              indent=2)
    print("| case | lesion | diameter mm | share in patch | Dice | predicted / lesion mm³ | "
          "scan within intended use | review flag (score vs threshold) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        flag = "yes" if r["needs_review"] else "no"
        within = "yes" if r["scan_admitted"] else "no (slices %.1f mm)" % max(r["scan_spacing_mm"])
        print(f"| {r['case']} | {r['lesion']} | {r['diameter_mm']:.1f} | "
              f"{r['lesion_share_in_patch']:.2f} | {r['dice_in_patch']:.3f} | "
              f"{r['predicted_volume_mm3']:.0f} / {r['lesion_volume_mm3']:.0f} | {within} | {flag} "
              f"({r['uncertainty_score']:.4f} vs {r['review_threshold']:.4f}) |")
    failed = [r for r in rows if r["dice_in_patch"] < 0.5]
    caught = [r for r in failed if r["needs_review"]]
    print(f"\n{len(failed)} of {len(rows)} lesions segmented with Dice < 0.5; the review flag "
          f"fired on {len(caught)} of them.")


if __name__ == "__main__":
    main()

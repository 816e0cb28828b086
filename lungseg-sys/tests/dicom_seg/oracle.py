"""Outside oracle for lungseg's DICOM SEG writer (run by tests/dicom_seg.rs).

    python3 oracle.py case.json
    python3 oracle.py --stamp folder   # sets Patient/Study attributes, in Latin-1


case.json: {"seg": path, "source_dir": path, "frames": n, "series_uid": the source series
when the folder holds more than one, "segments": [{"label", "description",
"algorithm_name", "algorithm_version", "mask": path of the raw mask (uint8, x fastest, then y,
then z in the order of the slices along their normal)}]}.

Reads the SEG with highdicom and pydicom, the source slices with pydicom, and checks the object
against them: a valid binary SEG, its segments, each frame's position and source reference, the
decoded pixels of every segment (highdicom's decoder and an independent unpacking of the bits)
against the masks, and highdicom's volume against the masks in world coordinates. Prints "ok"; any difference raises.
"""

import json
import os
import sys

try:
    import highdicom as hd
    import numpy as np
    import pydicom
    from pydicom.sr.coding import Code
except ImportError as e:  # the Rust test shows this and fails
    sys.exit(
        f"the DICOM SEG oracle needs highdicom, pydicom and numpy in {sys.executable}: {e} "
        "(pip install highdicom pydicom numpy, or set LUNGSEG_PYTHON to a python3 that has them)"
    )

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def source_slices(folder, series_uid):
    """The source slices (of the series `series_uid`, or of the folder's only series) by
    SOPInstanceUID, and their UIDs sorted along the slice normal."""
    by_uid = {}
    for name in sorted(os.listdir(folder)):
        ds = pydicom.dcmread(os.path.join(folder, name))
        if series_uid in (None, ds.SeriesInstanceUID):
            by_uid[ds.SOPInstanceUID] = ds
    first = next(iter(by_uid.values()))
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    along = {u: float(np.dot(normal, [float(v) for v in d.ImagePositionPatient])) for u, d in by_uid.items()}
    return by_uid, sorted(by_uid, key=along.get)


def check_header(ds, first, case):
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian, ds.file_meta
    assert ds.SOPClassUID == SEG_STORAGE and ds.file_meta.MediaStorageSOPClassUID == SEG_STORAGE
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.Modality == "SEG" and list(ds.ImageType) == ["DERIVED", "PRIMARY"], ds.ImageType
    assert ds.SegmentationType == "BINARY"
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.SamplesPerPixel) == (1, 1, 0, 1)
    assert (ds.Rows, ds.Columns) == (first.Rows, first.Columns)
    assert int(ds.NumberOfFrames) == case["frames"], (ds.NumberOfFrames, case["frames"])
    for uid in (ds.SeriesInstanceUID, ds.SOPInstanceUID):
        assert uid.startswith("2.25.") and len(uid) <= 64 and uid != first.SeriesInstanceUID, uid
    for kw in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "PatientName", "StudyDate",
               "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
               "PatientBirthDate", "PatientSex"):
        assert str(ds.get(kw, "")) == str(first.get(kw, "")), (kw, ds.get(kw), first.get(kw))
    assert ds.ContentLabel and ds.ContentCreatorName
    assert "DimensionOrganizationType" not in ds, "3D claims one regularly spaced volume"


def check_references(ds, by_uid, series_uid):
    (ref,) = ds.ReferencedSeriesSequence
    assert ref.SeriesInstanceUID == series_uid
    refs = {(r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID) for r in ref.ReferencedInstanceSequence}
    assert refs == {(d.SOPClassUID, u) for u, d in by_uid.items()}, refs


def check_segments(seg, case):
    assert seg.number_of_segments == len(case["segments"])
    category = Code("49755003", "SCT", "Morphologically Altered Structure")
    prop = Code("27925004", "SCT", "Nodule")
    for n, want in enumerate(case["segments"], start=1):
        d = seg.get_segment_description(n)
        assert d.segment_number == n
        assert d.segment_label == want["label"], (d.segment_label, want["label"])
        assert d.get("SegmentDescription", "") == want["description"], d.get("SegmentDescription")
        assert d.algorithm_type.value == "AUTOMATIC"
        assert d.SegmentAlgorithmName == want["algorithm_name"]
        alg = d.algorithm_identification
        assert alg.name == want["algorithm_name"] and alg.version == want["algorithm_version"]
        assert d.segmented_property_category == category, d.segmented_property_category
        assert d.segmented_property_type == prop, d.segmented_property_type


def masks(case, rows, cols, n_slices):
    """Each segment's mask as [z, y, x]."""
    out = []
    for s in case["segments"]:
        m = np.fromfile(s["mask"], dtype=np.uint8)
        assert m.size == rows * cols * n_slices, (m.size, rows, cols, n_slices)
        out.append(m.reshape(n_slices, rows, cols))
    return out


def check_frames(ds, by_uid, order, want):
    """Every frame: on its source slice's position, referencing it, its bits that slice of its
    segment's mask (bits unpacked here, LSB first, frames back to back); every non-empty
    (segment, slice) has its frame."""
    rows, cols = ds.Rows, ds.Columns
    n = int(ds.NumberOfFrames)
    bits = np.unpackbits(np.frombuffer(ds.PixelData, np.uint8), bitorder="little")
    assert len(ds.PixelData) % 2 == 0 and bits.size >= n * rows * cols
    assert len(ds.PixelData) <= (n * rows * cols + 7) // 8 + 1, "padding only at the end"
    frames = bits[: n * rows * cols].reshape(n, rows, cols)
    seen = set()
    for i, f in enumerate(ds.PerFrameFunctionalGroupsSequence):
        (der,) = f.DerivationImageSequence
        (src,) = der.SourceImageSequence
        assert src.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        assert src.PurposeOfReferenceCodeSequence[0].CodingSchemeDesignator == "DCM"
        assert src.SpatialLocationsPreserved == "YES"
        uid = src.ReferencedSOPInstanceUID
        assert src.ReferencedSOPClassUID == by_uid[uid].SOPClassUID
        got = [float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
        assert got == [float(v) for v in by_uid[uid].ImagePositionPatient], (i, got)
        s = f.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        z = order.index(uid)
        assert list(f.FrameContentSequence[0].DimensionIndexValues) == [s, z + 1]
        assert np.array_equal(frames[i], want[s - 1][z]), f"frame {i}: segment {s}, slice {z}"
        seen.add((s, z))
    expected = {(s + 1, z) for s, m in enumerate(want) for z in range(m.shape[0]) if m[z].any()}
    assert seen == expected or (not expected and len(seen) == 1), (seen, expected)


def check_pixels(seg, order, want):
    """highdicom's decoding, per source instance, equals every mask."""
    got = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=order,
        segment_numbers=list(range(1, len(want) + 1)),
        combine_segments=False,
        assert_missing_frames_are_empty=True,
    )
    assert got.shape == (len(order), *want[0].shape[1:], len(want)), got.shape
    for s, m in enumerate(want):
        assert np.array_equal(got[..., s], m), f"segment {s + 1}"


def world_of_mask(m, by_uid, order):
    """Each set voxel of a [z, y, x] mask at its world position, from the source slices alone."""
    first = by_uid[order[0]]
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    z, y, x = np.nonzero(m)
    ipp = np.array([[float(v) for v in by_uid[order[k]].ImagePositionPatient] for k in z]).reshape(-1, 3)
    return ipp + np.outer(x * col_spacing, iop[:3]) + np.outer(y * row_spacing, iop[3:])


def check_volume(seg, by_uid, order, want):
    """highdicom's volume (its own geometry from the frames' positions and orientation) puts
    every set voxel where the mask's voxel is in the world, and no other."""
    vol = seg.get_volume(combine_segments=False)
    assert vol.array.shape[-1] == len(want), vol.array.shape
    for s, m in enumerate(want):
        idx = np.argwhere(vol.array[..., s] > 0)
        got = (vol.affine @ np.c_[idx, np.ones(len(idx))].T).T[:, :3]
        exp = world_of_mask(m, by_uid, order)
        assert len(got) == len(exp), f"segment {s + 1}: {len(got)} voxels, mask {len(exp)}"
        if len(exp):
            d = np.linalg.norm(got[:, None, :] - exp[None, :, :], axis=2)
            assert d.min(axis=1).max() < 1e-4 and d.min(axis=0).max() < 1e-4, f"segment {s + 1}"


PATIENT_STUDY = {
    "SpecificCharacterSet": "ISO_IR 100",
    "PatientName": "Müller^Jörg",
    "PatientBirthDate": "19610203",
    "PatientSex": "M",
    "StudyDate": "20261129",
    "StudyTime": "101500",
    "ReferringPhysicianName": "Dr^Åsa",
    "StudyID": "S42",
    "AccessionNumber": "ACC-7",
}


def stamp(folder):
    """Gives every file of `folder` the Patient/Study attributes above, in Latin-1 (ISO_IR 100),
    so the SEG (UTF-8) must carry them across character sets."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        ds = pydicom.dcmread(path)
        for kw, value in PATIENT_STUDY.items():
            setattr(ds, kw, value)
        ds.save_as(path)


def main():
    if sys.argv[1] == "--stamp":
        stamp(sys.argv[2])
        return
    with open(sys.argv[1]) as f:
        case = json.load(f)
    seg = hd.seg.segread(case["seg"])
    ds = pydicom.dcmread(case["seg"])
    by_uid, order = source_slices(case["source_dir"], case.get("series_uid"))
    first = by_uid[order[0]]
    check_header(ds, first, case)
    if case.get("stamped"):
        assert ds.SpecificCharacterSet == "ISO_IR 192", ds.SpecificCharacterSet
        for kw, value in PATIENT_STUDY.items():
            if kw != "SpecificCharacterSet":
                assert str(ds.get(kw)) == value, (kw, ds.get(kw), value)
    check_references(ds, by_uid, first.SeriesInstanceUID)
    check_segments(seg, case)
    want = masks(case, first.Rows, first.Columns, len(order))
    check_frames(ds, by_uid, order, want)
    check_pixels(seg, order, want)
    check_volume(seg, by_uid, order, want)
    print("ok")


if __name__ == "__main__":
    main()

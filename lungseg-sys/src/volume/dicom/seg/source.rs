//! The source series as a SEG references it: its grid, its slices' identities and positions in
//! volume order, and the patient and study the SEG belongs to.

use super::super::identity::{Identity, PatientStudy};
use super::super::stack::Stack;
use super::super::{open_stack, DicomOptions};
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::path::Path;

/// One source slice: what a frame on it references, and where it lies.
#[derive(Debug, Clone)]
pub struct SourceSlice {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// Image Position (Patient) as the slice says it.
    pub position: [f64; 3],
}

/// The grid and references of the source series.
#[derive(Debug, Clone)]
pub struct Source {
    pub rows: u16,
    pub columns: u16,
    /// Pixel Spacing of the slices: between rows, then between columns (mm).
    pub pixel_spacing: [f64; 2],
    /// Image Orientation (Patient) of the slices.
    pub orientation: [f64; 6],
    /// Distance between neighbouring slices along the normal (mm).
    pub slice_spacing: f64,
    /// The slices in volume (z) order.
    pub slices: Vec<SourceSlice>,
    pub series_instance_uid: String,
    pub study_instance_uid: String,
    pub frame_of_reference_uid: String,
    pub patient: PatientStudy,
}

impl Source {
    pub fn voxels_per_slice(&self) -> usize {
        usize::from(self.rows) * usize::from(self.columns)
    }

    pub fn voxel_count(&self) -> usize {
        self.voxels_per_slice() * self.slices.len()
    }
}

/// Reads the series' headers (no pixel) and checks that it says what a SEG must reference.
pub fn read(dir: &Path, opts: &DicomOptions) -> Result<Source> {
    let stack = open_stack(dir, opts)?;
    from_stack(&stack).map_err(|e| e.context(dir.display()))
}

/// The references of a sorted series, which must identify every slice uniquely and share one
/// study and frame of reference.
pub fn from_stack(stack: &Stack) -> Result<Source> {
    let first = &stack.slices[0];
    let ids = &first.header.identity;
    for (what, value) in [
        ("StudyInstanceUID", &ids.study_instance_uid),
        ("SeriesInstanceUID", &ids.series_instance_uid),
        ("FrameOfReferenceUID", &ids.frame_of_reference_uid),
    ] {
        if value.is_empty() {
            return Err(Error::format(format!(
                "{}: no {what}, which a SEG must reference",
                first.path.display()
            )));
        }
    }
    let mut seen = HashSet::new();
    let mut slices = Vec::with_capacity(stack.slices.len());
    for s in &stack.slices {
        let id = &s.header.identity;
        same_study(ids, id).map_err(|e| e.context(s.path.display()))?;
        if id.sop_class_uid.is_empty() || id.sop_instance_uid.is_empty() {
            return Err(Error::format(format!(
                "{}: no SOPClassUID or SOPInstanceUID, which a SEG frame must reference",
                s.path.display()
            )));
        }
        if !seen.insert(id.sop_instance_uid.as_str()) {
            return Err(Error::format(format!(
                "{}: SOPInstanceUID {} is also another slice's: a SEG frame could not say \
                 which it lies on",
                s.path.display(),
                id.sop_instance_uid
            )));
        }
        slices.push(SourceSlice {
            sop_class_uid: id.sop_class_uid.clone(),
            sop_instance_uid: id.sop_instance_uid.clone(),
            position: s.header.position,
        });
    }
    Ok(Source {
        rows: first.header.rows,
        columns: first.header.columns,
        pixel_spacing: first.header.pixel_spacing,
        orientation: first.header.orientation,
        slice_spacing: stack.geometry.spacing[2],
        slices,
        series_instance_uid: ids.series_instance_uid.clone(),
        study_instance_uid: ids.study_instance_uid.clone(),
        frame_of_reference_uid: ids.frame_of_reference_uid.clone(),
        patient: ids.patient.clone(),
    })
}

/// A slice of the series in another study or frame of reference than the first cannot share
/// one SEG with it.
fn same_study(first: &Identity, s: &Identity) -> Result<()> {
    for (what, a, b) in [
        (
            "StudyInstanceUID",
            &first.study_instance_uid,
            &s.study_instance_uid,
        ),
        (
            "FrameOfReferenceUID",
            &first.frame_of_reference_uid,
            &s.frame_of_reference_uid,
        ),
    ] {
        if a != b {
            return Err(Error::format(format!(
                "{what} {b:?} differs from the first slice's {a:?}: one SEG cannot reference both"
            )));
        }
    }
    Ok(())
}

/// A source of `rows` × `columns` × `slices` on an axial grid, for unit tests.
#[cfg(test)]
pub fn synthetic(rows: u16, columns: u16, slices: usize) -> Source {
    Source {
        rows,
        columns,
        pixel_spacing: [1.0, 1.0],
        orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        slice_spacing: 1.0,
        slices: (0..slices)
            .map(|z| SourceSlice {
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                sop_instance_uid: format!("1.2.3.{z}"),
                position: [0.0, 0.0, z as f64],
            })
            .collect(),
        series_instance_uid: "1.2.3".into(),
        study_instance_uid: "1.2".into(),
        frame_of_reference_uid: "1.2.4".into(),
        patient: PatientStudy::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// The axial fixture series, for its identities to be spoiled one at a time.
    fn axial() -> Stack {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom/axial_int16");
        open_stack(&dir, &DicomOptions::default()).unwrap()
    }

    fn refused(stack: &Stack, words: &str) {
        let e = from_stack(stack).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Format, "{e}");
        assert!(e.message.contains(words), "{e}");
    }

    #[test]
    fn the_fixture_gives_every_slice_its_reference_in_volume_order() {
        let stack = axial();
        let src = from_stack(&stack).unwrap();
        assert_eq!(src.slices.len(), stack.slices.len());
        for (s, t) in src.slices.iter().zip(&stack.slices) {
            assert_eq!(s.sop_instance_uid, t.header.identity.sop_instance_uid);
            assert_eq!(s.position, t.header.position);
        }
        assert!(src
            .slices
            .iter()
            .all(|s| s.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"));
        assert_eq!(src.slice_spacing, stack.geometry.spacing[2]);
    }

    #[test]
    fn slices_without_unique_references_are_refused() {
        let mut stack = axial();
        stack.slices[3].header.identity.sop_instance_uid.clear();
        refused(&stack, "no SOPClassUID or SOPInstanceUID");
        let mut stack = axial();
        let uid = stack.slices[1].header.identity.sop_instance_uid.clone();
        stack.slices[4].header.identity.sop_instance_uid = uid;
        refused(&stack, "is also another slice's");
    }

    #[test]
    fn a_series_without_study_or_frame_of_reference_is_refused() {
        let mut stack = axial();
        stack.slices[0]
            .header
            .identity
            .frame_of_reference_uid
            .clear();
        refused(&stack, "no FrameOfReferenceUID");
        let mut stack = axial();
        stack.slices[2].header.identity.study_instance_uid = "1.2.3".into();
        refused(
            &stack,
            "StudyInstanceUID \"1.2.3\" differs from the first slice's",
        );
        let mut stack = axial();
        stack.slices[5].header.identity.frame_of_reference_uid = "1.2.3".into();
        refused(&stack, "FrameOfReferenceUID \"1.2.3\" differs");
    }
}

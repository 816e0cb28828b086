//! The SEG data set: the Patient and General Study modules copied from the source, the
//! Segmentation Series, Frame of Reference, Enhanced General Equipment, Segmentation Image
//! (with the Segment Sequence), Multi-frame Functional Groups and Dimension modules, the Common
//! Instance Reference to the source series, and the Pixel Data.

use super::frames::Frame;
use super::source::{Source, SourceSlice};
use super::values::{
    at, code_sequence, decimals, item, new_uid, now_date_time, sequence, single, text, texts, ul,
    us, Code, Item,
};
use super::{Algorithm, Segment, SEGMENTATION_STORAGE};
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::{InMemDicomObject, InMemElement};

/// Segmented Property Category of every segment.
pub const CATEGORY: Code = Code {
    value: "49755003",
    scheme: "SCT",
    meaning: "Morphologically Altered Structure",
};
/// Segmented Property Type of every segment.
pub const PROPERTY_TYPE: Code = Code {
    value: "27925004",
    scheme: "SCT",
    meaning: "Nodule",
};
/// Algorithm Family (CID 7162).
pub const ALGORITHM_FAMILY: Code = Code {
    value: "123110",
    scheme: "DCM",
    meaning: "Artificial Intelligence",
};
/// Purpose of Reference of each frame's source image.
pub const SOURCE_IMAGE_PURPOSE: Code = Code {
    value: "121322",
    scheme: "DCM",
    meaning: "Source image for image processing operation",
};
/// Derivation of each frame.
pub const DERIVATION: Code = Code {
    value: "113076",
    scheme: "DCM",
    meaning: "Segmentation",
};
/// Content Label (CS).
pub const CONTENT_LABEL: &str = "LUNG_NODULES";

/// The UIDs the new object gets.
#[derive(Debug, Clone)]
pub struct NewIds {
    pub series: String,
    pub instance: String,
    pub dimension_organization: String,
}

impl NewIds {
    pub fn generate() -> NewIds {
        NewIds {
            series: new_uid(),
            instance: new_uid(),
            dimension_organization: new_uid(),
        }
    }
}

/// Everything the data set is made of.
pub struct Content<'a> {
    pub source: &'a Source,
    pub segments: &'a [Segment<'a>],
    pub frames: &'a [Frame],
    pub ids: &'a NewIds,
    /// The packed frames ([`super::frames::pack`]).
    pub pixels: Vec<u8>,
}

/// The whole data set (the Pixel Data moved in, not copied).
pub fn build(c: Content) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    let groups = [
        general(&c),
        patient_study(c.source),
        image_pixel(&c),
        segmentation(&c),
        dimensions(&c),
    ];
    for e in groups.into_iter().flatten() {
        obj.put(e);
    }
    obj.put(sequence(
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![shared_groups(c.source)],
    ));
    obj.put(sequence(
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        c.frames.iter().map(|f| frame_groups(&c, f)).collect(),
    ));
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::U8(c.pixels.into()),
    ));
    obj
}

/// SOP Common, General/Segmentation Series, Frame of Reference, equipment, General Image.
fn general(c: &Content) -> Vec<InMemElement> {
    let s = c.source;
    let (date, time) = now_date_time();
    let first = c.segments[0].algorithm;
    vec![
        text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        texts(tags::IMAGE_TYPE, VR::CS, ["DERIVED", "PRIMARY"]),
        text(tags::SOP_CLASS_UID, VR::UI, SEGMENTATION_STORAGE),
        text(tags::SOP_INSTANCE_UID, VR::UI, &c.ids.instance),
        text(tags::SERIES_DATE, VR::DA, &date),
        text(tags::SERIES_TIME, VR::TM, &time),
        text(tags::CONTENT_DATE, VR::DA, &date),
        text(tags::CONTENT_TIME, VR::TM, &time),
        text(tags::MODALITY, VR::CS, "SEG"),
        text(tags::MANUFACTURER, VR::LO, Algorithm::LUNGSEG.name),
        text(tags::SERIES_DESCRIPTION, VR::LO, "Lung nodule segmentation"),
        text(tags::MANUFACTURER_MODEL_NAME, VR::LO, first.name),
        text(tags::DEVICE_SERIAL_NUMBER, VR::LO, Algorithm::LUNGSEG.name),
        text(tags::SOFTWARE_VERSIONS, VR::LO, Algorithm::LUNGSEG.version),
        text(tags::SERIES_INSTANCE_UID, VR::UI, &c.ids.series),
        text(tags::SERIES_NUMBER, VR::IS, "1"),
        text(tags::INSTANCE_NUMBER, VR::IS, "1"),
        text(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &s.frame_of_reference_uid,
        ),
        text(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""),
        referenced_series(s),
    ]
}

/// The Patient and General Study modules, copied (type 2: empty when the source has none).
fn patient_study(s: &Source) -> Vec<InMemElement> {
    let mut out = vec![text(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &s.study_instance_uid,
    )];
    for (tag, vr, value) in s.patient.tagged() {
        out.push(text(tag, vr, value));
    }
    out
}

/// Referenced SOP Class and Instance UIDs of one source slice.
fn sop_reference(slice: &SourceSlice) -> [InMemElement; 2] {
    [
        text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &slice.sop_class_uid),
        text(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            &slice.sop_instance_uid,
        ),
    ]
}

/// Common Instance Reference: every slice of the source series.
fn referenced_series(s: &Source) -> InMemElement {
    let instances = s.slices.iter().map(|sl| item(sop_reference(sl))).collect();
    single(
        tags::REFERENCED_SERIES_SEQUENCE,
        [
            sequence(tags::REFERENCED_INSTANCE_SEQUENCE, instances),
            text(tags::SERIES_INSTANCE_UID, VR::UI, &s.series_instance_uid),
        ],
    )
}

/// Image Pixel and the binary part of the Segmentation Image module.
fn image_pixel(c: &Content) -> Vec<InMemElement> {
    vec![
        us(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        text(tags::NUMBER_OF_FRAMES, VR::IS, &c.frames.len().to_string()),
        us(tags::ROWS, c.source.rows),
        us(tags::COLUMNS, c.source.columns),
        us(tags::BITS_ALLOCATED, 1),
        us(tags::BITS_STORED, 1),
        us(tags::HIGH_BIT, 0),
        us(tags::PIXEL_REPRESENTATION, 0),
        text(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"),
    ]
}

/// Segmentation Image: content identification, type and the Segment Sequence.
fn segmentation(c: &Content) -> Vec<InMemElement> {
    vec![
        text(tags::CONTENT_LABEL, VR::CS, CONTENT_LABEL),
        text(
            tags::CONTENT_DESCRIPTION,
            VR::LO,
            "Lung nodules, Monte-Carlo-dropout uncertainty",
        ),
        text(tags::CONTENT_CREATOR_NAME, VR::PN, Algorithm::LUNGSEG.name),
        text(tags::SEGMENTATION_TYPE, VR::CS, "BINARY"),
        sequence(
            tags::SEGMENT_SEQUENCE,
            c.segments
                .iter()
                .enumerate()
                .map(|(i, s)| segment_item(i, s))
                .collect(),
        ),
    ]
}

fn segment_item(index: usize, s: &Segment) -> Item {
    let mut it = item([
        us(tags::SEGMENT_NUMBER, (index + 1) as u16),
        text(tags::SEGMENT_LABEL, VR::LO, s.label),
        text(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "AUTOMATIC"),
        text(tags::SEGMENT_ALGORITHM_NAME, VR::LO, s.algorithm.name),
        single(
            tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE,
            [
                code_sequence(tags::ALGORITHM_FAMILY_CODE_SEQUENCE, ALGORITHM_FAMILY),
                text(tags::ALGORITHM_VERSION, VR::LO, s.algorithm.version),
                text(tags::ALGORITHM_NAME, VR::LO, s.algorithm.name),
            ],
        ),
        code_sequence(tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE, CATEGORY),
        code_sequence(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE, PROPERTY_TYPE),
    ]);
    if !s.description.is_empty() {
        it.put(text(tags::SEGMENT_DESCRIPTION, VR::ST, s.description));
    }
    it
}

/// Multi-frame Dimension: frames are indexed by segment, then by position. No Dimension
/// Organization Type: "3D" would claim one regularly spaced volume, which several segments or
/// omitted empty frames are not.
fn dimensions(c: &Content) -> Vec<InMemElement> {
    let uid = || {
        text(
            tags::DIMENSION_ORGANIZATION_UID,
            VR::UI,
            &c.ids.dimension_organization,
        )
    };
    let index = |pointer, group, label| {
        item([
            uid(),
            at(tags::DIMENSION_INDEX_POINTER, pointer),
            at(tags::FUNCTIONAL_GROUP_POINTER, group),
            text(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label),
        ])
    };
    vec![
        single(tags::DIMENSION_ORGANIZATION_SEQUENCE, [uid()]),
        sequence(
            tags::DIMENSION_INDEX_SEQUENCE,
            vec![
                index(
                    tags::REFERENCED_SEGMENT_NUMBER,
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    "Segment Number",
                ),
                index(
                    tags::IMAGE_POSITION_PATIENT,
                    tags::PLANE_POSITION_SEQUENCE,
                    "Image Position Patient",
                ),
            ],
        ),
    ]
}

/// Pixel Measures and Plane Orientation, shared by every frame.
fn shared_groups(s: &Source) -> Item {
    item([
        single(
            tags::PIXEL_MEASURES_SEQUENCE,
            [
                decimals(tags::SLICE_THICKNESS, &[s.slice_spacing]),
                decimals(tags::SPACING_BETWEEN_SLICES, &[s.slice_spacing]),
                decimals(tags::PIXEL_SPACING, &s.pixel_spacing),
            ],
        ),
        single(
            tags::PLANE_ORIENTATION_SEQUENCE,
            [decimals(tags::IMAGE_ORIENTATION_PATIENT, &s.orientation)],
        ),
    ])
}

/// One frame's groups: its source slice, dimension index values, position and segment.
fn frame_groups(c: &Content, f: &Frame) -> Item {
    let slice = &c.source.slices[f.slice];
    let [class, instance] = sop_reference(slice);
    let source_image = [
        class,
        instance,
        code_sequence(
            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
            SOURCE_IMAGE_PURPOSE,
        ),
        // The frame is on the source slice's grid, pixel for pixel.
        text(tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES"),
    ];
    // Slices are at most the voxel count of a volume the reader accepts: far below u32::MAX.
    let position_index = u32::try_from(f.slice + 1).unwrap_or(u32::MAX);
    item([
        single(
            tags::DERIVATION_IMAGE_SEQUENCE,
            [
                single(tags::SOURCE_IMAGE_SEQUENCE, source_image),
                code_sequence(tags::DERIVATION_CODE_SEQUENCE, DERIVATION),
            ],
        ),
        single(
            tags::FRAME_CONTENT_SEQUENCE,
            [ul(
                tags::DIMENSION_INDEX_VALUES,
                &[u32::from(f.segment_number()), position_index],
            )],
        ),
        single(
            tags::PLANE_POSITION_SEQUENCE,
            [decimals(tags::IMAGE_POSITION_PATIENT, &slice.position)],
        ),
        single(
            tags::SEGMENT_IDENTIFICATION_SEQUENCE,
            [us(tags::REFERENCED_SEGMENT_NUMBER, f.segment_number())],
        ),
    ])
}

//! What identifies a slice and its patient and study, for objects derived from the series
//! (a DICOM SEG, [`seg`](super::seg)): read with every slice header, but never needed to read the
//! volume, so an absent or unreadable value is left empty here and refused only by the writer
//! that needs it.

use super::header::text;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemDicomObject;

/// The identifiers and the Patient / General Study attributes of one slice; each is empty when
/// the file does not say (or says it unreadably).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub series_instance_uid: String,
    pub study_instance_uid: String,
    pub frame_of_reference_uid: String,
    pub patient: PatientStudy,
}

/// The Patient and General Study module attributes a derived object copies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientStudy {
    pub patient_name: String,
    pub patient_id: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub study_date: String,
    pub study_time: String,
    pub referring_physician_name: String,
    pub study_id: String,
    pub accession_number: String,
}

impl PatientStudy {
    /// Each attribute with its tag and VR, in tag order.
    pub fn tagged(&self) -> [(Tag, VR, &str); 9] {
        [
            (tags::STUDY_DATE, VR::DA, &self.study_date),
            (tags::STUDY_TIME, VR::TM, &self.study_time),
            (tags::ACCESSION_NUMBER, VR::SH, &self.accession_number),
            (
                tags::REFERRING_PHYSICIAN_NAME,
                VR::PN,
                &self.referring_physician_name,
            ),
            (tags::PATIENT_NAME, VR::PN, &self.patient_name),
            (tags::PATIENT_ID, VR::LO, &self.patient_id),
            (tags::PATIENT_BIRTH_DATE, VR::DA, &self.patient_birth_date),
            (tags::PATIENT_SEX, VR::CS, &self.patient_sex),
            (tags::STUDY_ID, VR::SH, &self.study_id),
        ]
    }
}

/// A slice's identity from its parsed header.
pub fn read(obj: &InMemDicomObject) -> Identity {
    let get = |tag| text(obj, tag).ok().flatten().unwrap_or_default();
    Identity {
        sop_class_uid: get(tags::SOP_CLASS_UID),
        sop_instance_uid: get(tags::SOP_INSTANCE_UID),
        series_instance_uid: get(tags::SERIES_INSTANCE_UID),
        study_instance_uid: get(tags::STUDY_INSTANCE_UID),
        frame_of_reference_uid: get(tags::FRAME_OF_REFERENCE_UID),
        patient: PatientStudy {
            patient_name: get(tags::PATIENT_NAME),
            patient_id: get(tags::PATIENT_ID),
            patient_birth_date: get(tags::PATIENT_BIRTH_DATE),
            patient_sex: get(tags::PATIENT_SEX),
            study_date: get(tags::STUDY_DATE),
            study_time: get(tags::STUDY_TIME),
            referring_physician_name: get(tags::REFERRING_PHYSICIAN_NAME),
            study_id: get(tags::STUDY_ID),
            accession_number: get(tags::ACCESSION_NUMBER),
        },
    }
}

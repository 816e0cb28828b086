//! Which series of a folder to read: the one the caller names by SeriesInstanceUID, or else
//! the folder's only CT series.

use super::header::FileHeader;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A file of the folder with its header.
#[derive(Debug, Clone)]
pub struct Member {
    pub path: PathBuf,
    pub header: FileHeader,
}

/// The files of the chosen series, in folder order.
pub fn select(files: Vec<Member>, series_uid: Option<&str>) -> Result<Vec<Member>> {
    let uid = match series_uid {
        Some(uid) => uid.to_string(),
        None => the_ct_series(&files)?,
    };
    let chosen: Vec<Member> = files
        .iter()
        .filter(|f| f.header.series_uid == uid)
        .cloned()
        .collect();
    if chosen.is_empty() {
        return Err(Error::invalid(format!(
            "no series {uid} in this folder; it holds {}",
            listing(&files)
        )));
    }
    Ok(chosen)
}

fn the_ct_series(files: &[Member]) -> Result<String> {
    let mut ct: Vec<&str> = files
        .iter()
        .filter(|f| f.header.modality == "CT")
        .map(|f| f.header.series_uid.as_str())
        .collect();
    ct.sort_unstable();
    ct.dedup();
    match ct[..] {
        [one] => Ok(one.to_string()),
        [] => Err(Error::format(format!(
            "no CT series in this folder (it holds {}); name a series to read another modality",
            listing(files)
        ))),
        _ => Err(Error::invalid(format!(
            "{} CT series in this folder, name the one to read: {}",
            ct.len(),
            listing(files)
        ))),
    }
}

/// "uid (CT, 120 files), uid2 (MR, 30 files)", sorted by UID.
fn listing(files: &[Member]) -> String {
    if files.is_empty() {
        return "no image".into();
    }
    let mut by_uid: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    for f in files {
        let e = by_uid
            .entry(&f.header.series_uid)
            .or_insert((&f.header.modality, 0));
        e.1 += 1;
    }
    by_uid
        .iter()
        .map(|(uid, (modality, n))| {
            let modality = if modality.is_empty() {
                "no modality"
            } else {
                modality
            };
            format!(
                "{uid} ({modality}, {n} file{})",
                if *n == 1 { "" } else { "s" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

//! The points to predict at: rows of a LUNA16-style CSV for this scan, then `--point`s.

use std::path::Path;

use anyhow::{bail, Result};

use crate::prepare::luna;

/// A world point and where it came from (for messages and the JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub world: [f64; 3],
    /// `file.csv line N` or `--point`.
    pub origin: String,
}

/// Most points one run takes (the C ABI's batch limit).
pub const MAX_POINTS: usize = lungseg::ffi::LUNGSEG_MAX_BATCH_POINTS;

/// The CSV's rows whose seriesuid is `uid`, then `extra`. Refuses an empty list, and a CSV
/// with no row for the scan (naming the seriesuids it does have).
pub fn gather(csv: Option<&Path>, uid: &str, extra: &[[f64; 3]]) -> Result<Vec<Target>> {
    let mut out = Vec::new();
    if let Some(path) = csv {
        let rows = luna::read_points(path)?;
        let name = path.display();
        out.extend(rows.iter().filter(|r| r.seriesuid == uid).map(|r| Target {
            world: r.world,
            origin: format!("{name} line {}", r.line),
        }));
        if out.is_empty() {
            let mut uids: Vec<&str> = rows.iter().map(|r| r.seriesuid.as_str()).collect();
            uids.sort_unstable();
            uids.dedup();
            let shown = uids.iter().take(5).copied().collect::<Vec<_>>().join(", ");
            bail!(
                "{name} has no row for seriesuid {uid} ({} seriesuids, e.g. {shown}); pass \
                 --seriesuid to name the scan",
                uids.len()
            );
        }
    }
    out.extend(extra.iter().map(|&world| Target {
        world,
        origin: "--point".to_string(),
    }));
    if out.is_empty() {
        bail!("no points: give --candidates <csv> and/or --point x,y,z");
    }
    if out.len() > MAX_POINTS {
        bail!("{} points exceed the limit of {MAX_POINTS}", out.len());
    }
    Ok(out)
}

/// `"x,y,z"` in mm, each finite.
pub fn parse_point(s: &str) -> Result<[f64; 3], String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|t| t.trim().parse::<f64>().map_err(|e| format!("'{t}': {e}")))
        .collect::<Result<_, _>>()?;
    match v[..] {
        [x, y, z] if v.iter().all(|c| c.is_finite()) => Ok([x, y, z]),
        [_, _, _] => Err(format!("'{s}' is not finite")),
        _ => Err(format!("'{s}' is not x,y,z")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_parse_and_bad_ones_say_why() {
        assert_eq!(parse_point("1, -2.5,3e1"), Ok([1.0, -2.5, 30.0]));
        assert!(parse_point("1,2").unwrap_err().contains("not x,y,z"));
        assert!(parse_point("1,2,nan").unwrap_err().contains("not finite"));
        assert!(parse_point("1,a,3").unwrap_err().contains("'a'"));
    }

    #[test]
    fn rows_of_other_scans_are_skipped_and_none_is_an_error() {
        let dir = std::env::temp_dir().join(format!("lungseg-points-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("candidates.csv");
        std::fs::write(
            &csv,
            "seriesuid,coordX,coordY,coordZ,class\na,1,2,3,0\nb,4,5,6,1\na,7,8,9,1\n",
        )
        .unwrap();
        let t = gather(Some(&csv), "a", &[[0.0, 0.0, 1.0]]).unwrap();
        let worlds: Vec<_> = t.iter().map(|t| t.world).collect();
        assert_eq!(worlds, [[1.0, 2.0, 3.0], [7.0, 8.0, 9.0], [0.0, 0.0, 1.0]]);
        assert!(
            t[1].origin.ends_with("candidates.csv line 4"),
            "{}",
            t[1].origin
        );
        let e = gather(Some(&csv), "c", &[]).unwrap_err().to_string();
        assert!(
            e.contains("no row for seriesuid c (2 seriesuids, e.g. a, b)"),
            "{e}"
        );
        assert!(gather(None, "a", &[]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

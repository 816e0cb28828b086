//! Many candidate points of one scan in one call: the points run one after another, each on the
//! whole thread pool (sample-level parallelism inside a point), with one patch buffer, one
//! progress count over the batch and one cancel flag.

use super::model::{disjoint, mc_at, region, warn_intended_use, McCall, PatchOut, Region};
use super::run::log_failure;
use super::versioned::{arg_out, arg_versioned_out, VersionedOut};
use super::{
    arg_ref, arg_slice, guard, lungseg_mc_options, lungseg_model, lungseg_status,
    lungseg_structure_measures, lungseg_uncertainty, lungseg_volume,
};
use crate::error::{Error, Result};
use crate::mc::LogLevel;

/// Most points one batch call takes.
pub const LUNGSEG_MAX_BATCH_POINTS: usize = 1 << 20;

/// MC dropout at `n_points` world points (x, y, z mm each, `centers_world` holds 3 × n_points
/// doubles) of one volume: `out[i]` as `lungseg_predict_uncertainty_at` fills it for point i
/// (its maps and `len` set by the caller, any map NULL). With `opts->structure_measures`
/// non-NULL it points to `n_points` structs, each with `struct_size` set to the same size,
/// which is also their stride. With `opts->final_mask` non-NULL it holds one mask per point
/// (`final_mask_len` = `n_points` × the patch's voxel count) and `opts->mask_source` (may be
/// NULL) `n_points` sources. `opts->run` reports progress over the whole batch (a second look
/// adds its passes to the total when it runs).
///
/// Points run in order. `*n_done` (may be NULL) is set to the number of leading points whose
/// results were written: `n_points` on success; on failure or cancellation (`LUNGSEG_CANCELLED`)
/// fewer, and the message names the point that failed. Maps of different points may share
/// memory only if the caller wants later points to overwrite earlier ones; they must not
/// overlap `centers_world`, `out` or the measures.
#[no_mangle]
pub unsafe extern "C" fn lungseg_predict_uncertainty_batch(
    model: *const lungseg_model,
    volume: *const lungseg_volume,
    centers_world: *const f64,
    n_points: usize,
    opts: *const lungseg_mc_options,
    out: *mut lungseg_uncertainty,
    n_done: *mut usize,
) -> lungseg_status {
    guard(|| {
        let done = DoneCount::new(n_done)?;
        let m = arg_ref(model, "model")?;
        let v = &arg_ref(volume, "volume")?.inner;
        if n_points > LUNGSEG_MAX_BATCH_POINTS {
            return Err(Error::limit(format!(
                "n_points = {n_points} exceeds {LUNGSEG_MAX_BATCH_POINTS}"
            )));
        }
        if n_points == 0 {
            return Ok(());
        }
        let centers = arg_slice(centers_world, 3 * n_points, "centers_world")?;
        // Checked as a whole here; each element is reached through `arg_out` below.
        arg_slice(out.cast_const(), n_points, "out")?;
        let call = McCall::from_c(m, opts)?;
        let voxels = m.inner.config().patch_voxels();
        call.masks.check(n_points, voxels)?;
        let measures = Measures::from_c(call.measures, n_points)?;
        let [mask_array, source_array] = call.masks.regions(n_points);
        let arrays = [
            region("centers_world", centers.as_ptr(), centers.len()),
            region("out", out.cast_const(), n_points),
            measures.region(),
            mask_array,
            source_array,
        ];
        disjoint(&arrays)?;
        call.hooks.control(|ctl| {
            ctl.expect(n_points as u64 * u64::from(call.opts.n_samples));
            warn_intended_use(m, call.resolution_with(Some(v.resolution_mm())), ctl);
            let started = std::time::Instant::now();
            let mut flagged = 0usize;
            for i in 0..n_points {
                let c = [centers[3 * i], centers[3 * i + 1], centers[3 * i + 2]];
                let dst = PatchOut {
                    out: arg_out(out.add(i), "out")?,
                    measures: measures.get(i)?,
                    extra: &arrays,
                    scan_resolution: None,
                    mask: call.masks.point(i, voxels)?,
                };
                let r = check_center(c).and_then(|()| mc_at(m, v, c, &call, dst, ctl));
                log_failure(
                    ctl,
                    r.map_err(|e| e.context(format!("point {i} of {n_points}"))),
                )?;
                flagged += usize::from((*out.add(i)).summary.needs_review);
                done.set(i + 1);
            }
            ctl.log(LogLevel::Info, || {
                format!(
                    "batch: {n_points} points in {:.3} s, {flagged} need review",
                    started.elapsed().as_secs_f64()
                )
            });
            Ok(())
        })
    })
}

fn check_center(c: [f64; 3]) -> Result<()> {
    if c.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::invalid(format!("centre {c:?} is not finite")))
    }
}

/// The caller's `*n_done`, zeroed on entry and raised as points finish.
struct DoneCount(*mut usize);

impl DoneCount {
    unsafe fn new(p: *mut usize) -> Result<Self> {
        if !p.is_null() {
            if !(p as usize).is_multiple_of(align_of::<usize>()) {
                return Err(Error::invalid("n_done is not aligned"));
            }
            p.write(0);
        }
        Ok(DoneCount(p))
    }

    fn set(&self, n: usize) {
        if !self.0.is_null() {
            // SAFETY: checked non-NULL and aligned in `new`; the caller owns it for the call.
            unsafe { self.0.write(n) }
        }
    }
}

/// The caller's array of growable `lungseg_structure_measures` (NULL: not wanted), with the
/// stride its first element's `struct_size` gives.
struct Measures {
    base: *mut u8,
    stride: usize,
    n: usize,
}

impl Measures {
    unsafe fn from_c(p: *mut lungseg_structure_measures, n: usize) -> Result<Self> {
        let first = arg_versioned_out(p, "opts->structure_measures[0]")?;
        let stride = first.as_ref().map_or(0, |f| f.bytes().1);
        stride
            .checked_mul(n)
            .filter(|b| *b <= isize::MAX as usize)
            .ok_or_else(|| Error::invalid("opts->structure_measures array is too large"))?;
        Ok(Measures {
            base: p.cast(),
            stride,
            n,
        })
    }

    fn region(&self) -> Region {
        region(
            "opts->structure_measures",
            self.base.cast_const(),
            self.stride * self.n,
        )
    }

    /// Element `i`, whose `struct_size` must equal the first's.
    unsafe fn get(&self, i: usize) -> Result<Option<VersionedOut<lungseg_structure_measures>>> {
        if self.base.is_null() {
            return Ok(None);
        }
        let name = "opts->structure_measures[i]";
        let p = self
            .base
            .add(i * self.stride)
            .cast::<lungseg_structure_measures>();
        let e = arg_versioned_out(p, name)?.expect("non-NULL");
        if e.bytes().1 != self.stride {
            return Err(Error::invalid(format!(
                "opts->structure_measures[{i}].struct_size is {}, element 0's is {}: every \
                 element must set the same size",
                e.bytes().1,
                self.stride
            )));
        }
        Ok(Some(e))
    }
}

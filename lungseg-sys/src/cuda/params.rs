//! The one by-value parameter struct of each network kernel, `#[repr(C)]` and mirrored in its
//! `.cu` file. Device pointers are `u64` here, filled in at launch with the engine's device
//! addresses or the emulator's host addresses ([`super::launch::Params`]). Each struct's size
//! and field offsets reach the compilers as `-D` constants ([`LAYOUTS`]) and every `.cu` checks
//! its C struct against them with `static_assert`, so a layout that drifts does not compile,
//! for NVRTC or for the emulator.

use bytemuck::{Pod, Zeroable};

use super::reference::LsDrop;

/// `ls_conv_first` (conv_first.cu, `LsFirstArgs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct FirstArgs {
    pub hu: u64,
    pub w: u64,
    pub bias: u64,
    pub out: u64,
    pub lo: f32,
    pub hi: f32,
    pub cout: i32,
    pub d: i32,
    pub h: i32,
    pub wd: i32,
}

/// `ls_dropout_expand` (dropout.cu, `LsExpandArgs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct ExpandArgs {
    pub input: u64,
    pub out: u64,
    pub drop: LsDrop,
    pub s: i32,
    pub v: u32,
    pub c: i32,
    pub pad: i32,
}

/// `ls_conv3` (conv3.cu, `LsConv3Args`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct Conv3Args {
    pub src0: u64,
    pub src1: u64,
    pub w: u64,
    pub bias: u64,
    pub out: u64,
    pub ss0: u64,
    pub ss1: u64,
    pub drop: LsDrop,
    pub c0: i32,
    pub c1: i32,
    pub cout: i32,
    pub s: i32,
    pub d: i32,
    pub h: i32,
    pub wd: i32,
    pub relu: i32,
}

/// `ls_maxpool2` (pool.cu, `LsPoolArgs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct PoolArgs {
    pub input: u64,
    pub out: u64,
    pub s: i32,
    pub d: i32,
    pub h: i32,
    pub wd: i32,
    pub c: i32,
    pub pad: i32,
}

/// `ls_upconv2` (upconv.cu, `LsUpArgs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct UpArgs {
    pub input: u64,
    pub w: u64,
    pub bias: u64,
    pub out: u64,
    pub cin: i32,
    pub cout: i32,
    pub s: i32,
    pub d: i32,
    pub h: i32,
    pub wd: i32,
}

/// `ls_head_accumulate` (head.cu, `LsHeadAccArgs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct HeadAccArgs {
    pub x: u64,
    pub w: u64,
    pub mean: u64,
    pub m2: u64,
    pub sum_h: u64,
    pub any_fg: u64,
    pub bias: f32,
    pub c: i32,
    pub s: i32,
    pub v: u32,
    pub n0: i32,
    /// The model's mask threshold: a sample's voxel is foreground at `p ≥ mask_t`.
    pub mask_t: f32,
    /// The chunk's per-sample mask rows (0: not wanted), `mask_words` u32 words each.
    pub masks: u64,
    pub mask_words: u32,
    /// The chunk's test-time flip (bit 0 x, bit 1 y, bit 2 z; 0: none): voxel `v` of the
    /// state reads the samples' output at its mirror image on the `nx × ny × (v / (nx·ny))`
    /// grid.
    pub flip: u32,
    pub nx: u32,
    pub ny: u32,
}

/// `ls_head_finalize` (head.cu, `LsHeadFinArgs`); a zero map pointer skips that map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct HeadFinArgs {
    pub mean: u64,
    pub m2: u64,
    pub sum_h: u64,
    pub any_fg: u64,
    pub out_mean: u64,
    pub out_var: u64,
    pub out_ent: u64,
    pub out_mi: u64,
    pub partials: u64,
    pub n: i32,
    pub v: u32,
    /// The model's mask threshold (the final mask is `mean ≥ mask_t`).
    pub mask_t: f32,
    pub pad: i32,
}

/// `(name, value)` compile-time constants: `LSP_<P>_SIZE` and `LSP_<P>_<field>` (offset).
macro_rules! layout {
    ($t:ty, $p:literal, [$($f:ident),+ $(,)?]) => {
        &[
            (concat!("LSP_", $p, "_SIZE"), std::mem::size_of::<$t>() as u32),
            $((concat!("LSP_", $p, "_", stringify!($f)), std::mem::offset_of!($t, $f) as u32)),+
        ]
    };
}

pub const FIRST_LAYOUT: &[(&str, u32)] = layout!(
    FirstArgs,
    "FIRST",
    [hu, w, bias, out, lo, hi, cout, d, h, wd]
);
pub const EXPAND_LAYOUT: &[(&str, u32)] =
    layout!(ExpandArgs, "EXPAND", [input, out, drop, s, v, c]);
pub const CONV3_LAYOUT: &[(&str, u32)] = layout!(
    Conv3Args,
    "CONV3",
    [src0, src1, w, bias, out, ss0, ss1, drop, c0, c1, cout, s, d, h, wd, relu]
);
pub const POOL_LAYOUT: &[(&str, u32)] = layout!(PoolArgs, "POOL", [input, out, s, d, h, wd, c]);
pub const UP_LAYOUT: &[(&str, u32)] =
    layout!(UpArgs, "UP", [input, w, bias, out, cin, cout, s, d, h, wd]);
/// Both head kernels' structs (head.cu defines both).
pub const HEAD_LAYOUT: &[(&str, u32)] = &[
    (
        "LSP_HEADACC_SIZE",
        std::mem::size_of::<HeadAccArgs>() as u32,
    ),
    ("LSP_HEADACC_x", std::mem::offset_of!(HeadAccArgs, x) as u32),
    ("LSP_HEADACC_w", std::mem::offset_of!(HeadAccArgs, w) as u32),
    (
        "LSP_HEADACC_mean",
        std::mem::offset_of!(HeadAccArgs, mean) as u32,
    ),
    (
        "LSP_HEADACC_m2",
        std::mem::offset_of!(HeadAccArgs, m2) as u32,
    ),
    (
        "LSP_HEADACC_sum_h",
        std::mem::offset_of!(HeadAccArgs, sum_h) as u32,
    ),
    (
        "LSP_HEADACC_any_fg",
        std::mem::offset_of!(HeadAccArgs, any_fg) as u32,
    ),
    (
        "LSP_HEADACC_bias",
        std::mem::offset_of!(HeadAccArgs, bias) as u32,
    ),
    ("LSP_HEADACC_c", std::mem::offset_of!(HeadAccArgs, c) as u32),
    ("LSP_HEADACC_s", std::mem::offset_of!(HeadAccArgs, s) as u32),
    ("LSP_HEADACC_v", std::mem::offset_of!(HeadAccArgs, v) as u32),
    (
        "LSP_HEADACC_n0",
        std::mem::offset_of!(HeadAccArgs, n0) as u32,
    ),
    (
        "LSP_HEADACC_mask_t",
        std::mem::offset_of!(HeadAccArgs, mask_t) as u32,
    ),
    (
        "LSP_HEADACC_masks",
        std::mem::offset_of!(HeadAccArgs, masks) as u32,
    ),
    (
        "LSP_HEADACC_mask_words",
        std::mem::offset_of!(HeadAccArgs, mask_words) as u32,
    ),
    (
        "LSP_HEADACC_flip",
        std::mem::offset_of!(HeadAccArgs, flip) as u32,
    ),
    (
        "LSP_HEADACC_nx",
        std::mem::offset_of!(HeadAccArgs, nx) as u32,
    ),
    (
        "LSP_HEADACC_ny",
        std::mem::offset_of!(HeadAccArgs, ny) as u32,
    ),
    (
        "LSP_HEADFIN_SIZE",
        std::mem::size_of::<HeadFinArgs>() as u32,
    ),
    (
        "LSP_HEADFIN_mean",
        std::mem::offset_of!(HeadFinArgs, mean) as u32,
    ),
    (
        "LSP_HEADFIN_m2",
        std::mem::offset_of!(HeadFinArgs, m2) as u32,
    ),
    (
        "LSP_HEADFIN_sum_h",
        std::mem::offset_of!(HeadFinArgs, sum_h) as u32,
    ),
    (
        "LSP_HEADFIN_any_fg",
        std::mem::offset_of!(HeadFinArgs, any_fg) as u32,
    ),
    (
        "LSP_HEADFIN_out_mean",
        std::mem::offset_of!(HeadFinArgs, out_mean) as u32,
    ),
    (
        "LSP_HEADFIN_out_var",
        std::mem::offset_of!(HeadFinArgs, out_var) as u32,
    ),
    (
        "LSP_HEADFIN_out_ent",
        std::mem::offset_of!(HeadFinArgs, out_ent) as u32,
    ),
    (
        "LSP_HEADFIN_out_mi",
        std::mem::offset_of!(HeadFinArgs, out_mi) as u32,
    ),
    (
        "LSP_HEADFIN_partials",
        std::mem::offset_of!(HeadFinArgs, partials) as u32,
    ),
    ("LSP_HEADFIN_n", std::mem::offset_of!(HeadFinArgs, n) as u32),
    ("LSP_HEADFIN_v", std::mem::offset_of!(HeadFinArgs, v) as u32),
    (
        "LSP_HEADFIN_mask_t",
        std::mem::offset_of!(HeadFinArgs, mask_t) as u32,
    ),
];

/// The largest parameter struct (what the engine's parameter block must hold).
pub const MAX_PARAMS_BYTES: usize = 128;
const _: () = {
    use std::mem::size_of;
    let sizes = [
        size_of::<FirstArgs>(),
        size_of::<ExpandArgs>(),
        size_of::<Conv3Args>(),
        size_of::<PoolArgs>(),
        size_of::<UpArgs>(),
        size_of::<HeadAccArgs>(),
        size_of::<HeadFinArgs>(),
    ];
    let mut i = 0;
    while i < sizes.len() {
        assert!(sizes[i] <= MAX_PARAMS_BYTES && sizes[i].is_multiple_of(8));
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The layouts the C structs are checked against: every constant a distinct name, sizes
    /// first, offsets inside the struct and increasing in field order (a field listed out of
    /// order, or twice, would check nothing).
    #[test]
    fn layouts_name_every_offset_once_in_field_order() {
        for layout in [
            FIRST_LAYOUT,
            EXPAND_LAYOUT,
            CONV3_LAYOUT,
            POOL_LAYOUT,
            UP_LAYOUT,
            HEAD_LAYOUT,
        ] {
            let mut names: Vec<&str> = layout.iter().map(|(n, _)| *n).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), layout.len());
            let mut size = 0;
            let mut last = None;
            for &(name, v) in layout {
                if name.ends_with("_SIZE") {
                    (size, last) = (v, None);
                    continue;
                }
                assert!(v < size, "{name}");
                assert!(last.is_none_or(|l| v > l), "{name}");
                last = Some(v);
            }
        }
        // The fields the kernels read most: as conv3.cu lays them out.
        assert_eq!(std::mem::size_of::<Conv3Args>(), 120);
        assert_eq!(std::mem::offset_of!(Conv3Args, drop), 56);
        assert_eq!(std::mem::offset_of!(Conv3Args, relu), 116);
        // The mask fields follow head.cu's first 72 bytes, the flip fields them.
        assert_eq!(std::mem::size_of::<HeadAccArgs>(), 96);
        assert_eq!(std::mem::offset_of!(HeadAccArgs, masks), 72);
        assert_eq!(std::mem::offset_of!(HeadAccArgs, flip), 84);
    }
}

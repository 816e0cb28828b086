//! The chest, analytically: body ellipse with a fat layer and a muscular chest wall, ribs, a
//! sternum and a spine, a mediastinum of fat around the heart, aorta and pulmonary trunk, the
//! liver under the diaphragm dome, and two lungs bounded by the rib cage, an apex and the
//! dome. Coordinates are the anatomy frame: mm from the body axis in x (patient left +) and y
//! (posterior +), and mm above the lowest slice in z (LPS directions, like the world).
//! HU values and their sources: `docs/synth.md`.

use super::texture::ValueNoise;
use rand::RngExt;

/// Nominal intensities (HU) before texture and noise.
pub const AIR: f32 = -1000.0;
pub const FAT: f32 = -100.0;
pub const MUSCLE: f32 = 45.0;
pub const LIVER: f32 = 55.0;
/// Unenhanced blood (haematocrit-dependent, 35–50 HU).
pub const BLOOD: f32 = 40.0;
pub const LUNG: f32 = -870.0;
pub const MARROW: f32 = 250.0;

/// One scan's chest: every size is drawn per scan, relative to the field of view.
pub struct Anatomy {
    /// Body (skin) ellipse semi-axes.
    a: f64,
    b: f64,
    fat: f64,
    /// Rib-cage cavity semi-axes (inside fat and muscle).
    ca: f64,
    cb: f64,
    /// Lowest lung point (costophrenic recess), dome height, lung apex.
    z_base: f64,
    dome: f64,
    z_apex: f64,
    /// Each lung's centre |x| and y, for the dome/apex shape and the vessel hila.
    lung_x: f64,
    lung_y: f64,
    med_half: f64,
    heart: ([f64; 2], [f64; 2], f64),
    aorta: ([f64; 2], f64),
    spine: ([f64; 2], f64),
    rib_r: f64,
    rib_pitch: f64,
    rib_tilt: f64,
    rib_phase: f64,
    cortex: f32,
    /// Blood pool HU (unenhanced, or opacified by contrast).
    blood: f32,
    texture: ValueNoise,
    /// Fine texture of the parenchyma (secondary lobules, sub-resolution vessels).
    fine: ValueNoise,
}

impl Anatomy {
    /// `fov_mm`: in-plane field of view; `height_mm`: z extent of the scan.
    pub fn random(rng: &mut impl rand::Rng, fov_mm: f64, height_mm: f64, contrast: bool) -> Self {
        let a = fov_mm * rng.random_range(0.40..0.46);
        let b = a * rng.random_range(0.66..0.76);
        let s = fov_mm / 340.0; // 1 for an adult-sized field of view
        let fat = s * rng.random_range(6.0..16.0);
        let muscle = s * rng.random_range(9.0..15.0);
        let (ca, cb) = (a - fat - muscle, b - fat - muscle);
        let z_base = height_mm * rng.random_range(0.02..0.12);
        let z_apex = height_mm * rng.random_range(0.92..1.05);
        let dome = (z_apex - z_base) * rng.random_range(0.18..0.3);
        Anatomy {
            a,
            b,
            fat,
            ca,
            cb,
            z_base,
            dome,
            z_apex,
            lung_x: ca * 0.5,
            lung_y: cb * 0.05,
            med_half: ca * rng.random_range(0.10..0.14),
            heart: (
                [ca * 0.12, -cb * 0.28],
                [ca * 0.34, cb * 0.42],
                z_base + (z_apex - z_base) * 0.6,
            ),
            aorta: ([ca * 0.16, cb * 0.5], s * rng.random_range(10.0..13.0)),
            spine: ([0.0, cb * 0.78], ca * 0.15),
            rib_r: s * rng.random_range(4.0..6.0),
            rib_pitch: rng.random_range(22.0..28.0),
            rib_tilt: rng.random_range(20.0..40.0),
            rib_phase: rng.random_range(0.0..30.0),
            cortex: rng.random_range(700.0..1000.0),
            blood: if contrast {
                rng.random_range(150.0..350.0)
            } else {
                rng.random_range(35.0..50.0)
            },
            texture: ValueNoise::new(rng, [2.0 * a + 10.0, 2.0 * b + 10.0, height_mm + 10.0], 5.0),
            fine: ValueNoise::new(rng, [2.0 * a + 10.0, 2.0 * b + 10.0, height_mm + 10.0], 2.0),
        }
    }

    /// Correlated texture in [-~2, ~2] at an anatomy point.
    fn tex(&self, p: [f64; 3]) -> f32 {
        self.texture
            .at([p[0] + self.a + 5.0, p[1] + self.b + 5.0, p[2] + 5.0])
    }

    fn fine_tex(&self, p: [f64; 3]) -> f32 {
        self.fine
            .at([p[0] + self.a + 5.0, p[1] + self.b + 5.0, p[2] + 5.0])
    }

    /// Blood pool HU of this scan.
    pub fn blood(&self) -> f32 {
        self.blood
    }

    /// Squared normalised distance from a lung's own centre (0 at the centre, 1 at its rim).
    fn lung_rho2(&self, x: f64, y: f64) -> f64 {
        ((x.abs() - self.lung_x) / self.lung_x).powi(2) + ((y - self.lung_y) / self.cb).powi(2)
    }

    /// Inside a lung: within the rib cage, above the diaphragm dome, below the apex, and
    /// outside the mediastinum, heart, aorta and spine.
    pub fn is_lung(&self, p: [f64; 3]) -> bool {
        let [x, y, z] = p;
        if ((x / (self.ca - 1.0)).powi(2) + (y / (self.cb - 1.0)).powi(2)) > 1.0 {
            return false;
        }
        let rho2 = self.lung_rho2(x, y);
        if self.under_dome(p) || z > self.z_apex - (self.z_apex - self.z_base) * 0.35 * rho2 {
            return false;
        }
        // Mediastinum: wider in front (y < 0) where the heart and great vessels sit.
        let med = self.med_half * (1.0 + 0.8 * (-y / self.cb).max(0.0));
        if x.abs() < med {
            return false;
        }
        let (hc, hr, htop) = self.heart;
        if z < htop && ((x - hc[0]) / hr[0]).powi(2) + ((y - hc[1]) / hr[1]).powi(2) < 1.0 {
            return false;
        }
        let in_circle = |(c, r): ([f64; 2], f64), margin: f64| {
            (x - c[0]).powi(2) + (y - c[1]).powi(2) < (r + margin).powi(2)
        };
        !(in_circle(self.aorta, 2.0) || in_circle(self.spine, 4.0))
    }

    /// Base intensity (HU, with texture, no noise) and whether the point is lung.
    pub fn tissue(&self, p: [f64; 3]) -> (f32, bool) {
        let [x, y, z] = p;
        if (x / self.a).powi(2) + (y / self.b).powi(2) > 1.0 {
            return (AIR, false);
        }
        if (x / (self.a - self.fat)).powi(2) + (y / (self.b - self.fat)).powi(2) > 1.0 {
            return (FAT + 8.0 * self.tex(p), false);
        }
        let cav = ((x / self.ca).powi(2) + (y / self.cb).powi(2)).sqrt();
        if cav > 1.0 {
            let wall = self
                .rib(x, y, z, cav)
                .or_else(|| self.sternum(x, y, z, cav));
            return (wall.unwrap_or(MUSCLE + 6.0 * self.tex(p)), false);
        }
        if let Some(bone) = self.vertebra(x, y, z) {
            return (bone, false);
        }
        if self.is_lung(p) {
            // Dependent (posterior) lung is denser; the fine texture stands in for secondary
            // lobules and vessels below the resolution.
            let gradient = 50.0 * ((y / self.cb + 1.0) * 0.5).clamp(0.0, 1.0) as f32;
            return (
                LUNG + gradient + 10.0 * self.tex(p) + 12.0 * self.fine_tex(p),
                true,
            );
        }
        (self.soft_tissue(p), false)
    }

    /// Inside the cavity but not lung: abdomen under the dome, else mediastinum (fat around
    /// the heart, aorta and pulmonary trunk).
    fn soft_tissue(&self, p: [f64; 3]) -> f32 {
        let [x, y, z] = p;
        if self.under_dome(p) {
            return LIVER + 8.0 * self.tex(p);
        }
        let (hc, hr, htop) = self.heart;
        let h = ((x - hc[0]) / hr[0]).powi(2) + ((y - hc[1]) / hr[1]).powi(2);
        if z < htop && h < 1.0 {
            // Myocardium (40 HU) around the blood pool.
            let pool = if h > 0.6 { MUSCLE } else { self.blood };
            return pool + 6.0 * self.tex(p);
        }
        let in_circle = |(c, r): ([f64; 2], f64)| (x - c[0]).powi(2) + (y - c[1]).powi(2) < r * r;
        if in_circle(self.aorta) || (in_circle(self.trunk()) && z < htop + 15.0) {
            return self.blood + 5.0 * self.tex(p);
        }
        FAT + 15.0 + 12.0 * self.tex(p)
    }

    /// Pulmonary trunk: in front of the aorta's root, left of the midline.
    fn trunk(&self) -> ([f64; 2], f64) {
        let (c, r) = self.aorta;
        ([-c[0] * 0.3 + r, -self.cb * 0.2], r * 1.1)
    }

    /// Sternum: a flat bone at the front midline.
    fn sternum(&self, x: f64, y: f64, _z: f64, cav: f64) -> Option<f32> {
        let mean_r = 0.5 * (self.ca + self.cb);
        let radial = (cav - 1.0) * mean_r;
        (y < 0.0 && x.abs() < 0.12 * self.ca && (2.0..12.0).contains(&radial)).then_some(
            if (3.5..=10.5).contains(&radial) {
                MARROW
            } else {
                self.cortex * 0.7
            },
        )
    }

    /// Ribs: tilted hoops just outside the cavity, lower in front, absent at the sternum.
    fn rib(&self, x: f64, y: f64, z: f64, cav: f64) -> Option<f32> {
        let mean_r = 0.5 * (self.ca + self.cb);
        let radial = (cav - 1.0) * mean_r - self.rib_r * 1.3;
        if radial.abs() > self.rib_r || (y < 0.0 && x.abs() < 0.2 * self.ca) {
            return None;
        }
        let posterior = (y / self.cb) / cav; // +1 at the back, -1 at the front
        let zz = z + self.rib_tilt * (1.0 - posterior) * 0.5 - self.rib_phase;
        let dz = zz - (zz / self.rib_pitch).round() * self.rib_pitch;
        let d = (radial * radial + dz * dz * 0.5).sqrt() / self.rib_r;
        (d < 1.0).then_some(if d > 0.65 { self.cortex } else { MARROW })
    }

    /// Vertebral body (cortex + marrow) with discs every ~25 mm.
    fn vertebra(&self, x: f64, y: f64, z: f64) -> Option<f32> {
        let (c, r) = self.spine;
        let d = ((x - c[0]).powi(2) + (y - c[1]).powi(2)).sqrt() / r;
        if d > 1.0 {
            return None;
        }
        if (z / 25.0).fract() < 0.18 {
            return Some(80.0); // disc
        }
        Some(if d > 0.82 { self.cortex } else { MARROW })
    }

    /// Hilum (vessel root) of the left (+1) or right (-1) lung.
    pub fn hilum(&self, side: f64) -> [f64; 3] {
        [
            side * (self.med_half * 1.3),
            self.lung_y,
            self.z_base + 0.55 * (self.z_apex - self.z_base),
        ]
    }

    /// Each lung's centre |x| and y, the cavity semi-axes, and the z of base and apex.
    pub fn lung_frame(&self) -> LungFrame {
        LungFrame {
            lung_x: self.lung_x,
            lung_y: self.lung_y,
            ca: self.ca,
            cb: self.cb,
            z_base: self.z_base,
            z_apex: self.z_apex,
        }
    }

    /// Below the diaphragm dome (the abdomen: liver), whatever else is there in x and y.
    pub fn under_dome(&self, p: [f64; 3]) -> bool {
        let rho2 = self.lung_rho2(p[0], p[1]);
        p[2] < self.z_base + self.dome * (1.0 - rho2).max(0.0)
    }

    /// Distance (mm, in 0.5 mm steps) from the lung point `p` along the unit vector `dir` to
    /// the first point that is not lung: the pleura met that way (rib cage, mediastinum,
    /// heart or diaphragm). `None` if the march finds no end within 400 mm.
    pub fn lung_depth_along(&self, p: [f64; 3], dir: [f64; 3]) -> Option<f64> {
        let mut t = 0.0;
        while self.is_lung(std::array::from_fn(|i| p[i] + (t + 0.5) * dir[i])) {
            t += 0.5;
            if t > 400.0 {
                return None;
            }
        }
        Some(t)
    }

    /// Inside the skin ellipse.
    pub fn in_body(&self, p: [f64; 3]) -> bool {
        (p[0] / self.a).powi(2) + (p[1] / self.b).powi(2) <= 1.0
    }

    /// Box that holds both lungs, for rejection sampling.
    pub fn lung_box(&self) -> ([f64; 3], [f64; 3]) {
        (
            [-self.ca, -self.cb, self.z_base],
            [self.ca, self.cb, self.z_apex],
        )
    }
}

/// The measures other parts place things by (airways, fissures, distractors).
#[derive(Debug, Clone, Copy)]
pub struct LungFrame {
    pub lung_x: f64,
    pub lung_y: f64,
    pub ca: f64,
    pub cb: f64,
    pub z_base: f64,
    pub z_apex: f64,
}

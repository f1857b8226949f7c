//! Light profiles in sky units (arcsec, flux per arcsec²), GalSim style:
//! small immutable values, transformed by methods that return new values, and
//! never touching pixels themselves (see [`crate::draw`]).

use crate::fastmath;
use crate::special::{gamma, gamma_p, sersic_b};

/// A surface-brightness distribution on the sky.
pub trait Profile: Send + Sync {
    /// Surface brightness (flux per arcsec²) at sky position `(x, y)` in
    /// arcsec.
    fn sb(&self, x: f64, y: f64) -> f64;

    /// Surface brightness at the points `(x0 + i·dx, y)` for `i` in
    /// `0..out.len()`. Profiles whose formula vectorises override this: the
    /// drawing loop calls it once per row.
    fn sb_row(&self, x0: f64, dx: f64, y: f64, out: &mut [f32]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.sb(x0 + i as f64 * dx, y) as f32;
        }
    }

    /// Square region `(x_min, x_max, y_min, y_max)` in arcsec outside which
    /// the profile is negligible (below `floor` flux per arcsec²).
    fn bounds(&self, floor: f64) -> [f64; 4];

    /// How finely a pixel of side `scale` arcsec centred at `(x, y)` must be
    /// sub-sampled for its mean to be accurate (1 = centre only), at
    /// `accuracy` in (0, 1] (see [`crate::draw::DrawParams::accuracy`]).
    fn subsampling(&self, _x: f64, _y: f64, _scale: f64, _accuracy: f64) -> usize {
        1
    }
}

/// An elliptical frame: centre, position angle and axis ratio. Maps a sky
/// position to coordinates along the major (`u`) and minor (`v`) axes, with
/// `v` stretched by 1/q so that ellipses of axis ratio `q` become circles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    /// Centre x (arcsec).
    pub x0: f64,
    /// Centre y (arcsec).
    pub y0: f64,
    /// Position angle of the major axis, radians counter-clockwise from +x.
    pub pa: f64,
    /// Axis ratio b/a in (0, 1].
    pub q: f64,
    /// +1, or −1 for a mirror-image frame (polar angles run clockwise).
    pub handedness: f64,
    cos: f64,
    sin: f64,
}

impl Frame {
    /// A frame centred at `(x0, y0)` with position angle `pa` and axis ratio `q`.
    pub fn new(x0: f64, y0: f64, pa: f64, q: f64) -> Self {
        let (sin, cos) = pa.sin_cos();
        Self { x0, y0, pa, q, handedness: 1.0, cos, sin }
    }

    /// The mirror image of this frame: shapes defined in it wind the other way.
    pub fn mirrored(self) -> Self {
        Self { handedness: -self.handedness, ..self }
    }

    /// `(u, v)`: position along the major axis and stretched minor axis.
    #[inline]
    pub fn to_local(&self, x: f64, y: f64) -> (f64, f64) {
        let dx = x - self.x0;
        let dy = y - self.y0;
        (dx * self.cos + dy * self.sin, self.handedness * (-dx * self.sin + dy * self.cos) / self.q)
    }

    /// Polar coordinates `(ρ, φ)` in the stretched frame. The angle is
    /// computed in single precision (1e-7 rad), plenty for pixels, at a
    /// fraction of the cost.
    #[inline]
    pub fn to_polar(&self, x: f64, y: f64) -> (f64, f64) {
        let (u, v) = self.to_local(x, y);
        ((u * u + v * v).sqrt(), (v as f32).atan2(u as f32) as f64)
    }

    /// Radius ρ in the stretched frame (no angle: cheaper).
    #[inline]
    pub fn radius(&self, x: f64, y: f64) -> f64 {
        let (u, v) = self.to_local(x, y);
        (u * u + v * v).sqrt()
    }
}

/// Sérsic (1963) profile I(r) = I_e exp(−b_n[(r/r_e)^{1/n} − 1]) on
/// elliptical isophotes; `r_e` is the semi-major axis of the half-light
/// ellipse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sersic {
    n: f64,
    r_e: f64,
    flux: f64,
    frame: Frame,
    b: f64,
    /// Central surface brightness I_e e^{b_n}.
    i0: f64,
}

impl Sersic {
    /// A round profile of index `n` (0.3 ≤ n ≤ 8), half-light radius `r_e`
    /// arcsec and total flux `flux`, centred at the origin.
    pub fn new(n: f64, r_e: f64, flux: f64) -> Self {
        Self::build(n, sersic_b(n), r_e, flux, Frame::new(0.0, 0.0, 0.0, 1.0))
    }

    fn build(n: f64, b: f64, r_e: f64, flux: f64, frame: Frame) -> Self {
        // F = 2π q n I_e r_e² e^{b} b^{−2n} Γ(2n)  ⇒  I0 = I_e e^{b}.
        let norm = 2.0 * std::f64::consts::PI * frame.q * n * r_e * r_e * b.powf(-2.0 * n) * gamma(2.0 * n);
        Self { n, r_e, flux, frame, b, i0: flux / norm }
    }

    /// The same profile with axis ratio `q` and position angle `pa` (radians).
    pub fn shear(&self, q: f64, pa: f64) -> Self {
        Self::build(self.n, self.b, self.r_e, self.flux, Frame::new(self.frame.x0, self.frame.y0, pa, q))
    }

    /// The same profile centred at `(x, y)` arcsec.
    pub fn shift(&self, x: f64, y: f64) -> Self {
        Self::build(self.n, self.b, self.r_e, self.flux, Frame::new(x, y, self.frame.pa, self.frame.q))
    }

    /// Sérsic index.
    pub fn n(&self) -> f64 {
        self.n
    }

    /// Semi-major half-light radius (arcsec).
    pub fn r_e(&self) -> f64 {
        self.r_e
    }

    /// The same profile with half-light radius `r_e` (arcsec).
    pub fn with_r_e(&self, r_e: f64) -> Self {
        Self::build(self.n, self.b, r_e, self.flux, self.frame)
    }

    /// Total flux.
    pub fn flux(&self) -> f64 {
        self.flux
    }

    /// Its elliptical frame.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    /// Fraction of the flux inside the ellipse of semi-major axis `a`.
    pub fn enclosed_fraction(&self, a: f64) -> f64 {
        gamma_p(2.0 * self.n, self.b * (a / self.r_e).powf(1.0 / self.n))
    }

    /// Mean surface brightness (flux per arcsec²) inside the half-light
    /// ellipse: (F/2) / (π q r_e²).
    pub fn mean_sb_within_r_e(&self) -> f64 {
        0.5 * self.flux / (std::f64::consts::PI * self.frame.q * self.r_e * self.r_e)
    }
}

impl Profile for Sersic {
    #[inline]
    fn sb(&self, x: f64, y: f64) -> f64 {
        let (u, v) = self.frame.to_local(x, y);
        let r2 = (u * u + v * v) / (self.r_e * self.r_e);
        if r2 == 0.0 {
            return self.i0;
        }
        // Single-precision transcendentals: the result is stored as f32.
        let t = fastmath::exp(fastmath::ln(r2 as f32) * (0.5 / self.n) as f32);
        self.i0 * fastmath::exp(-(self.b as f32) * t) as f64
    }

    fn sb_row(&self, x0: f64, dx: f64, y: f64, out: &mut [f32]) {
        // The same formula as `sb`, in f32 and without branches, so the loop
        // runs on SIMD lanes.
        let f = &self.frame;
        let (c, s) = (f.cos as f32, f.sin as f32);
        let ddy = (y - f.y0) as f32;
        let ddx0 = (x0 - f.x0) as f32;
        let step = dx as f32;
        let inv_q = (1.0 / f.q) as f32;
        let inv_re2 = (1.0 / (self.r_e * self.r_e)) as f32;
        let (k, b, i0) = ((0.5 / self.n) as f32, self.b as f32, self.i0 as f32);
        for (i, o) in out.iter_mut().enumerate() {
            let ddx = ddx0 + i as f32 * step;
            let u = ddx * c + ddy * s;
            let v = (-ddx * s + ddy * c) * inv_q;
            let r2 = ((u * u + v * v) * inv_re2).max(f32::MIN_POSITIVE);
            *o = i0 * fastmath::exp(-b * fastmath::exp(fastmath::ln(r2) * k));
        }
    }

    fn bounds(&self, floor: f64) -> [f64; 4] {
        let r = if self.i0 <= floor {
            0.0
        } else {
            // I(R) = floor  ⇔  R = r_e (ln(I0/floor)/b)^n
            self.r_e * ((self.i0 / floor).ln() / self.b).powf(self.n)
        };
        let r = r.max(self.r_e * 0.5);
        [self.frame.x0 - r, self.frame.x0 + r, self.frame.y0 - r, self.frame.y0 + r]
    }

    fn subsampling(&self, x: f64, y: f64, scale: f64, accuracy: f64) -> usize {
        // Midpoint-rule error on a cusp grows like (pixel/r)²: sample finely
        // near the centre, where a compact profile keeps most of its flux.
        let (dx, dy) = (x - self.frame.x0, y - self.frame.y0);
        let k = accuracy * if self.r_e < 3.0 * scale { 12.0 } else { 6.0 };
        // Beyond k pixels from the centre one sample per pixel is enough.
        let r2 = dx * dx + dy * dy;
        if r2 >= k * k * scale * scale {
            return 1;
        }
        ((k * scale / r2.sqrt().max(0.5 * scale)).ceil() as usize).clamp(1, 24)
    }
}

/// Moffat (1969) profile I(r) ∝ (1 + (r/α)²)^{−β}, normalised to `flux`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moffat {
    beta: f64,
    alpha: f64,
    flux: f64,
    x0: f64,
    y0: f64,
}

impl Moffat {
    /// A Moffat of index `beta` (> 1) and full width at half maximum `fwhm`
    /// arcsec, centred at the origin.
    pub fn new(beta: f64, fwhm: f64, flux: f64) -> Self {
        let alpha = fwhm / (2.0 * (2f64.powf(1.0 / beta) - 1.0).sqrt());
        Self { beta, alpha, flux, x0: 0.0, y0: 0.0 }
    }

    /// Full width at half maximum (arcsec).
    pub fn fwhm(&self) -> f64 {
        2.0 * self.alpha * (2f64.powf(1.0 / self.beta) - 1.0).sqrt()
    }

    /// The same profile centred at `(x, y)`.
    pub fn shift(&self, x: f64, y: f64) -> Self {
        Self { x0: x, y0: y, ..*self }
    }

    #[inline]
    fn sb_at_r2(&self, r2: f64) -> f64 {
        let a2 = self.alpha * self.alpha;
        // (1 + r²/α²)^−β through single-precision exp and ln.
        let pow = fastmath::exp(-(self.beta as f32) * fastmath::ln((1.0 + r2 / a2) as f32)) as f64;
        self.flux * (self.beta - 1.0) / (std::f64::consts::PI * a2) * pow
    }
}

impl Profile for Moffat {
    fn sb(&self, x: f64, y: f64) -> f64 {
        let dx = x - self.x0;
        let dy = y - self.y0;
        self.sb_at_r2(dx * dx + dy * dy)
    }

    fn bounds(&self, floor: f64) -> [f64; 4] {
        let peak = self.sb_at_r2(0.0);
        let r = if peak <= floor {
            self.alpha
        } else {
            self.alpha * ((peak / floor).powf(1.0 / self.beta) - 1.0).max(0.0).sqrt()
        };
        [self.x0 - r, self.x0 + r, self.y0 - r, self.y0 + r]
    }
}

/// A ground-based point-spread function: a Moffat core plus a broad Moffat
/// wing carrying a fraction of the light, as measured for HSC coadds (the
/// extended wings matter for faint features near bright objects).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Psf {
    core: Moffat,
    wing: Moffat,
    fwhm: f64,
}

impl Psf {
    /// Core Moffat index (HSC coadd PSFs are well fitted with β ≈ 3–4).
    pub const CORE_BETA: f64 = 3.5;
    /// Wing Moffat index: a slow r^{-2β} fall-off.
    pub const WING_BETA: f64 = 2.0;
    /// Wing FWHM in units of the total FWHM.
    pub const WING_SCALE: f64 = 3.0;

    /// A unit-flux PSF whose total profile has full width at half maximum
    /// `fwhm` arcsec, with fraction `wing_fraction` of the flux in the wing.
    pub fn new(fwhm: f64, wing_fraction: f64) -> Self {
        let wing = Moffat::new(Self::WING_BETA, Self::WING_SCALE * fwhm, wing_fraction);
        // The wing adds light at the half-maximum radius, so the core must be
        // slightly narrower than `fwhm`: solve for the core width by bisection.
        let half = fwhm / 2.0;
        let profile = |core_fwhm: f64| {
            let core = Moffat::new(Self::CORE_BETA, core_fwhm, 1.0 - wing_fraction);
            let peak = core.sb_at_r2(0.0) + wing.sb_at_r2(0.0);
            core.sb_at_r2(half * half) + wing.sb_at_r2(half * half) - 0.5 * peak
        };
        let (mut lo, mut hi) = (0.3 * fwhm, 1.5 * fwhm);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            // Wider core ⇒ more light at r = fwhm/2 relative to the peak.
            if profile(mid) > 0.0 {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let core = Moffat::new(Self::CORE_BETA, 0.5 * (lo + hi), 1.0 - wing_fraction);
        Self { core, wing, fwhm }
    }

    /// Full width at half maximum of the whole profile (arcsec).
    pub fn fwhm(&self) -> f64 {
        self.fwhm
    }

    /// Surface brightness of the unit-flux PSF at offset `(dx, dy)` arcsec.
    #[inline]
    pub fn value(&self, dx: f64, dy: f64) -> f64 {
        let r2 = dx * dx + dy * dy;
        self.core.sb_at_r2(r2) + self.wing.sb_at_r2(r2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psf_has_the_requested_fwhm() {
        for fwhm in [0.6, 0.8] {
            let p = Psf::new(fwhm, 0.1);
            let half = p.value(fwhm / 2.0, 0.0) / p.value(0.0, 0.0);
            assert!((half - 0.5).abs() < 1e-6, "{half}");
        }
    }

    #[test]
    fn moffat_fwhm_round_trips() {
        let m = Moffat::new(3.5, 0.7, 1.0);
        assert!((m.fwhm() - 0.7).abs() < 1e-12);
        assert!((m.sb(0.35, 0.0) / m.sb(0.0, 0.0) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn sersic_row_evaluation_matches_point_evaluation() {
        let s = Sersic::new(2.7, 1.3, 5.0).shear(0.4, 2.0).shift(0.3, -0.2);
        let mut row = vec![0f32; 37];
        s.sb_row(-3.0, 0.17, 0.45, &mut row);
        for (i, &v) in row.iter().enumerate() {
            let want = s.sb(-3.0 + i as f64 * 0.17, 0.45);
            assert!((v as f64 / want - 1.0).abs() < 2e-6, "pixel {i}: {v} vs {want}");
        }
    }

    #[test]
    fn sersic_half_light_ellipse_holds_half_the_flux() {
        let s = Sersic::new(4.0, 1.5, 10.0).shear(0.5, 0.3);
        assert!((s.enclosed_fraction(1.5) - 0.5).abs() < 1e-6);
    }
}

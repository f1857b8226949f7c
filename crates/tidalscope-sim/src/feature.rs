//! Tidal features: stellar streams, shells, tidal tails, plumes and double
//! nuclei, each a light profile with its own geometry.
//!
//! Every feature is described in the polar coordinates of a [`Frame`] centred
//! on its host, so evaluating one pixel costs a few transcendental functions
//! whatever the feature's length. Each feature type documents what its
//! surface brightness means, because "the SB of a stream" must be measurable
//! on an image to be testable:
//!
//! | type | surface brightness `sb` |
//! |---|---|
//! | stream, tail | ridge SB on the untapered part of the (brighter) arm |
//! | shell | mean SB between the sharp outer edge and one inner scale length inside it, on the untapered part of the innermost shell |
//! | plume | peak SB |
//! | double nucleus | mean SB inside the nucleus' half-light ellipse |

use crate::profile::{Frame, Profile, Sersic};
use std::f64::consts::{PI, TAU};

/// The kind of a tidal feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// A thin curved ribbon of stars following the orbit of a disrupted satellite.
    Stream,
    /// Concentric or interleaved arcs with a sharp outer edge (radial minor mergers).
    Shell,
    /// A pair of antisymmetric curved arms (major, often gas-rich, mergers).
    Tail,
    /// A diffuse fan or asymmetric halo on one side.
    Plume,
    /// A second bright nucleus inside the host (ongoing merger).
    DoubleNucleus,
}

impl FeatureKind {
    /// Every kind, in catalogue order.
    pub const ALL: [FeatureKind; 5] =
        [FeatureKind::Stream, FeatureKind::Shell, FeatureKind::Tail, FeatureKind::Plume, FeatureKind::DoubleNucleus];

    /// Name used in catalogues.
    pub fn name(self) -> &'static str {
        match self {
            FeatureKind::Stream => "stream",
            FeatureKind::Shell => "shell",
            FeatureKind::Tail => "tail",
            FeatureKind::Plume => "plume",
            FeatureKind::DoubleNucleus => "double_nucleus",
        }
    }
}

/// The centre line of a ridge in polar coordinates, r(φ).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Curve {
    /// A precessing orbit with the host at a focus:
    /// r = p / (1 + e cos(κ(φ − ω))). κ < 1 makes the rosette of a real
    /// galactic potential.
    Orbit {
        /// Semi-latus rectum (arcsec).
        p: f64,
        /// Eccentricity in [0, 1).
        e: f64,
        /// Angular frequency ratio (precession), ≈ 0.7–1.
        kappa: f64,
        /// Pericentre direction (radians).
        omega: f64,
    },
    /// An arm winding outwards: r = r0 + slope (φ − start) (a tidal tail).
    Spiral {
        /// Radius at the start of the arm (arcsec).
        r0: f64,
        /// dr/dφ (arcsec per radian).
        slope: f64,
    },
}

impl Curve {
    /// `(r, dr/dφ)` at angle `phi`, with `start` the ridge's first angle.
    #[inline]
    fn eval(&self, phi: f64, start: f64) -> (f64, f64) {
        match *self {
            Curve::Orbit { p, e, kappa, omega } => {
                let (s, c) = ((kappa * (phi - omega)) as f32).sin_cos();
                let (s, c) = (s as f64, c as f64);
                let den = 1.0 + e * c;
                (p / den, p * e * kappa * s / (den * den))
            }
            Curve::Spiral { r0, slope } => (r0 + slope * (phi - start), slope),
        }
    }
}

/// Raised-cosine taper: 0 at both ends of `s ∈ [0, 1]`, 1 between
/// `taper_in` and `1 − taper_out`.
#[inline]
fn taper(s: f64, taper_in: f64, taper_out: f64) -> f64 {
    if s < taper_in {
        0.5 * (1.0 - (PI * s / taper_in).cos())
    } else if s > 1.0 - taper_out {
        0.5 * (1.0 - (PI * (1.0 - s) / taper_out).cos())
    } else {
        1.0
    }
}

/// A luminous ribbon along a [`Curve`], with a Gaussian cross-section.
///
/// Its surface brightness on the ridge line equals `amplitude` wherever the
/// taper is 1; the curve may wind more than once around the host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ridge {
    /// Host-centred frame (its axis ratio projects an inclined orbit).
    pub frame: Frame,
    /// Centre line.
    pub curve: Curve,
    /// First polar angle (radians).
    pub start: f64,
    /// Angular length (radians, may exceed 2π).
    pub length: f64,
    /// Gaussian σ of the cross-section at the start (arcsec).
    pub width: f64,
    /// Relative growth of the width from start to end.
    pub width_growth: f64,
    /// Fraction of the length over which the brightness rises at the start.
    pub taper_in: f64,
    /// Fraction of the length over which the brightness fades at the end.
    pub taper_out: f64,
    /// Ridge surface brightness (flux per arcsec²).
    pub amplitude: f64,
}

impl Ridge {
    fn max_radius(&self) -> f64 {
        (0..=64).map(|i| self.curve.eval(self.start + self.length * i as f64 / 64.0, self.start).0).fold(0.0, f64::max)
    }
}

/// exp in single precision: pixel values are stored as f32.
#[inline]
fn exp32(x: f64) -> f64 {
    crate::fastmath::exp(x as f32) as f64
}

impl Ridge {
    /// Surface brightness at polar position `(rho, phi)` of its frame.
    #[inline]
    pub fn sb_polar(&self, rho: f64, phi: f64) -> f64 {
        let end = self.start + self.length;
        let k_min = ((self.start - phi) / TAU).ceil() as i64;
        let k_max = ((end - phi) / TAU).floor() as i64;
        let mut sum = 0.0;
        for k in k_min..=k_max {
            let ph = phi + k as f64 * TAU;
            let s = (ph - self.start) / self.length;
            let w = self.width * (1.0 + self.width_growth * s);
            let (r, drdphi) = self.curve.eval(ph, self.start);
            // Perpendicular distance to the curve, from the radial offset and
            // the curve's pitch angle.
            let d = (rho - r) * r / (r * r + drdphi * drdphi).sqrt();
            let z = d / w;
            if z.abs() < 6.0 {
                sum += taper(s, self.taper_in, self.taper_out) * exp32(-0.5 * z * z);
            }
        }
        self.amplitude * sum
    }
}

impl Profile for Ridge {
    #[inline]
    fn sb(&self, x: f64, y: f64) -> f64 {
        let (rho, phi) = self.frame.to_polar(x, y);
        self.sb_polar(rho, phi)
    }

    fn bounds(&self, _floor: f64) -> [f64; 4] {
        let r = self.max_radius() + 6.0 * self.width * (1.0 + self.width_growth.max(0.0));
        [self.frame.x0 - r, self.frame.x0 + r, self.frame.y0 - r, self.frame.y0 + r]
    }

    fn subsampling(&self, _x: f64, _y: f64, scale: f64, _accuracy: f64) -> usize {
        if self.width < 1.5 * scale {
            3
        } else {
            1
        }
    }
}

/// One shell: an arc of stars piled up at the apocentre of a radial orbit,
/// brightest at its sharp outer edge and fading inwards exponentially.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShellArc {
    /// Host-centred frame.
    pub frame: Frame,
    /// Radius of the outer edge (arcsec).
    pub radius: f64,
    /// Direction of the arc's centre (radians, in the frame).
    pub direction: f64,
    /// Half opening angle (radians).
    pub half_opening: f64,
    /// Fraction of the half opening over which the arc fades at its tips.
    pub taper: f64,
    /// Exponential scale length of the inward fall-off (arcsec).
    pub inner_scale: f64,
    /// Gaussian σ of the outer edge (arcsec): much less than a pixel.
    pub edge: f64,
    /// Surface brightness at the edge (flux per arcsec²).
    pub amplitude: f64,
}

impl ShellArc {
    /// Mean SB between the edge and one inner scale length inside it, on the
    /// untapered part of the arc: amplitude × (1 − 1/e).
    pub fn mean_sb(&self) -> f64 {
        self.amplitude * (1.0 - (-1f64).exp())
    }

    /// The amplitude that gives a mean SB of `mean_sb` (see [`ShellArc::mean_sb`]).
    pub fn amplitude_for_mean_sb(mean_sb: f64) -> f64 {
        mean_sb / (1.0 - (-1f64).exp())
    }
}

impl ShellArc {
    /// Surface brightness at polar position `(rho, phi)` of its frame.
    #[inline]
    pub fn sb_polar(&self, rho: f64, phi: f64) -> f64 {
        let dphi = (phi - self.direction + PI).rem_euclid(TAU) - PI;
        let s = dphi.abs() / self.half_opening;
        if s >= 1.0 {
            return 0.0;
        }
        let angular =
            if s > 1.0 - self.taper { 0.5 * (1.0 + (PI * (s - 1.0 + self.taper) / self.taper).cos()) } else { 1.0 };
        let radial = if rho <= self.radius {
            let t = (self.radius - rho) / self.inner_scale;
            if t > 12.0 {
                return 0.0;
            }
            exp32(-t)
        } else {
            let z = (rho - self.radius) / self.edge;
            if z > 6.0 {
                return 0.0;
            }
            exp32(-0.5 * z * z)
        };
        self.amplitude * angular * radial
    }
}

impl Profile for ShellArc {
    #[inline]
    fn sb(&self, x: f64, y: f64) -> f64 {
        let (rho, phi) = self.frame.to_polar(x, y);
        self.sb_polar(rho, phi)
    }

    fn bounds(&self, _floor: f64) -> [f64; 4] {
        let r = self.radius + 6.0 * self.edge;
        [self.frame.x0 - r, self.frame.x0 + r, self.frame.y0 - r, self.frame.y0 + r]
    }

    fn subsampling(&self, x: f64, y: f64, scale: f64, _accuracy: f64) -> usize {
        let rho = self.frame.radius(x, y);
        // The edge is sharper than a pixel: integrate the pixels that
        // straddle it (the PSF smooths what is left).
        if (rho - self.radius).abs() < 1.5 * scale / self.frame.q + 2.0 * self.edge {
            4
        } else {
            1
        }
    }
}

/// A diffuse fan of light on one side of the host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plume {
    /// Host-centred frame.
    pub frame: Frame,
    /// Radius of peak brightness (arcsec).
    pub radius: f64,
    /// Gaussian σ in radius (arcsec).
    pub radial_width: f64,
    /// Direction of the fan (radians).
    pub direction: f64,
    /// Gaussian σ in angle (radians).
    pub angular_width: f64,
    /// Peak surface brightness (flux per arcsec²).
    pub amplitude: f64,
}

impl Profile for Plume {
    #[inline]
    fn sb(&self, x: f64, y: f64) -> f64 {
        let (rho, phi) = self.frame.to_polar(x, y);
        let dphi = (phi - self.direction + PI).rem_euclid(TAU) - PI;
        let zr = (rho - self.radius) / self.radial_width;
        let za = dphi / self.angular_width;
        let e = 0.5 * (zr * zr + za * za);
        if e > 18.0 {
            0.0
        } else {
            self.amplitude * exp32(-e)
        }
    }

    fn bounds(&self, _floor: f64) -> [f64; 4] {
        let r = self.radius + 6.0 * self.radial_width;
        [self.frame.x0 - r, self.frame.x0 + r, self.frame.y0 - r, self.frame.y0 + r]
    }
}

/// The geometry of one tidal feature, with its brightness in the reference
/// band.
#[derive(Debug, Clone, PartialEq)]
pub enum Feature {
    /// One ridge.
    Stream(Ridge),
    /// Two antisymmetric ridges; the first is the brighter.
    Tail([Ridge; 2]),
    /// One or more arcs, the first the innermost and brightest.
    Shells(Vec<ShellArc>),
    /// A fan.
    Plume(Plume),
    /// A compact second nucleus.
    DoubleNucleus(Sersic),
}

impl Feature {
    /// Its kind.
    pub fn kind(&self) -> FeatureKind {
        match self {
            Feature::Stream(_) => FeatureKind::Stream,
            Feature::Tail(_) => FeatureKind::Tail,
            Feature::Shells(_) => FeatureKind::Shell,
            Feature::Plume(_) => FeatureKind::Plume,
            Feature::DoubleNucleus(_) => FeatureKind::DoubleNucleus,
        }
    }
}

impl Profile for Feature {
    fn sb(&self, x: f64, y: f64) -> f64 {
        match self {
            Feature::Stream(r) => r.sb(x, y),
            // Both arms, and all shells, share one frame (as the sampler
            // builds them): one polar transform serves all.
            Feature::Tail([a, b]) => {
                let (rho, phi) = a.frame.to_polar(x, y);
                a.sb_polar(rho, phi) + if b.frame == a.frame { b.sb_polar(rho, phi) } else { b.sb(x, y) }
            }
            Feature::Shells(s) => {
                let Some(first) = s.first() else { return 0.0 };
                let (rho, phi) = first.frame.to_polar(x, y);
                s.iter().map(|a| if a.frame == first.frame { a.sb_polar(rho, phi) } else { a.sb(x, y) }).sum()
            }
            Feature::Plume(p) => p.sb(x, y),
            Feature::DoubleNucleus(s) => s.sb(x, y),
        }
    }

    fn bounds(&self, floor: f64) -> [f64; 4] {
        let union = |a: [f64; 4], b: [f64; 4]| [a[0].min(b[0]), a[1].max(b[1]), a[2].min(b[2]), a[3].max(b[3])];
        match self {
            Feature::Stream(r) => r.bounds(floor),
            Feature::Tail([a, b]) => union(a.bounds(floor), b.bounds(floor)),
            Feature::Shells(s) => s.iter().map(|a| a.bounds(floor)).reduce(union).unwrap_or([0.0; 4]),
            Feature::Plume(p) => p.bounds(floor),
            Feature::DoubleNucleus(s) => s.bounds(floor),
        }
    }

    fn subsampling(&self, x: f64, y: f64, scale: f64, accuracy: f64) -> usize {
        match self {
            Feature::Stream(r) => r.subsampling(x, y, scale, accuracy),
            Feature::Tail([a, b]) => a.subsampling(x, y, scale, accuracy).max(b.subsampling(x, y, scale, accuracy)),
            Feature::Shells(s) => s.iter().map(|a| a.subsampling(x, y, scale, accuracy)).max().unwrap_or(1),
            Feature::Plume(p) => p.subsampling(x, y, scale, accuracy),
            Feature::DoubleNucleus(s) => s.subsampling(x, y, scale, accuracy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ridge() -> Ridge {
        Ridge {
            frame: Frame::new(0.0, 0.0, 0.0, 1.0),
            curve: Curve::Orbit { p: 10.0, e: 0.0, kappa: 1.0, omega: 0.0 },
            start: 0.0,
            length: PI,
            width: 1.0,
            width_growth: 0.0,
            taper_in: 0.1,
            taper_out: 0.1,
            amplitude: 2.0,
        }
    }

    #[test]
    fn ridge_peaks_at_its_amplitude_on_the_curve() {
        let r = ridge();
        // on the circle of radius 10 at φ = 90°
        assert!((r.sb(0.0, 10.0) - 2.0).abs() < 1e-12);
        // one σ off the ridge
        assert!((r.sb(0.0, 11.0) - 2.0 * (-0.5f64).exp()).abs() < 1e-6);
        // outside the angular range (φ = −90°)
        assert_eq!(r.sb(0.0, -10.0), 0.0);
    }

    #[test]
    fn ridge_winding_twice_adds_up_where_it_overlaps() {
        let mut r = ridge();
        r.length = 3.0 * TAU;
        r.taper_in = 0.01;
        r.taper_out = 0.01;
        // a circle wound three times is three times as bright
        assert!((r.sb(-10.0, 0.0) - 6.0).abs() < 1e-9);
    }

    #[test]
    fn shell_is_brightest_at_a_sharp_outer_edge() {
        let s = ShellArc {
            frame: Frame::new(0.0, 0.0, 0.0, 1.0),
            radius: 8.0,
            direction: 0.0,
            half_opening: 1.5,
            taper: 0.3,
            inner_scale: 2.0,
            edge: 0.1,
            amplitude: 1.0,
        };
        assert!((s.sb(8.0, 0.0) - 1.0).abs() < 1e-12);
        assert!((s.sb(6.0, 0.0) - (-1f64).exp()).abs() < 1e-6);
        assert!(s.sb(8.5, 0.0) < 1e-5);
        assert_eq!(s.sb(-8.0, 0.0), 0.0);
    }
}

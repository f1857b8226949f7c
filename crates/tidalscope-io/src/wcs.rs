//! Celestial WCS of FITS images (Greisen & Calabretta 2002, Calabretta &
//! Greisen 2002): the gnomonic (TAN) projection with an optional SIP
//! distortion (Shupe et al. 2005), which is what HSC and LSST coadds carry.
//! It maps a sky position (RA, Dec in degrees) to a pixel position, so that
//! cutouts can be cut straight from coadd images.
//!
//! Pixel positions are 0-based with integers at pixel centres (the first
//! pixel spans −0.5 … 0.5), as astropy's `world_to_pixel` returns them.

use crate::fits::{Header, Value};
use crate::{Error, Result};
use std::path::Path;

/// A SIP polynomial: terms `(p, q, coefficient)` of `Σ c·uᵖ·vᵠ`.
#[derive(Debug, Clone, PartialEq)]
struct Poly {
    terms: Vec<(i32, i32, f64)>,
}

impl Poly {
    /// Reads `{name}_ORDER` and the `{name}_p_q` cards.
    fn read(header: &Header, name: &str, path: &Path) -> Result<Option<Poly>> {
        let Some(order) = header.get(&format!("{name}_ORDER")) else { return Ok(None) };
        let order = order
            .as_i64()
            .filter(|o| (0..=20).contains(o))
            .ok_or_else(|| Error::format(path, format!("{name}_ORDER is not an integer from 0 to 20")))?
            as i32;
        let mut terms = Vec::new();
        for p in 0..=order {
            for q in 0..=order - p {
                if let Some(v) = header.get(&format!("{name}_{p}_{q}")) {
                    let c = v.as_f64().ok_or_else(|| Error::format(path, format!("{name}_{p}_{q} is not a number")))?;
                    if c != 0.0 {
                        terms.push((p, q, c));
                    }
                }
            }
        }
        Ok(Some(Poly { terms }))
    }

    fn eval(&self, u: f64, v: f64) -> f64 {
        self.terms.iter().map(|&(p, q, c)| c * u.powi(p) * v.powi(q)).sum()
    }

    /// `(∂/∂u, ∂/∂v)`.
    fn grad(&self, u: f64, v: f64) -> (f64, f64) {
        self.terms.iter().fold((0.0, 0.0), |(du, dv), &(p, q, c)| {
            let gu = if p > 0 { c * p as f64 * u.powi(p - 1) * v.powi(q) } else { 0.0 };
            let gv = if q > 0 { c * q as f64 * u.powi(p) * v.powi(q - 1) } else { 0.0 };
            (du + gu, dv + gv)
        })
    }
}

/// A TAN or TAN-SIP celestial WCS in equatorial coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Wcs {
    /// CRPIX1, CRPIX2 (1-based, as in the header).
    crpix: [f64; 2],
    /// CRVAL1, CRVAL2 in radians: the tangent point.
    crval: [f64; 2],
    /// The linear transformation, degrees per pixel.
    cd: [[f64; 2]; 2],
    /// Its inverse.
    cd_inv: [[f64; 2]; 2],
    /// φ_p (LONPOLE) in radians.
    lonpole: f64,
    /// SIP forward polynomials A and B, when CTYPE ends in `-SIP`.
    sip: Option<(Poly, Poly)>,
}

fn number(header: &Header, key: &str, default: Option<f64>, path: &Path) -> Result<f64> {
    match header.get(key) {
        Some(v) => v.as_f64().ok_or_else(|| Error::format(path, format!("{key} is not a number"))),
        None => default.ok_or_else(|| Error::format(path, format!("no {key} card: not a celestial WCS"))),
    }
}

impl Wcs {
    /// Reads the WCS of an image HDU's header. `path` names the file in
    /// errors.
    pub fn from_header(header: &Header, path: &Path) -> Result<Self> {
        let ctype = |k: &str| -> Result<String> {
            match header.get(k) {
                Some(Value::Str(s)) => Ok(s.trim().to_ascii_uppercase()),
                _ => Err(Error::format(path, format!("no {k} card: the image has no celestial WCS"))),
            }
        };
        let (c1, c2) = (ctype("CTYPE1")?, ctype("CTYPE2")?);
        let sip = match (c1.as_str(), c2.as_str()) {
            ("RA---TAN", "DEC--TAN") => false,
            ("RA---TAN-SIP", "DEC--TAN-SIP") => true,
            _ => {
                return Err(Error::format(
                    path,
                    format!(
                        "CTYPE1/CTYPE2 = {c1:?}/{c2:?}: only RA---TAN/DEC--TAN and their -SIP variants are \
                         supported (the projection of HSC and LSST coadds)"
                    ),
                ))
            }
        };
        for (k, axis) in [("CUNIT1", 1), ("CUNIT2", 2)] {
            if let Some(Value::Str(u)) = header.get(k) {
                if !u.trim().is_empty() && !u.trim().eq_ignore_ascii_case("deg") {
                    return Err(Error::format(path, format!("{k} = {u:?}: axis {axis} must be in degrees")));
                }
            }
        }
        let crpix = [number(header, "CRPIX1", None, path)?, number(header, "CRPIX2", None, path)?];
        let crval = [number(header, "CRVAL1", None, path)?, number(header, "CRVAL2", None, path)?];
        let has_cd = ["CD1_1", "CD1_2", "CD2_1", "CD2_2"].iter().any(|k| header.get(k).is_some());
        let cd = if has_cd {
            let g = |k: &str| number(header, k, Some(0.0), path);
            [[g("CD1_1")?, g("CD1_2")?], [g("CD2_1")?, g("CD2_2")?]]
        } else {
            let cdelt = [number(header, "CDELT1", Some(1.0), path)?, number(header, "CDELT2", Some(1.0), path)?];
            // PCi_j, or the draft standard's PC00i00j that Pan-STARRS
            // skycells still write (their PC001001 = −1 flips x).
            let pc_key = |i: usize, j: usize| {
                [format!("PC{i}_{j}"), format!("PC{i:03}{j:03}")].into_iter().find(|k| header.get(k).is_some())
            };
            let has_pc = [(1, 1), (1, 2), (2, 1), (2, 2)].iter().any(|&(i, j)| pc_key(i, j).is_some());
            let pc = if has_pc {
                let g = |i: usize, j: usize| match pc_key(i, j) {
                    Some(k) => number(header, &k, None, path),
                    None => Ok(if i == j { 1.0 } else { 0.0 }),
                };
                [[g(1, 1)?, g(1, 2)?], [g(2, 1)?, g(2, 2)?]]
            } else {
                // The older CROTA2 convention (Greisen & Calabretta 2002, eq. 189).
                let rho = number(header, "CROTA2", Some(0.0), path)?.to_radians();
                let (s, c) = rho.sin_cos();
                [[c, -s * cdelt[1] / cdelt[0]], [s * cdelt[0] / cdelt[1], c]]
            };
            [[cdelt[0] * pc[0][0], cdelt[0] * pc[0][1]], [cdelt[1] * pc[1][0], cdelt[1] * pc[1][1]]]
        };
        let det = cd[0][0] * cd[1][1] - cd[0][1] * cd[1][0];
        if !det.is_finite() || det == 0.0 || crpix.iter().chain(&crval).any(|v| !v.is_finite()) {
            return Err(Error::format(path, "the WCS matrix is singular or not finite"));
        }
        let cd_inv = [[cd[1][1] / det, -cd[0][1] / det], [-cd[1][0] / det, cd[0][0] / det]];
        // A zenithal projection's reference point is the native pole (θ₀ =
        // 90°): φ_p defaults to 0 when δ₀ ≥ θ₀ and to 180° otherwise.
        let lonpole = number(header, "LONPOLE", Some(if crval[1] >= 90.0 { 0.0 } else { 180.0 }), path)?;
        let sip = if sip {
            let a = Poly::read(header, "A", path)?;
            let b = Poly::read(header, "B", path)?;
            match (a, b) {
                (Some(a), Some(b)) => Some((a, b)),
                _ => return Err(Error::format(path, "CTYPE says -SIP but A_ORDER or B_ORDER is missing")),
            }
        } else {
            None
        };
        Ok(Self {
            crpix,
            crval: [crval[0].to_radians(), crval[1].to_radians()],
            cd,
            cd_inv,
            lonpole: lonpole.to_radians(),
            sip,
        })
    }

    /// The 0-based pixel position `(x, y)` of a sky position (degrees), or
    /// `None` when it lies 90° or more from the tangent point (no
    /// projection there).
    pub fn world_to_pixel(&self, ra: f64, dec: f64) -> Option<(f64, f64)> {
        let (a, d) = (ra.to_radians(), dec.to_radians());
        let (a0, d0) = (self.crval[0], self.crval[1]);
        let da = a - a0;
        // Celestial → native spherical (Calabretta & Greisen 2002, eq. 5).
        let phi = self.lonpole + (-d.cos() * da.sin()).atan2(d.sin() * d0.cos() - d.cos() * d0.sin() * da.cos());
        let sin_theta = (d.sin() * d0.sin() + d.cos() * d0.cos() * da.cos()).clamp(-1.0, 1.0);
        // NaN input fails this too.
        if sin_theta.is_nan() || sin_theta <= 0.0 {
            return None;
        }
        // Gnomonic: R_θ = cot θ, in degrees of the projection plane.
        let r = ((1.0 - sin_theta * sin_theta).sqrt() / sin_theta).to_degrees();
        let (x, y) = (r * phi.sin(), -r * phi.cos());
        let up = self.cd_inv[0][0] * x + self.cd_inv[0][1] * y;
        let vp = self.cd_inv[1][0] * x + self.cd_inv[1][1] * y;
        let (u, v) = match &self.sip {
            None => (up, vp),
            Some((pa, pb)) => invert_sip(pa, pb, up, vp)?,
        };
        Some((u + self.crpix[0] - 1.0, v + self.crpix[1] - 1.0))
    }

    /// The sky position (degrees) of a 0-based pixel position: the inverse
    /// of [`Wcs::world_to_pixel`].
    pub fn pixel_to_world(&self, x: f64, y: f64) -> (f64, f64) {
        let (mut u, mut v) = (x + 1.0 - self.crpix[0], y + 1.0 - self.crpix[1]);
        if let Some((pa, pb)) = &self.sip {
            (u, v) = (u + pa.eval(u, v), v + pb.eval(u, v));
        }
        let xi = self.cd[0][0] * u + self.cd[0][1] * v;
        let eta = self.cd[1][0] * u + self.cd[1][1] * v;
        // Native spherical: φ = arg(−y, x), θ = atan(180°/(π R_θ)).
        let r = (xi * xi + eta * eta).sqrt().to_radians();
        let phi = if r == 0.0 { 0.0 } else { xi.atan2(-eta) };
        let theta = 1.0f64.atan2(r);
        let (d0, dphi) = (self.crval[1], phi - self.lonpole);
        // Native → celestial (Calabretta & Greisen 2002, eq. 2).
        let dec = (theta.sin() * d0.sin() + theta.cos() * d0.cos() * dphi.cos()).clamp(-1.0, 1.0).asin();
        let da = (-theta.cos() * dphi.sin()).atan2(theta.sin() * d0.cos() - theta.cos() * d0.sin() * dphi.cos());
        let ra = (self.crval[0] + da).to_degrees().rem_euclid(360.0);
        (ra, dec.to_degrees())
    }
}

/// Solves `u + A(u, v) = u'`, `v + B(u, v) = v'` by Newton's method. SIP
/// distortions are small (a few pixels at most across a coadd), so this
/// converges in a few steps from `(u', v')`; `None` if it does not.
fn invert_sip(a: &Poly, b: &Poly, up: f64, vp: f64) -> Option<(f64, f64)> {
    let (mut u, mut v) = (up, vp);
    for _ in 0..50 {
        let fu = u + a.eval(u, v) - up;
        let fv = v + b.eval(u, v) - vp;
        let (au, av) = a.grad(u, v);
        let (bu, bv) = b.grad(u, v);
        let (j11, j12, j21, j22) = (1.0 + au, av, bu, 1.0 + bv);
        let det = j11 * j22 - j12 * j21;
        if !det.is_finite() || det == 0.0 {
            return None;
        }
        let du = (j22 * fu - j12 * fv) / det;
        let dv = (j11 * fv - j21 * fu) / det;
        u -= du;
        v -= dv;
        if du.abs() < 1e-12 && dv.abs() < 1e-12 {
            return Some((u, v));
        }
    }
    let (fu, fv) = (u + a.eval(u, v) - up, v + b.eval(u, v) - vp);
    (fu.abs() < 1e-8 && fv.abs() < 1e-8).then_some((u, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tan_header(sip: bool) -> Header {
        let mut h = Header::new();
        let ct = |s: &str| Value::Str(if sip { format!("{s}-SIP") } else { s.to_string() });
        h.push("CTYPE1", ct("RA---TAN"), "")
            .push("CTYPE2", ct("DEC--TAN"), "")
            .push("CRPIX1", Value::Float(2100.5), "")
            .push("CRPIX2", Value::Float(-1800.0), "")
            .push("CRVAL1", Value::Float(150.1), "")
            .push("CRVAL2", Value::Float(2.2), "")
            .push("CD1_1", Value::Float(-4.66666666667e-5), "")
            .push("CD1_2", Value::Float(1.0e-7), "")
            .push("CD2_1", Value::Float(-2.0e-7), "")
            .push("CD2_2", Value::Float(4.66666666667e-5), "");
        if sip {
            h.push("A_ORDER", Value::Int(2), "")
                .push("A_2_0", Value::Float(2.0e-6), "")
                .push("A_1_1", Value::Float(-1.0e-7), "")
                .push("B_ORDER", Value::Int(2), "")
                .push("B_0_2", Value::Float(1.5e-7), "")
                .push("B_1_1", Value::Float(3.0e-8), "");
        }
        h
    }

    #[test]
    fn tan_round_trips_and_the_reference_point_maps_to_crpix() {
        for sip in [false, true] {
            let w = Wcs::from_header(&tan_header(sip), Path::new("t.fits")).unwrap();
            let (x, y) = w.world_to_pixel(150.1, 2.2).unwrap();
            assert!((x - 2099.5).abs() < 1e-9 && (y + 1801.0).abs() < 1e-9, "{x} {y}");
            for &(px, py) in &[(0.0, 0.0), (4199.0, 4099.0), (123.4, 3000.7), (-50.0, 17.0)] {
                let (ra, dec) = w.pixel_to_world(px, py);
                let (x, y) = w.world_to_pixel(ra, dec).unwrap();
                assert!((x - px).abs() < 1e-7 && (y - py).abs() < 1e-7, "sip {sip}: {px},{py} -> {x},{y}");
            }
        }
    }

    #[test]
    fn sip_moves_pixels_by_its_polynomial() {
        let plain = Wcs::from_header(&tan_header(false), Path::new("t.fits")).unwrap();
        let sip = Wcs::from_header(&tan_header(true), Path::new("t.fits")).unwrap();
        // Far from CRPIX the distortion is several pixels.
        let (ra, dec) = plain.pixel_to_world(4000.0, 4000.0);
        let (xs, ys) = sip.world_to_pixel(ra, dec).unwrap();
        let (u, v) = (xs + 1.0 - 2100.5, ys + 1.0 + 1800.0);
        let du = 2.0e-6 * u * u - 1.0e-7 * u * v;
        let dv = 1.5e-7 * v * v + 3.0e-8 * u * v;
        assert!((xs + du - 4000.0).abs() < 1e-6 && (ys + dv - 4000.0).abs() < 1e-6);
        assert!(du.abs() > 1.0);
    }

    #[test]
    fn a_position_behind_the_tangent_plane_has_no_pixel() {
        let w = Wcs::from_header(&tan_header(false), Path::new("t.fits")).unwrap();
        assert!(w.world_to_pixel(150.1 + 180.0, -2.2).is_none());
    }

    #[test]
    fn pc_cdelt_equals_cd() {
        let mut h = Header::new();
        h.push("CTYPE1", Value::Str("RA---TAN".into()), "")
            .push("CTYPE2", Value::Str("DEC--TAN".into()), "")
            .push("CRPIX1", Value::Float(10.0), "")
            .push("CRPIX2", Value::Float(20.0), "")
            .push("CRVAL1", Value::Float(30.0), "")
            .push("CRVAL2", Value::Float(-40.0), "")
            .push("CDELT1", Value::Float(-5.6e-5), "")
            .push("CDELT2", Value::Float(5.6e-5), "")
            .push("PC1_2", Value::Float(0.01), "");
        let w = Wcs::from_header(&h, Path::new("t.fits")).unwrap();
        assert_eq!(w.cd, [[-5.6e-5, -5.6e-7], [0.0, 5.6e-5]]);
    }

    /// Pan-STARRS skycells write the draft standard's PC00i00j with a
    /// positive CDELT1: PC001001 = −1 is what makes RA grow to the left.
    #[test]
    fn the_drafts_pc00i00j_keys_count_as_pci_j() {
        let mut h = Header::new();
        h.push("CTYPE1", Value::Str("RA---TAN".into()), "")
            .push("CTYPE2", Value::Str("DEC--TAN".into()), "")
            .push("CRPIX1", Value::Float(5000.0), "")
            .push("CRPIX2", Value::Float(5000.0), "")
            .push("CRVAL1", Value::Float(351.9), "")
            .push("CRVAL2", Value::Float(34.5), "")
            .push("CDELT1", Value::Float(5.16e-5), "")
            .push("CDELT2", Value::Float(5.16e-5), "")
            .push("PC001001", Value::Float(-1.0), "")
            .push("PC001002", Value::Float(0.0), "")
            .push("PC002001", Value::Float(0.0), "")
            .push("PC002002", Value::Float(1.0), "");
        let w = Wcs::from_header(&h, Path::new("skycell.fits")).unwrap();
        assert_eq!(w.cd, [[-5.16e-5, 0.0], [0.0, 5.16e-5]]);
    }

    #[test]
    fn unsupported_projections_are_named() {
        let mut h = Header::new();
        for (k, v) in tan_header(false).cards() {
            let v = if k == "CTYPE1" { Value::Str("RA---SIN".into()) } else { v.clone() };
            h.push(k, v, "");
        }
        let e = Wcs::from_header(&h, Path::new("g.fits")).unwrap_err().to_string();
        assert!(e.contains("g.fits") && e.contains("RA---SIN"), "{e}");
        let e = Wcs::from_header(&Header::new(), Path::new("g.fits")).unwrap_err().to_string();
        assert!(e.contains("CTYPE1"), "{e}");
    }
}

//! Photometric units.
//!
//! Coadd images are in linear flux units tied to a zero point `zp`:
//! `mag = zp - 2.5 log10(flux)` (HSC-SSP coadds: zp = 27). A surface brightness
//! μ in mag/arcsec² is a flux per square arcsecond, and one pixel of side `s`
//! arcsec holds `s²` of it.

/// Flux (in coadd units) of an object of magnitude `mag`.
pub fn mag_to_flux(mag: f64, zp: f64) -> f64 {
    10f64.powf(-0.4 * (mag - zp))
}

/// Magnitude of a flux; `NaN` for a non-positive flux.
pub fn flux_to_mag(flux: f64, zp: f64) -> f64 {
    if flux > 0.0 {
        zp - 2.5 * flux.log10()
    } else {
        f64::NAN
    }
}

/// Flux per square arcsecond of a surface brightness `mu` (mag/arcsec²).
pub fn sb_to_flux_density(mu: f64, zp: f64) -> f64 {
    mag_to_flux(mu, zp)
}

/// Surface brightness (mag/arcsec²) of a flux per square arcsecond.
pub fn flux_density_to_sb(density: f64, zp: f64) -> f64 {
    flux_to_mag(density, zp)
}

/// Surface brightness (mag/arcsec²) of a pixel value, given the pixel scale in
/// arcsec.
pub fn pixel_to_sb(pixel_flux: f64, pixel_scale: f64, zp: f64) -> f64 {
    flux_density_to_sb(pixel_flux / (pixel_scale * pixel_scale), zp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitudes_follow_the_pogson_scale() {
        assert!((mag_to_flux(22.0, 27.0) - 100.0).abs() < 1e-9);
        assert!((flux_to_mag(100.0, 27.0) - 22.0).abs() < 1e-12);
        assert!(flux_to_mag(0.0, 27.0).is_nan());
        // 1 flux unit spread over one 0.2" pixel is 1/0.04 per arcsec²
        let mu = pixel_to_sb(1.0, 0.2, 27.0);
        assert!((mu - (27.0 - 2.5 * 25f64.log10())).abs() < 1e-12);
    }
}

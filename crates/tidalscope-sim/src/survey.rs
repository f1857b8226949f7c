//! Survey presets: pixel scale, zero point, per-band PSF and depth.
//!
//! Sources: REFERENCE.md "Survey facts" (HSC-SSP PDR2 Ultradeep; LSST), with
//! the conventions below.
//!
//! * **hsc-ud**: 0.168″ pixels, zero point 27 (HSC coadds). PSF FWHM g 0.80″,
//!   r 0.75″, i 0.62″, z 0.70″, y 0.69″. Per-pixel noise from the 5σ
//!   point-source depth m5 in a 2″ aperture: σ = 10^(−0.4(m5 − 27)) / (5 √N_ap),
//!   N_ap = π (1″/0.168″)², with m5 = g 28.1, r 27.7, i 27.4, z 26.8, y 26.3.
//! * **lsst-y10**: 0.2″ pixels, zero point 30 (a common LSST convention; the
//!   LSST pipelines' nJy images have 31.4). Depth from the 10-year 5σ
//!   point-source depths of Ivezić et al. (2019), g 27.4, r 27.5, i 26.8,
//!   z 26.1, y 24.9, through the same 2″-aperture formula as HSC (with
//!   N_ap = π (1″/0.2″)² and the zero point 30), so the two presets' depths
//!   mean the same thing. The often-quoted ≈ 30.3 mag/arcsec² (3σ in
//!   10″×10″ boxes) is another convention that folds in large-scale
//!   systematics; it is not used. PSF FWHM g 0.85″, r 0.80″, i 0.78″,
//!   z 0.76″, y 0.75″ (the survey's median delivered image quality,
//!   approximately).
//!
//! The **visibility limit** is the reference-band (r) surface brightness
//! above which a tidal feature counts as visible (label 1): 0.6 mag brighter
//! than the 1σ per-pixel surface brightness, i.e. a ridge S/N of about 0.6
//! per pixel, which an eye integrates over a feature's hundreds of pixels.

use std::fmt;
use std::str::FromStr;
use tidalscope_core::Band;

/// A named survey preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SurveyName {
    /// HSC-SSP PDR2 Ultradeep.
    #[serde(rename = "hsc-ud")]
    HscUd,
    /// LSST at its 10-year depth.
    #[serde(rename = "lsst-y10")]
    LsstY10,
}

impl SurveyName {
    /// Preset name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SurveyName::HscUd => "hsc-ud",
            SurveyName::LsstY10 => "lsst-y10",
        }
    }
}

impl fmt::Display for SurveyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A survey name that is not a known preset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown survey {0:?} (expected hsc-ud or lsst-y10)")]
pub struct UnknownSurvey(pub String);

impl FromStr for SurveyName {
    type Err = UnknownSurvey;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hsc-ud" => Ok(SurveyName::HscUd),
            "lsst-y10" => Ok(SurveyName::LsstY10),
            _ => Err(UnknownSurvey(s.to_string())),
        }
    }
}

/// One band of a survey.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandSpec {
    /// The filter.
    pub band: Band,
    /// Median PSF full width at half maximum (arcsec).
    pub psf_fwhm: f64,
    /// Per-pixel noise σ in coadd flux units at nominal depth.
    pub noise_sigma: f64,
}

/// Everything about a survey that shapes its images.
#[derive(Debug, Clone, PartialEq)]
pub struct Survey {
    /// Preset name.
    pub name: SurveyName,
    /// Pixel side (arcsec).
    pub pixel_scale: f64,
    /// Magnitude zero point of the coadd flux.
    pub zero_point: f64,
    /// Bands g, r, i, z, y.
    pub bands: [BandSpec; 5],
    /// Fraction of PSF flux in its extended wing.
    pub psf_wing_fraction: f64,
    /// Neighbour weight `a` of the [a, 1, a] kernel that correlates the noise
    /// (resampling when coadding): adjacent pixels correlate by 2a/(1+2a²).
    pub noise_correlation: f64,
}

impl Survey {
    /// The preset called `name`.
    pub fn preset(name: SurveyName) -> Self {
        match name {
            SurveyName::HscUd => Self::from_point_source_depths(
                name,
                0.168,
                27.0,
                [
                    (Band::G, 0.80, 28.1),
                    (Band::R, 0.75, 27.7),
                    (Band::I, 0.62, 27.4),
                    (Band::Z, 0.70, 26.8),
                    (Band::Y, 0.69, 26.3),
                ],
            ),
            SurveyName::LsstY10 => Self::from_point_source_depths(
                name,
                0.2,
                30.0,
                [
                    (Band::G, 0.85, 27.4),
                    (Band::R, 0.80, 27.5),
                    (Band::I, 0.78, 26.8),
                    (Band::Z, 0.76, 26.1),
                    (Band::Y, 0.75, 24.9),
                ],
            ),
        }
    }

    /// A survey whose per-pixel noise follows from 5σ point-source depths
    /// m5 in a 2″ aperture: σ = 10^(−0.4(m5 − zp)) / (5 √N_ap), N_ap = π (1″/s)².
    /// `bands` holds (band, PSF FWHM in arcsec, m5) in g, r, i, z, y order.
    fn from_point_source_depths(name: SurveyName, scale: f64, zero_point: f64, bands: [(Band, f64, f64); 5]) -> Self {
        let n_ap = std::f64::consts::PI * (1.0 / scale) * (1.0 / scale);
        let spec = |(band, psf_fwhm, m5): (Band, f64, f64)| BandSpec {
            band,
            psf_fwhm,
            noise_sigma: 10f64.powf(-0.4 * (m5 - zero_point)) / (5.0 * n_ap.sqrt()),
        };
        Self {
            name,
            pixel_scale: scale,
            zero_point,
            bands: bands.map(spec),
            psf_wing_fraction: 0.1,
            noise_correlation: 0.2,
        }
    }

    /// Surface brightness (mag/arcsec²) of a pixel at 1σ in band `b`.
    pub fn pixel_sb_limit(&self, band: Band) -> f64 {
        let s = self.pixel_scale;
        self.zero_point - 2.5 * (self.bands[band.index()].noise_sigma / (s * s)).log10()
    }

    /// r-band surface brightness (mag/arcsec²) of the faintest feature that
    /// counts as visible (see the module documentation).
    pub fn visibility_limit(&self) -> f64 {
        self.pixel_sb_limit(Band::R) - 0.6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsc_depth_follows_the_aperture_formula() {
        let s = Survey::preset(SurveyName::HscUd);
        // r: 10^(-0.4*0.7) / (5 sqrt(π/0.168²)) = 0.5248 / 52.75
        assert!((s.bands[1].noise_sigma - 0.009_949).abs() < 2e-6);
        assert!((s.visibility_limit() - 27.53).abs() < 0.02);
    }

    #[test]
    fn lsst_depth_follows_the_same_point_source_formula() {
        let s = Survey::preset(SurveyName::LsstY10);
        // r: m5 = 27.5 at zero point 30 with 0.2" pixels: a 2"-aperture of
        // π·25 pixels holds a 5σ point source of 10^(-0.4·(27.5-30)) counts.
        let n_ap = std::f64::consts::PI * 25.0;
        for (b, m5) in [27.4, 27.5, 26.8, 26.1, 24.9].into_iter().enumerate() {
            let flux = 10f64.powf(-0.4 * (m5 - 30.0));
            assert!((5.0 * s.bands[b].noise_sigma * n_ap.sqrt() / flux - 1.0).abs() < 1e-12, "band {b}");
        }
        // One convention for both: per pixel, r-band LSST-y10 and HSC-UD
        // differ by Δm5 + 2.5 log10(0.2/0.168) = -0.2 + 0.19 mag (the old
        // box-limit definition made LSST ~0.9 mag shallower per pixel).
        let hsc = Survey::preset(SurveyName::HscUd);
        let d = s.pixel_sb_limit(Band::R) - hsc.pixel_sb_limit(Band::R);
        assert!((d - (-0.2 + 2.5 * (0.2f64 / 0.168).log10())).abs() < 1e-9, "{d}");
        assert!("lsst-y10".parse::<SurveyName>().unwrap() == SurveyName::LsstY10);
        assert!("sdss".parse::<SurveyName>().is_err());
    }
}

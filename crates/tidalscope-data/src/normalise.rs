//! The asinh normalisation x ← asinh(x / σ_b / 3), with σ_b stored and
//! reused.
//!
//! How σ_b is measured ([`SigmaRule`]):
//! * **sky** (tidalscope's default): the noise of the sky. In each of the
//!   first `n` images, band b's pixels in the outer frame (an eighth of the
//!   side wide) are sigma-clipped (3σ about the median, 5 rounds) and their
//!   1.4826 × MAD taken; σ_b is the median of those over the images. So one
//!   σ of sky means the same to the network on every survey's images, and
//!   the faint outskirts where tidal features lie fill the low part of the
//!   asinh's range.
//! * **image** (the reference, Desmons et al. 2023): 1.4826 × MAD (median
//!   absolute deviation from the median) over every finite pixel of the
//!   first `n` images of the unlabelled set (the reference: 1000). Where
//!   hosts and neighbours fill the cutout this is several times the sky
//!   noise (≈ 4× in g on 4×4-binned HSC-UD mocks) and changes from one
//!   data set to the next.
//!
//! Unlike the reference, which recomputed σ on whatever data it was given,
//! σ is fitted once, stored with every trained model and reused at
//! inference, so a galaxy gets the same numbers whichever catalogue it is in.
//!
//! **Non-finite pixels** (NaN or ±inf: masked or missing data in real
//! coadds) become 0 after normalisation — the sky level, i.e. no signal —
//! and are counted; [`Normaliser::apply`] reports the count so callers can
//! flag images above a threshold fraction ([`BAD_FRACTION`]). No NaN ever
//! reaches a network.

use serde::{Deserialize, Serialize};
use std::path::Path;
use tidalscope_core::math::asinh;
use tidalscope_core::multiversion;
use tidalscope_core::stats::sky_sigma;
use tidalscope_core::Cutout;
use tidalscope_io::source::Source;

/// Fraction of non-finite pixels above which an image is reported as bad.
pub const BAD_FRACTION: f64 = 0.05;

/// Default number of images σ is measured on (the reference's choice).
pub const DEFAULT_FIT_IMAGES: usize = 1000;

/// Errors of fitting or loading a normaliser.
#[derive(Debug, thiserror::Error)]
pub enum NormaliseError {
    /// Reading the data failed.
    #[error(transparent)]
    Io(#[from] tidalscope_io::Error),
    /// A band had no finite pixel, or σ came out zero.
    #[error("{0}")]
    Degenerate(String),
    /// The stored file is unreadable.
    #[error("{path}: {message}")]
    File {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// An image whose band count is not the model's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image has {got} bands; the model expects {} ({})", expected.len(), expected.join(","))]
pub struct BandMismatch {
    /// The image's band count.
    pub got: usize,
    /// The model's bands.
    pub expected: Vec<String>,
}

/// How σ_b is measured (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SigmaRule {
    /// Sigma-clipped MAD of each image's outer frame, median over images.
    #[default]
    Sky,
    /// MAD of every pixel of the images (the reference).
    Image,
}

multiversion! {
    /// `v ← asinh(v·k)`, non-finite values ← 0; returns how many were not
    /// finite. Branch-free, so that it vectorises.
    fn stretch(band: &mut [f32], k: f32) -> usize {
        // A plain loop: with `for_each` and a closure, perf showed the
        // loop outside this function, at the baseline width.
        let mut bad = 0;
        for v in band.iter_mut() {
            let finite = v.is_finite();
            bad += usize::from(!finite);
            *v = if finite { asinh(*v * k) } else { 0.0 };
        }
        bad
    }
}

multiversion! {
    /// Non-finite values ← 0; returns how many there were.
    fn zero_non_finite(band: &mut [f32]) -> usize {
        let mut bad = 0;
        for v in band.iter_mut() {
            let finite = v.is_finite();
            bad += usize::from(!finite);
            *v = if finite { *v } else { 0.0 };
        }
        bad
    }
}

/// Per-band scales of the asinh normalisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normaliser {
    /// Band names, in channel order.
    pub bands: Vec<String>,
    /// σ_b per band (data units).
    pub sigma: Vec<f32>,
    /// How σ was obtained (e.g. "MAD of the first 1000 images of data/mock").
    pub provenance: String,
}

pub use tidalscope_core::stats::mad_sigma;

impl Normaliser {
    /// A normaliser with given σ per band.
    pub fn new(bands: Vec<String>, sigma: Vec<f32>, provenance: impl Into<String>) -> Self {
        Self { bands, sigma, provenance: provenance.into() }
    }

    /// Identity-like normaliser for inputs that are already normalised:
    /// flagged by an empty σ list, [`Normaliser::apply`] then only applies
    /// the non-finite rule.
    pub fn none(bands: Vec<String>) -> Self {
        Self { bands, sigma: Vec::new(), provenance: "none: inputs are already normalised".into() }
    }

    /// True for [`Normaliser::none`].
    pub fn is_identity(&self) -> bool {
        self.sigma.is_empty()
    }

    /// Measures σ_b by `rule` on the first `n` images of `source` (images
    /// that fail to load are an error: σ must come from known data).
    pub fn fit(source: &dyn Source, n: usize, rule: SigmaRule) -> Result<Self, NormaliseError> {
        Self::fit_with(source, n, rule, &|c: Cutout| c)
    }

    /// As [`Normaliser::fit`], on images first passed through `prepare`
    /// (e.g. binning).
    pub fn fit_with(
        source: &dyn Source,
        n: usize,
        rule: SigmaRule,
        prepare: &dyn Fn(Cutout) -> Cutout,
    ) -> Result<Self, NormaliseError> {
        let info = source.info();
        // Image rule: every finite pixel per band; sky rule: one clipped σ
        // per image and band.
        let mut per_band: Vec<Vec<f32>> = Vec::new();
        let mut used = 0;
        let mut border = Vec::new();
        for rec in source.records(0)?.take(n) {
            let img = prepare(rec?.pixels.load()?);
            if per_band.is_empty() {
                per_band = vec![Vec::new(); img.bands()];
            }
            if img.bands() != per_band.len() {
                return Err(NormaliseError::Degenerate(format!(
                    "{}: images have {} and {} bands",
                    info.path.display(),
                    per_band.len(),
                    img.bands()
                )));
            }
            for (b, vals) in per_band.iter_mut().enumerate() {
                match rule {
                    SigmaRule::Image => vals.extend(img.band(b).iter().copied().filter(|v| v.is_finite())),
                    // A frame with no spread (masked or zero-padded edges) says
                    // nothing about the sky: left out.
                    SigmaRule::Sky => vals.extend(sky_sigma(img.band(b), img.width(), img.height(), &mut border)),
                }
            }
            used += 1;
        }
        if used == 0 {
            return Err(NormaliseError::Degenerate(format!("{}: no images to measure σ on", info.path.display())));
        }
        let mut sigma = Vec::with_capacity(per_band.len());
        for (b, vals) in per_band.iter_mut().enumerate() {
            let s = match rule {
                SigmaRule::Image => mad_sigma(vals),
                SigmaRule::Sky => tidalscope_core::stats::median(vals),
            };
            let s = s.filter(|s| *s > 0.0 && s.is_finite()).ok_or_else(|| {
                NormaliseError::Degenerate(format!(
                    "{}: band {b} has no finite spread (σ = 0 or no finite pixel) in the first {used} images",
                    info.path.display()
                ))
            })?;
            sigma.push(s);
        }
        let bands = if info.bands.len() == sigma.len() {
            info.bands.clone()
        } else {
            tidalscope_io::source::default_bands(sigma.len())
        };
        Ok(Self {
            bands,
            sigma,
            provenance: match rule {
                SigmaRule::Image => format!("1.4826 × MAD of the first {used} images of {}", info.path.display()),
                SigmaRule::Sky => format!(
                    "sky: median over the first {used} images of {} of the sigma-clipped 1.4826 × MAD of each image's outer frame",
                    info.path.display()
                ),
            },
        })
    }

    /// Normalises `img` in place and returns how many pixels were not
    /// finite (now 0).
    pub fn apply(&self, img: &mut Cutout) -> usize {
        let mut bad = 0;
        for b in 0..img.bands() {
            let k = if self.is_identity() { None } else { Some(1.0 / (3.0 * self.sigma[b.min(self.sigma.len() - 1)])) };
            let band = img.band_mut(b);
            bad += match k {
                Some(k) => stretch(band, k),
                None => zero_non_finite(band),
            };
        }
        bad
    }

    /// Checks that an image has the bands this normaliser was fitted on.
    pub fn check(&self, img: &Cutout) -> Result<(), BandMismatch> {
        if !self.is_identity() && img.bands() != self.sigma.len() {
            return Err(BandMismatch { got: img.bands(), expected: self.bands.clone() });
        }
        Ok(())
    }

    /// Writes `normalisation.json` atomically.
    pub fn save(&self, path: &Path) -> Result<(), NormaliseError> {
        let text = serde_json::to_string_pretty(self).expect("serialisable");
        tidalscope_io::atomic::write(path, text.as_bytes())?;
        Ok(())
    }

    /// Reads `normalisation.json`.
    pub fn load(path: &Path) -> Result<Self, NormaliseError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NormaliseError::File { path: path.display().to_string(), message: e.to_string() })?;
        serde_json::from_str(&text)
            .map_err(|e| NormaliseError::File { path: path.display().to_string(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mad_sigma_of_gaussian_noise_is_its_sigma() {
        let mut rng = tidalscope_core::Rng::new(4);
        let mut v: Vec<f32> = (0..100_000).map(|_| (3.0 * rng.normal() + 10.0) as f32).collect();
        let s = mad_sigma(&mut v).unwrap();
        assert!((s / 3.0 - 1.0).abs() < 0.02, "{s}");
    }

    #[test]
    fn asinh_normalisation_and_the_non_finite_rule() {
        let n = Normaliser::new(vec!["g".into(), "r".into()], vec![1.0, 2.0], "test");
        let mut img = Cutout::from_chw(2, 1, 2, vec![3.0, f32::NAN, 6.0, f32::INFINITY]).unwrap();
        assert_eq!(n.apply(&mut img), 2);
        assert_eq!(img.data(), &[1f32.asinh(), 0.0, 1f32.asinh(), 0.0]);
        assert!(img.data().iter().all(|v| v.is_finite()));
        let mut same = Cutout::from_chw(1, 1, 2, vec![0.5, f32::NAN]).unwrap();
        assert_eq!(Normaliser::none(vec!["x".into()]).apply(&mut same), 1);
        assert_eq!(same.data(), &[0.5, 0.0]);
    }

    #[test]
    fn saved_normaliser_reloads_identically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("normalisation.json");
        let n = Normaliser::new(vec!["g".into()], vec![0.0123], "unit test");
        n.save(&p).unwrap();
        assert_eq!(Normaliser::load(&p).unwrap(), n);
    }
}

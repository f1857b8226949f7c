//! What every image goes through before a model sees it, stored with each
//! trained model so inference repeats it exactly: optional k×k binning,
//! the asinh normalisation, and the view size the model was trained on.

use crate::normalise::Normaliser;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tidalscope_core::Cutout;

/// Binning, normalisation and crop of a model's inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Pixels averaged in k×k blocks before anything else (1 = none).
    /// Binning by 2 quarters the compute and doubles the S/N per pixel of
    /// extended features, at the cost of resolution.
    pub bin: usize,
    /// Side of the (centre or random) crop fed to the network, in binned
    /// pixels.
    pub crop: usize,
    /// Normalisation (σ_b measured after binning).
    pub normalisation: Normaliser,
}

/// Errors of preprocessing.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The image does not fit the model.
    #[error("{0}")]
    Mismatch(String),
    /// The image's bands are not the model's.
    #[error(transparent)]
    Bands(#[from] crate::normalise::BandMismatch),
    /// The stored file is unreadable.
    #[error("{path}: {message}")]
    File {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] tidalscope_io::Error),
    /// A band holds no finite pixel: nothing in it can be measured, and a
    /// model fed zeros there would give a made-up score.
    #[error("band {band} has no finite pixel (all NaN or infinite)")]
    EmptyBand {
        /// The band's name.
        band: String,
    },
}

/// Averages `k×k` blocks (a trailing partial block is dropped). Non-finite
/// pixels are left out of their block's mean; a block with none finite is NaN.
pub fn bin(img: &Cutout, k: usize) -> Cutout {
    if k <= 1 {
        return img.clone();
    }
    let (h, w) = (img.height() / k, img.width() / k);
    let mut out = Cutout::zeros(img.bands(), h, w);
    let src_w = img.width();
    for b in 0..img.bands() {
        let src = img.band(b);
        let dst = out.band_mut(b);
        for y in 0..h {
            for x in 0..w {
                let (mut s, mut n) = (0.0f32, 0u32);
                for dy in 0..k {
                    for dx in 0..k {
                        let v = src[(y * k + dy) * src_w + x * k + dx];
                        if v.is_finite() {
                            s += v;
                            n += 1;
                        }
                    }
                }
                dst[y * w + x] = if n > 0 { s / n as f32 } else { f32::NAN };
            }
        }
    }
    out
}

impl Preprocess {
    /// Bins and normalises an image, checking it fits the model. Returns
    /// the image and how many of the given image's pixels were not finite
    /// (NaN, ±inf): the rule is that they are left out of binning and are 0
    /// after normalisation. An image with a band that has no finite pixel
    /// at all is refused ([`PreprocessError::EmptyBand`]).
    pub fn apply(&self, img: &Cutout) -> Result<(Cutout, usize), PreprocessError> {
        self.normalisation.check(img)?;
        let mut non_finite = 0;
        for b in 0..img.bands() {
            let band = img.band(b);
            let n = band.iter().filter(|v| !v.is_finite()).count();
            if n == band.len() {
                let name = self.normalisation.bands.get(b).cloned().unwrap_or_else(|| format!("{}", b + 1));
                return Err(PreprocessError::EmptyBand { band: name });
            }
            non_finite += n;
        }
        let mut b = bin(img, self.bin);
        if b.height() < self.crop || b.width() < self.crop {
            return Err(PreprocessError::Mismatch(format!(
                "image of {}×{} pixels ({}×{} after binning by {}) is smaller than the model's {}×{} input",
                img.width(),
                img.height(),
                b.width(),
                b.height(),
                self.bin,
                self.crop,
                self.crop
            )));
        }
        self.normalisation.apply(&mut b);
        Ok((b, non_finite))
    }

    /// Writes `preprocess.json`.
    pub fn save(&self, path: &Path) -> Result<(), PreprocessError> {
        tidalscope_io::atomic::write(path, serde_json::to_string_pretty(self).expect("serialisable").as_bytes())?;
        Ok(())
    }

    /// Reads `preprocess.json`.
    pub fn load(path: &Path) -> Result<Self, PreprocessError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PreprocessError::File { path: path.display().to_string(), message: e.to_string() })?;
        serde_json::from_str(&text)
            .map_err(|e| PreprocessError::File { path: path.display().to_string(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binning_averages_blocks_and_skips_nan() {
        let img = Cutout::from_chw(1, 2, 4, vec![1.0, 3.0, 5.0, f32::NAN, 1.0, 3.0, 7.0, 9.0]).unwrap();
        let b = bin(&img, 2);
        assert_eq!(b.shape(), [1, 1, 2]);
        assert_eq!(b.data(), &[2.0, 7.0]);
    }

    #[test]
    fn images_smaller_than_the_input_are_refused() {
        let p = Preprocess { bin: 2, crop: 48, normalisation: Normaliser::none(vec!["x".into()]) };
        let err = p.apply(&Cutout::zeros(1, 64, 64)).unwrap_err().to_string();
        assert!(err.contains("32×32 after binning by 2") && err.contains("48×48"), "{err}");
        let wrong =
            Preprocess { normalisation: Normaliser::new(vec!["g".into(), "r".into()], vec![1.0, 1.0], "t"), ..p };
        let err = wrong.apply(&Cutout::zeros(5, 128, 128)).unwrap_err().to_string();
        assert!(err.contains("5 bands") && err.contains("expects 2"), "{err}");
    }

    #[test]
    fn non_finite_pixels_are_counted_and_an_empty_band_is_refused() {
        let p = Preprocess {
            bin: 2,
            crop: 2,
            normalisation: Normaliser::new(vec!["g".into(), "r".into()], vec![1.0; 2], "t"),
        };
        let mut img = Cutout::zeros(2, 4, 4);
        img.band_mut(0)[..3].fill(f32::NAN);
        img.band_mut(1)[5] = f32::INFINITY;
        let (out, bad) = p.apply(&img).unwrap();
        assert_eq!(bad, 4, "counted on the image as given, before binning");
        assert!(out.data().iter().all(|v| v.is_finite()));
        img.band_mut(1).fill(f32::NAN);
        let err = p.apply(&img).unwrap_err();
        assert!(matches!(&err, PreprocessError::EmptyBand { band } if band == "r"), "{err}");
        assert_eq!(err.to_string(), "band r has no finite pixel (all NaN or infinite)");
    }
}

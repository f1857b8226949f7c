//! The spread of an encoder's representations over unlabelled images
//! (`representation.json` in the encoder folder): the covariance spectrum
//! the linear probe whitens with (see `tidalscope_eval::whiten`).
//!
//! `pretrain` measures it on up to [`MAX_OBJECTS`] of its own images once
//! training ends. An encoder folder without it (imported from Keras, or
//! written before it existed) gets it measured by the probe on the
//! training data's images that are not in its validation or test split,
//! labelled or not: labels are never read.

use crate::labelled;
use crate::{Result, TrainError};
use burn::prelude::Device;
use std::path::Path;
use tidalscope_core::Cutout;
use tidalscope_data::preprocess::Preprocess;
use tidalscope_data::split::ObjectRef;
use tidalscope_eval::whiten::Spectrum;
use tidalscope_io::source::Source;
use tidalscope_model::encoder::Encoder;
use tidalscope_model::infer::Predictor;

/// File name in the encoder folder.
pub const FILE: &str = "representation.json";

/// The most images measured: a 128×128 covariance is well estimated from
/// a few thousand, and more would only cost time at the paper's size.
pub const MAX_OBJECTS: usize = 4096;

/// Images decoded and embedded together.
const PART: usize = 512;

/// At most `max` of `objects`, evenly spaced over them (deterministic).
pub fn evenly(objects: &[ObjectRef], max: usize) -> Vec<ObjectRef> {
    if objects.len() <= max {
        return objects.to_vec();
    }
    (0..max).map(|k| objects[k * objects.len() / max]).collect()
}

/// Measures the spectrum of `encoder`'s representations of `objects`
/// (at most [`MAX_OBJECTS`] of them, evenly spaced).
pub fn measure(
    encoder: &Encoder,
    preprocess: &Preprocess,
    sources: &[&dyn Source],
    objects: &[ObjectRef],
    device: &Device,
) -> Result<Spectrum> {
    let pool = evenly(objects, MAX_OBJECTS);
    let predictor = Predictor::encoder(encoder, preprocess.crop, device);
    let mut rows = Vec::new();
    let mut embedded = 0;
    for part in pool.chunks(PART) {
        let loaded = labelled::load(sources, part, preprocess)?;
        let images: Vec<&Cutout> = part.iter().filter_map(|o| loaded.get(o).map(|l| &l.image)).collect();
        rows.extend(predictor.embed(&images)?);
        embedded += images.len();
    }
    let dim = rows.len() / embedded.max(1);
    Spectrum::fit(&rows, dim).map_err(|e| TrainError::Other(format!("measuring the representations' spread: {e}")))
}

/// Writes `spectrum` into the encoder folder `dir` (atomically).
pub fn save(dir: &Path, spectrum: &Spectrum) -> Result<()> {
    let path = dir.join(FILE);
    let text = serde_json::to_string(spectrum).map_err(|e| TrainError::Other(format!("{}: {e}", path.display())))?;
    tidalscope_io::atomic::write(&path, text.as_bytes())?;
    Ok(())
}

/// The spectrum of the encoder folder `dir`, or `None` when it has none.
/// A file that cannot be read, or whose numbers disagree with each other
/// or with the encoder's `dim`, is an error naming it.
pub fn load(dir: &Path, dim: usize) -> Result<Option<Spectrum>> {
    let path = dir.join(FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let bad = |m: String| TrainError::Other(format!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(&path).map_err(|e| tidalscope_io::Error::io(&path, e))?;
    let s: Spectrum = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    s.validate().map_err(|e| bad(e.to_string()))?;
    if s.dim() != dim {
        return Err(bad(format!("a spectrum of {}-number representations, but the encoder gives {dim}", s.dim())));
    }
    Ok(Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spectrum_reads_back_and_one_of_the_wrong_size_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), 3).unwrap().is_none(), "no file: no spectrum");
        let rows: Vec<f32> = (0..30).map(|k| ((k * 7 % 11) as f32).sin()).collect();
        let s = Spectrum::fit(&rows, 3).unwrap();
        save(dir.path(), &s).unwrap();
        // JSON may move the last bit of a number; nothing more.
        let back = load(dir.path(), 3).unwrap().expect("the saved spectrum");
        let flat = |s: &Spectrum| {
            let mut v = vec![s.objects as f64];
            v.extend(s.mean.iter().chain(&s.eigenvalues).chain(s.eigenvectors.iter().flatten()));
            v
        };
        let (a, b) = (flat(&back), flat(&s));
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-14 * y.abs().max(1.0)), "{back:?} vs {s:?}");
        let err = load(dir.path(), 128).unwrap_err().to_string();
        assert!(err.contains(FILE) && err.contains("encoder gives 128"), "{err}");
    }

    #[test]
    fn at_most_the_asked_number_of_objects_are_picked_evenly() {
        let objects: Vec<ObjectRef> = (0..10).map(|index| ObjectRef { source: 0, index, label: 0 }).collect();
        assert_eq!(evenly(&objects, 20).len(), 10);
        let picked: Vec<usize> = evenly(&objects, 4).iter().map(|o| o.index).collect();
        assert_eq!(picked, [0, 2, 5, 7]);
    }
}

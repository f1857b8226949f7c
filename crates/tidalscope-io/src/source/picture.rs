//! PNG and JPEG pictures: 8-bit RGB as three bands.

use super::{Pixels, Record, Source, SourceInfo};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tidalscope_core::Cutout;

/// Reads a PNG or JPEG as a 3-band cutout (R, G, B; values 0–255), rows
/// flipped so that row 0 is the bottom, as in FITS.
pub fn load(path: &Path) -> Result<Cutout> {
    let img = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .decode()
        .map_err(|e| Error::format(path, format!("cannot decode picture: {e}")))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = Cutout::zeros(3, h, w);
    let raw = img.into_raw();
    for b in 0..3 {
        let plane = out.band_mut(b);
        for y in 0..h {
            let src_row = h - 1 - y;
            for x in 0..w {
                plane[y * w + x] = raw[(src_row * w + x) * 3 + b] as f32;
            }
        }
    }
    Ok(out)
}

/// One picture file.
pub struct PictureSource {
    info: SourceInfo,
    path: PathBuf,
}

impl PictureSource {
    /// Opens a PNG/JPEG file (decoding it once to learn its size).
    pub fn open(path: &Path) -> Result<Self> {
        let img = load(path)?;
        let info = SourceInfo {
            path: path.to_path_buf(),
            format: super::Format::Picture,
            len: 1,
            bands: vec!["R".into(), "G".into(), "B".into()],
            shape: Some(img.shape()),
            dtype: "uint8".into(),
            meta_columns: Vec::new(),
            labelled: false,
        };
        Ok(Self { info, path: path.to_path_buf() })
    }
}

impl Source for PictureSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn records(&self, start: usize) -> Result<Box<dyn Iterator<Item = Result<Record>> + Send + '_>> {
        let path = self.path.clone();
        let id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Box::new((start..1).map(move |i| {
            let path = path.clone();
            Ok(Record {
                index: i,
                id: id.clone(),
                label: None,
                meta: Vec::new(),
                file: path.display().to_string(),
                pixels: Pixels::Deferred(Box::new(move || load(&path))),
            })
        })))
    }
}

//! PNG output of 8-bit RGB images.

use crate::atomic::AtomicFile;
use crate::{Error, Result};
use std::path::Path;

/// Writes a `w × h` RGB8 image (row-major, top row first) atomically.
pub fn write_rgb(path: &Path, w: usize, h: usize, rgb: &[u8]) -> Result<()> {
    if rgb.len() != w * h * 3 {
        return Err(Error::format(path, format!("RGB buffer of {} bytes for a {w}×{h} image", rgb.len())));
    }
    let mut file = AtomicFile::create(path)?;
    {
        let mut enc = ::png::Encoder::new(&mut file, w as u32, h as u32);
        enc.set_color(::png::ColorType::Rgb);
        enc.set_depth(::png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| Error::format(path, e.to_string()))?;
        writer.write_image_data(rgb).map_err(|e| Error::format(path, e.to_string()))?;
        writer.finish().map_err(|e| Error::format(path, e.to_string()))?;
    }
    file.commit()
}

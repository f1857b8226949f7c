//! PNG output of 8-bit RGB images.

use crate::atomic::AtomicFile;
use crate::{Error, Result};
use std::path::Path;

/// Writes a `w × h` RGB8 image (row-major, top row first) atomically.
pub fn write_rgb(path: &Path, w: usize, h: usize, rgb: &[u8]) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    encode_into(&mut file, path, w, h, rgb, ::png::Compression::Balanced)?;
    file.commit()
}

/// Encodes a `w × h` RGB8 image (row-major, top row first) as PNG bytes,
/// e.g. for a web page; `name` only labels errors.
pub fn encode_rgb(name: &Path, w: usize, h: usize, rgb: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(rgb.len() / 2 + 1024);
    // Cutouts are small and shown at once: speed over size.
    encode_into(&mut out, name, w, h, rgb, ::png::Compression::Fast)?;
    Ok(out)
}

fn encode_into(
    sink: &mut impl std::io::Write,
    path: &Path,
    w: usize,
    h: usize,
    rgb: &[u8],
    compression: ::png::Compression,
) -> Result<()> {
    if rgb.len() != w * h * 3 {
        return Err(Error::format(path, format!("RGB buffer of {} bytes for a {w}×{h} image", rgb.len())));
    }
    let mut enc = ::png::Encoder::new(sink, w as u32, h as u32);
    enc.set_color(::png::ColorType::Rgb);
    enc.set_depth(::png::BitDepth::Eight);
    enc.set_compression(compression);
    let mut writer = enc.write_header().map_err(|e| Error::format(path, e.to_string()))?;
    writer.write_image_data(rgb).map_err(|e| Error::format(path, e.to_string()))?;
    writer.finish().map_err(|e| Error::format(path, e.to_string()))
}

//! Plots written as PNG: mosaics of cutouts with captions (and, later, line
//! plots). Text uses the embedded DejaVu Sans font, so no system fonts are
//! needed.

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::Once;

/// Font family name under which the embedded font is registered.
pub const FONT: &str = "sans-serif";

/// Registers the embedded font with plotters (once per process).
pub fn init_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font is a valid TTF; registration cannot fail.
        let _ = register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// Errors of plotting.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Drawing failed (plotters' error, as text).
    #[error("{path}: drawing failed: {message}")]
    Draw {
        /// Output file.
        path: String,
        /// What plotters said.
        message: String,
    },
    /// Writing the PNG failed.
    #[error(transparent)]
    Io(#[from] tidalscope_io::Error),
}

/// One image of a mosaic.
#[derive(Debug, Clone)]
pub struct Tile {
    /// RGB8 pixels, top row first.
    pub rgb: Vec<u8>,
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
    /// Caption lines under the image.
    pub caption: Vec<String>,
    /// Frame colour (e.g. by label).
    pub frame: [u8; 3],
}

/// Writes a grid of tiles with captions and a title as a PNG. Small tiles
/// are enlarged by an integer factor (nearest neighbour: pixels stay
/// pixels) so features remain visible.
pub fn mosaic(path: &Path, tiles: &[Tile], columns: usize, title: &str) -> Result<(), PlotError> {
    init_fonts();
    let columns = columns.clamp(1, tiles.len().max(1));
    let rows = tiles.len().div_ceil(columns).max(1);
    let tw = tiles.iter().map(|t| t.w).max().unwrap_or(64);
    let th = tiles.iter().map(|t| t.h).max().unwrap_or(64);
    let zoom = 200usize.div_ceil(tw).max(1);
    let lines = tiles.iter().map(|t| t.caption.len()).max().unwrap_or(0);
    let (pad, line_h, title_h) = (6usize, 16usize, 34usize);
    let cell_w = tw * zoom + 2 * pad;
    let cell_h = th * zoom + 2 * pad + lines * line_h + 4;
    let (w, h) = (columns * cell_w, title_h + rows * cell_h);
    let mut buf = vec![24u8; w * h * 3];
    let err = |e: &dyn std::fmt::Display| PlotError::Draw { path: path.display().to_string(), message: e.to_string() };
    for (k, t) in tiles.iter().enumerate() {
        let (cx, cy) = ((k % columns) * cell_w + pad, title_h + (k / columns) * cell_h + pad);
        // frame
        for y in cy.saturating_sub(2)..(cy + t.h * zoom + 2).min(h) {
            for x in cx.saturating_sub(2)..(cx + t.w * zoom + 2).min(w) {
                buf[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&t.frame);
            }
        }
        for y in 0..t.h * zoom {
            for x in 0..t.w * zoom {
                let s = ((y / zoom) * t.w + x / zoom) * 3;
                let d = ((cy + y) * w + cx + x) * 3;
                buf[d..d + 3].copy_from_slice(&t.rgb[s..s + 3]);
            }
        }
    }
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32)).into_drawing_area();
        let title_style = (FONT, 22).into_font().style(FontStyle::Bold).color(&WHITE);
        root.draw(&Text::new(title.to_string(), (pad as i32, 6), title_style)).map_err(|e| err(&e))?;
        let style = (FONT, 13).into_font().color(&RGBColor(225, 225, 225));
        for (k, t) in tiles.iter().enumerate() {
            let (cx, cy) = ((k % columns) * cell_w + pad, title_h + (k / columns) * cell_h + pad + th * zoom + 4);
            for (l, line) in t.caption.iter().enumerate() {
                root.draw(&Text::new(line.clone(), (cx as i32, (cy + l * line_h) as i32), style.clone()))
                    .map_err(|e| err(&e))?;
            }
        }
        root.present().map_err(|e| err(&e))?;
    }
    tidalscope_io::png::write_rgb(path, w, h, &buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mosaic_writes_a_png_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.png");
        let tile = Tile {
            rgb: vec![200; 10 * 10 * 3],
            w: 10,
            h: 10,
            caption: vec!["id 0".into(), "tidal".into()],
            frame: [255, 0, 0],
        };
        mosaic(&p, &[tile.clone(), tile.clone(), tile], 2, "test").unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        // IHDR width/height: 2 columns × (10·20 + 12) = 424 wide
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        assert_eq!(w, 424);
    }
}

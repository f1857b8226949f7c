//! FITS sources: one image, a cube (bands on an axis) or a stack of cubes
//! (NAXIS = 4, objects on the last axis).

use super::{default_bands, Layout, OpenOptions, Pixels, Record, Source, SourceInfo};
use crate::fits::{pixel_hdu, read_values, scan, HduInfo, Value};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tidalscope_core::Cutout;

/// A FITS file of one or more images.
pub struct FitsSource {
    info: SourceInfo,
    path: PathBuf,
    hdu: HduInfo,
    dims: [usize; 3],
    layout: Layout,
}

/// `(objects, dims [a,b,c] in C order, layout)` of an image HDU.
fn geometry(path: &Path, hdu: &HduInfo, layout: Layout) -> Result<(usize, [usize; 3], Layout)> {
    let a = &hdu.axes;
    match a.len() {
        2 => Ok((1, [1, a[1], a[0]], Layout::Chw)),
        3 => {
            let dims = [a[2], a[1], a[0]];
            Ok((1, dims, fits_layout(layout, dims)))
        }
        4 => {
            let dims = [a[2], a[1], a[0]];
            Ok((a[3], dims, fits_layout(layout, dims)))
        }
        n => Err(Error::format(
            path,
            format!("HDU {}: NAXIS = {n}; expected an image (2), a cube (3) or a stack of cubes (4)", hdu.index),
        )),
    }
}

/// FITS cubes keep bands on NAXIS3 (the slowest axis, first in C order):
/// `auto` means that, unless only NAXIS1 is small enough to be bands.
fn fits_layout(layout: Layout, dims: [usize; 3]) -> Layout {
    match layout {
        Layout::Auto if dims[0] > 16 && dims[2] <= 16 => Layout::Hwc,
        Layout::Auto => Layout::Chw,
        l => l,
    }
}

/// Band names from `BAND1`, `BAND2`, … cards (as tidalscope writes them),
/// else defaults.
fn band_names(hdu: &HduInfo, n: usize) -> Vec<String> {
    let named: Vec<String> =
        (1..=n).filter_map(|i| hdu.header.get(&format!("BAND{i}")).and_then(Value::as_str).map(String::from)).collect();
    if named.len() == n {
        named
    } else if n == 1 {
        vec![hdu.header.get("FILTER").and_then(Value::as_str).unwrap_or("b0").to_string()]
    } else {
        default_bands(n)
    }
}

impl FitsSource {
    /// Opens a FITS file.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let hdus = scan(path)?;
        let hdu = pixel_hdu(path, &hdus)?;
        let (n, dims, layout) = geometry(path, &hdu, opts.layout)?;
        let (b, h, w) = layout.bhw(dims);
        let info = SourceInfo {
            path: path.to_path_buf(),
            format: super::Format::Fits,
            len: n,
            bands: band_names(&hdu, b),
            shape: Some([b, h, w]),
            dtype: match &hdu.compressed {
                Some(t) => format!("BITPIX {}, tile-compressed {}", hdu.bitpix, t.method()),
                None => format!("BITPIX {}", hdu.bitpix),
            },
            meta_columns: Vec::new(),
            labelled: false,
        };
        Ok(Self { info, path: path.to_path_buf(), hdu, dims, layout })
    }
}

impl Source for FitsSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn records(&self, start: usize) -> Result<Box<dyn Iterator<Item = Result<Record>> + Send + '_>> {
        let per: usize = self.dims.iter().product();
        let single = self.info.len == 1;
        let stem = self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Box::new((start..self.info.len).map(move |i| {
            let values = read_values(&self.path, &self.hdu, i * per, per)?;
            let image = self.layout.cutout(self.dims, values).map_err(|e| Error::format(&self.path, e.to_string()));
            Ok(Record {
                index: i,
                id: if single { stem.clone() } else { i.to_string() },
                label: None,
                meta: Vec::new(),
                file: self.path.display().to_string(),
                pixels: Pixels::Ready(image),
            })
        })))
    }
}

/// Reads the one image of a FITS file: a single band (`[1,H,W]`) or a cube.
pub fn load_image(path: &Path, layout: Layout) -> Result<Cutout> {
    let hdus = scan(path)?;
    let hdu = pixel_hdu(path, &hdus)?;
    let (n, dims, layout) = geometry(path, &hdu, layout)?;
    if n != 1 {
        return Err(Error::format(path, format!("holds {n} images; one was expected")));
    }
    let values = read_values(path, &hdu, 0, hdu.len())?;
    layout.cutout(dims, values).map_err(|e| Error::format(path, e.to_string()))
}

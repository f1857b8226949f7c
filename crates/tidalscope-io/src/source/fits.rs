//! FITS sources: one image, a cube (bands on an axis), a stack of cubes
//! (NAXIS = 4, objects on the last axis), or one object's bands as image
//! extensions of one shape (one band per HDU).

use super::{default_bands, Layout, OpenOptions, Pixels, Record, Source, SourceInfo};
use crate::fits::{pixel_hdu, read_values, scan, HduInfo, Value};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tidalscope_core::Cutout;

/// A FITS file of one or more images.
pub struct FitsSource {
    info: SourceInfo,
    path: PathBuf,
    /// The HDU holding the pixels, or one 2-D HDU per band.
    hdus: Vec<HduInfo>,
    dims: [usize; 3],
    layout: Layout,
    /// The objects' ids, labels and metadata from an `OBJECTS` table.
    objects: Option<Objects>,
}

/// What an `OBJECTS` table (as `convert` writes one after a stack) says
/// of each image.
struct Objects {
    ids: Vec<String>,
    labels: Vec<Option<u8>>,
    meta: Vec<Vec<String>>,
}

/// The `OBJECTS` table of a file of `n` images, if it has one of `n` rows:
/// ids from its `id` (or `object_id`) column, labels from `label`, the
/// other columns as metadata.
fn objects(path: &Path, hdus: &[HduInfo], n: usize) -> Result<Option<(Objects, Vec<String>)>> {
    let Some(h) = hdus.iter().find(|h| crate::fits::is_table(h) && h.name() == Some(crate::fits::OBJECTS)) else {
        return Ok(None);
    };
    let t = crate::fits_table::read_hdu_text(path, h)?;
    if t.rows.len() != n {
        return Err(Error::format(
            path,
            format!("HDU {} ({}): {} rows for {n} images", h.index, crate::fits::OBJECTS, t.rows.len()),
        ));
    }
    let catalog = super::catalog::Catalog::from_table(path, t);
    let roles = catalog.roles()?;
    let names = roles.meta.iter().map(|&c| catalog.columns[c].clone()).collect();
    let ids = catalog.rows.iter().map(|r| r.fields[roles.id].clone()).collect();
    let meta = catalog.rows.iter().map(|r| roles.meta.iter().map(|&c| r.fields[c].clone()).collect()).collect();
    Ok(Some((Objects { ids, labels: roles.labels, meta }, names)))
}

/// Words of the EXTNAMEs of planes that ride along a science image (masks,
/// weights, noise, PSFs): never taken for a band.
const ANCILLARY: [&str; 21] = [
    "MASK", "MSK", "BITMASK", "FLAGS", "DQ", "VARIANCE", "VAR", "WEIGHT", "WGT", "WHT", "INVVAR", "IVAR", "ERR",
    "ERROR", "SIGMA", "NOISE", "RMS", "PSF", "EXPMAP", "EXPOSURE", "CTX",
];

/// The HDUs holding a file's pixels: the one [`pixel_hdu`] picks (the HSC
/// and LSST `IMAGE`, or the first image with data), unless the file holds
/// no `IMAGE` HDU and two or more 2-D images of one shape that are not
/// masks, weights or the like (by EXTNAME): then each is a band, in file
/// order (as a cube's planes are).
fn band_hdus(path: &Path, hdus: &[HduInfo]) -> Result<Vec<HduInfo>> {
    let with_data = |h: &&HduInfo| h.is_image && !h.is_empty();
    // By any word of the name: `INVVAR_G` and `WHT-R` are weights too.
    let ancillary = |h: &HduInfo| {
        h.name().is_some_and(|n| {
            n.to_ascii_uppercase().split(|c: char| !c.is_ascii_alphanumeric()).any(|w| ANCILLARY.contains(&w))
        })
    };
    let planes: Vec<&HduInfo> = hdus.iter().filter(with_data).filter(|h| !ancillary(h)).collect();
    let named_image = hdus.iter().filter(with_data).any(|h| h.name() == Some("IMAGE"));
    let one_shape = planes.iter().all(|h| h.axes.len() == 2 && h.axes == planes[0].axes);
    if named_image || planes.len() < 2 || !one_shape {
        let mut hdu = pixel_hdu(path, hdus)?;
        // The primary header's filter stands for an extension's that has
        // none (INHERIT, as the HSC cutouts and LSST exposures use it).
        if hdu.index > 0 && filter_name(&hdu).is_none() {
            if let Some(v) = hdus.first().and_then(filter_name) {
                hdu.header.push("FILTER", Value::Str(v.to_string()), "from the primary header");
            }
        }
        return Ok(vec![hdu]);
    }
    Ok(planes.into_iter().cloned().collect())
}

/// An HDU's filter: its FILTER card, else BAND (LSST's).
fn filter_name(hdu: &HduInfo) -> Option<&str> {
    ["FILTER", "BAND"].into_iter().find_map(|k| hdu.header.get(k).and_then(Value::as_str))
}

/// The band an HDU holds by its name: EXTNAME, else its filter.
fn hdu_band_name(hdu: &HduInfo) -> Option<String> {
    hdu.name().or_else(|| filter_name(hdu)).map(|s| s.trim().to_string())
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
/// else `BAND0`, `BAND1`, … (the Legacy Surveys' cutouts), else a `BANDS`
/// string of one letter per band (`'grz'`, theirs too), else FILTER (or
/// BAND) for one band, else defaults.
fn band_names(hdu: &HduInfo, n: usize) -> Vec<String> {
    let cards = |from: usize| -> Option<Vec<String>> {
        (from..from + n)
            .map(|i| hdu.header.get(&format!("BAND{i}")).and_then(Value::as_str).map(String::from))
            .collect()
    };
    let letters = hdu
        .header
        .get("BANDS")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|b| b.chars().count() == n && b.chars().all(|c| c.is_ascii_alphabetic()))
        .map(|b| b.chars().map(String::from).collect());
    if let Some(named) = cards(1).or_else(|| cards(0)).or(letters) {
        named
    } else if n == 1 {
        vec![filter_name(hdu).unwrap_or("b0").to_string()]
    } else {
        default_bands(n)
    }
}

/// `(objects, dims, layout, band names)` of a file's pixel HDUs.
fn layout_of(path: &Path, hdus: &[HduInfo], layout: Layout) -> Result<(usize, [usize; 3], Layout, Vec<String>)> {
    if let [hdu] = hdus {
        let (n, dims, layout) = geometry(path, hdu, layout)?;
        let names = band_names(hdu, layout.bhw(dims).0);
        return Ok((n, dims, layout, names));
    }
    let a = &hdus[0].axes;
    // Names only where every HDU has one and no two share it.
    let names: Vec<String> = hdus
        .iter()
        .map(hdu_band_name)
        .collect::<Option<Vec<_>>>()
        .filter(|n| n.iter().collect::<std::collections::HashSet<_>>().len() == n.len())
        .unwrap_or_else(|| default_bands(hdus.len()));
    Ok((1, [hdus.len(), a[1], a[0]], Layout::Chw, names))
}

/// Every value of object `i` (`per` values) of the pixel HDUs, in C order.
fn object_values(path: &Path, hdus: &[HduInfo], i: usize, per: usize) -> Result<Vec<f32>> {
    match hdus {
        [hdu] => read_values(path, hdu, i * per, per),
        _ => {
            let mut values = Vec::with_capacity(per);
            for h in hdus {
                values.extend(read_values(path, h, 0, h.len())?);
            }
            Ok(values)
        }
    }
}

impl FitsSource {
    /// Opens a FITS file.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let all = scan(path)?;
        let hdus = band_hdus(path, &all)?;
        let (n, dims, layout, bands) = layout_of(path, &hdus, opts.layout)?;
        let objects = objects(path, &all, n)?;
        let (b, h, w) = layout.bhw(dims);
        let first = &hdus[0];
        let per_hdu = if hdus.len() > 1 { format!(", one band per HDU ({})", hdus.len()) } else { String::new() };
        let info = SourceInfo {
            path: path.to_path_buf(),
            format: super::Format::Fits,
            len: n,
            bands,
            shape: Some([b, h, w]),
            dtype: match &first.compressed {
                Some(t) => format!("BITPIX {}, tile-compressed {}{per_hdu}", first.bitpix, t.method()),
                None => format!("BITPIX {}{per_hdu}", first.bitpix),
            },
            meta_columns: objects.as_ref().map(|(_, names)| names.clone()).unwrap_or_default(),
            labelled: objects.as_ref().is_some_and(|(o, _)| o.labels.iter().any(Option::is_some)),
        };
        let objects = objects.map(|(o, _)| o);
        Ok(Self { info, path: path.to_path_buf(), hdus, dims, layout, objects })
    }
}

impl Source for FitsSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn labels(&self) -> Result<Vec<Option<u8>>> {
        Ok(match &self.objects {
            Some(o) => o.labels.clone(),
            None => vec![None; self.info.len],
        })
    }

    fn records(&self, start: usize) -> Result<Box<dyn Iterator<Item = Result<Record>> + Send + '_>> {
        let per: usize = self.dims.iter().product();
        let single = self.info.len == 1;
        // `a.fits.fz` (fpack) and `a.fits.gz` are object `a`, as `a.fits` is.
        let name = self.path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let l = name.to_ascii_lowercase();
        let name = [".fz", ".gz"].iter().find(|z| l.ends_with(*z)).map_or(&name[..], |z| &name[..name.len() - z.len()]);
        let stem = name.rsplit_once('.').map_or(name, |p| p.0).to_string();
        Ok(Box::new((start..self.info.len).map(move |i| {
            let values = object_values(&self.path, &self.hdus, i, per)?;
            let image = self.layout.cutout(self.dims, values).map_err(|e| Error::format(&self.path, e.to_string()));
            let (id, label, meta) = match &self.objects {
                Some(o) => (o.ids[i].clone(), o.labels[i], o.meta[i].clone()),
                None => (if single { stem.clone() } else { i.to_string() }, None, Vec::new()),
            };
            Ok(Record {
                index: i,
                id,
                label,
                meta,
                file: self.path.display().to_string(),
                pixels: Pixels::Ready(image),
            })
        })))
    }
}

/// Reads the one image of a FITS file: a single band (`[1,H,W]`) or a cube.
pub fn load_image(path: &Path, layout: Layout) -> Result<Cutout> {
    let hdus = band_hdus(path, &scan(path)?)?;
    let (n, dims, layout, _) = layout_of(path, &hdus, layout)?;
    if n != 1 {
        return Err(Error::format(path, format!("holds {n} images; one was expected")));
    }
    let values = object_values(path, &hdus, 0, dims.iter().product())?;
    layout.cutout(dims, values).map_err(|e| Error::format(path, e.to_string()))
}

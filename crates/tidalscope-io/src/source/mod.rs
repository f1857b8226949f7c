//! One abstraction over every input: a [`Source`] is a sequence of objects,
//! each a [`Record`] with an id, an optional label, metadata columns and a
//! float32 multi-band image in a known band order.
//!
//! [`open`] recognises a path by its content (an explicit [`Format`]
//! overrides):
//!
//! | path | format |
//! |---|---|
//! | folder with `snapshot.metadata` | tf.data `Dataset.save` ([`Format::TfData`]) |
//! | folder with `images.npy` and `catalog.csv` | what `simulate` writes: labelled ([`Format::Simulated`]) |
//! | folder with `catalog.csv` only, a `.csv` file or a Parquet (`PAR1`) file | catalogue of image files ([`Format::Catalog`]) |
//! | other folder | every FITS/PNG/JPEG/npy file in it, one object each ([`Format::Folder`]) |
//! | `\x93NUMPY` file | NumPy stack `[N,H,W,C]`, `[N,C,H,W]` or one image ([`Format::Npy`]) |
//! | zip file | `.npz` archive ([`Format::Npz`]) |
//! | `SIMPLE  =` file | FITS image, cube or stack ([`Format::Fits`]) |
//! | PNG/JPEG file | 8-bit RGB picture as 3 bands ([`Format::Picture`]) |
//! | catalogue with RA/Dec + [`OpenOptions::coadd`] | cutouts cut from coadd images ([`Format::Coadd`]) |
//!
//! Reading streams: records are produced one at a time, and images from
//! per-object files are decoded only when asked ([`Pixels::load`]), so a
//! caller can decode many in parallel.

mod catalog;
mod coadd;
mod fits;
mod npy;
mod picture;
mod tfdata;

use crate::{Error, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tidalscope_core::binning::Binned;
use tidalscope_core::Cutout;

pub use catalog::{Catalog, CatalogRow, Roles};
pub use coadd::{CoaddOptions, Tile};

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// tf.data `Dataset.save` folder.
    TfData,
    /// NumPy `.npy`.
    Npy,
    /// NumPy `.npz`.
    Npz,
    /// FITS image, cube or stack of cubes.
    Fits,
    /// PNG or JPEG.
    Picture,
    /// Catalogue CSV of image files.
    Catalog,
    /// A `simulate` output folder (images.npy + catalog.csv).
    Simulated,
    /// A folder of image files.
    Folder,
    /// A catalogue of sky positions cut from coadd images.
    Coadd,
}

impl Format {
    /// Name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::TfData => "tfdata",
            Format::Npy => "npy",
            Format::Npz => "npz",
            Format::Fits => "fits",
            Format::Picture => "picture",
            Format::Catalog => "catalog",
            Format::Simulated => "simulated",
            Format::Folder => "folder",
            Format::Coadd => "coadd",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "tfdata" | "tf" => Format::TfData,
            "npy" => Format::Npy,
            "npz" => Format::Npz,
            "fits" => Format::Fits,
            "picture" | "png" | "jpeg" | "jpg" => Format::Picture,
            "catalog" | "csv" | "parquet" => Format::Catalog,
            "simulated" | "sim" => Format::Simulated,
            "folder" => Format::Folder,
            "coadd" => Format::Coadd,
            _ => {
                return Err(format!(
                    "unknown format {s:?} (tfdata, npy, npz, fits, picture, catalog, simulated, folder, coadd)"
                ))
            }
        })
    }
}

/// Pixel order of arrays whose layout the file does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Guess: `[H,W,C]` unless only the first axis is small (≤ 16) enough
    /// to be bands.
    Auto,
    /// `[H, W, C]` (the reference's layout).
    Hwc,
    /// `[C, H, W]`.
    Chw,
}

impl fmt::Display for Layout {
    /// The name [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Auto => "auto",
            Layout::Hwc => "hwc",
            Layout::Chw => "chw",
        })
    }
}

impl FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Layout::Auto),
            "hwc" => Ok(Layout::Hwc),
            "chw" => Ok(Layout::Chw),
            _ => Err(format!("unknown layout {s:?} (auto, hwc, chw)")),
        }
    }
}

impl Layout {
    /// Resolves `Auto` for an image of dims `[a, b, c]`.
    pub fn resolve(self, dims: [usize; 3]) -> Layout {
        match self {
            // HWC (the reference's layout) unless only the first axis is
            // small enough to be bands.
            Layout::Auto => {
                if dims[2] > 16 && dims[0] <= 16 {
                    Layout::Chw
                } else {
                    Layout::Hwc
                }
            }
            l => l,
        }
    }

    /// `(bands, height, width)` of dims in this (resolved) layout.
    pub fn bhw(self, dims: [usize; 3]) -> (usize, usize, usize) {
        match self {
            Layout::Chw => (dims[0], dims[1], dims[2]),
            _ => (dims[2], dims[0], dims[1]),
        }
    }

    /// A cutout from values in this (resolved) layout.
    pub fn cutout(
        self,
        dims: [usize; 3],
        values: Vec<f32>,
    ) -> std::result::Result<Cutout, tidalscope_core::ShapeError> {
        match self {
            Layout::Chw => Cutout::from_chw(dims[0], dims[1], dims[2], values),
            _ => Cutout::from_hwc(dims[0], dims[1], dims[2], &values),
        }
    }
}

/// How to open a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOptions {
    /// Force a format instead of recognising it.
    pub format: Option<Format>,
    /// Pixel order of arrays.
    pub layout: Layout,
    /// tf.data/npz key holding the image.
    pub image_key: String,
    /// tf.data interleave cycle length (None: the CPU count, as TensorFlow).
    pub cycle_length: Option<usize>,
    /// A label given to every object (e.g. 1 for a folder of tidal galaxies),
    /// overriding any in the data.
    pub label: Option<u8>,
    /// Cut each catalogue object from these coadd images (the path is then
    /// a catalogue of RA/Dec).
    pub coadd: Option<CoaddOptions>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            format: None,
            layout: Layout::Auto,
            image_key: "image".into(),
            cycle_length: None,
            label: None,
            coadd: None,
        }
    }
}

/// What a source holds.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// Where it is.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Number of objects.
    pub len: usize,
    /// Band names in channel order.
    pub bands: Vec<String>,
    /// `[bands, height, width]` when every image has the same shape.
    pub shape: Option<[usize; 3]>,
    /// Element type on disk.
    pub dtype: String,
    /// Names of the metadata columns of each record.
    pub meta_columns: Vec<String>,
    /// True when records carry labels.
    pub labelled: bool,
}

/// An image, decoded or waiting to be.
#[non_exhaustive]
pub enum Pixels {
    /// Already decoded (or failed).
    Ready(Result<Cutout>),
    /// Decoded on demand, possibly on another thread.
    Deferred(Box<dyn FnOnce() -> Result<Cutout> + Send>),
    /// Decoded on demand by a reader that can also bin while it decodes.
    Decoder(Box<dyn Decode>),
}

/// A record's pixels, read and decoded on demand (possibly on another
/// thread), whole or binned.
pub trait Decode: Send {
    /// The whole image.
    fn cutout(self: Box<Self>) -> Result<Cutout>;
    /// The image averaged in `k`×`k` blocks, bit for bit what binning
    /// [`cutout`](Self::cutout) by `tidalscope_data::preprocess::bin` gives,
    /// where this reader can bin while decoding; otherwise the whole image.
    fn binned(self: Box<Self>, k: usize) -> Result<Loaded>;
}

/// An image as loaded for preprocessing.
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    /// Already averaged in blocks of the size asked for, with the unbinned
    /// image's shape `[bands, height, width]`.
    Binned(Binned, [usize; 3]),
    /// The whole image, for the caller to bin.
    Whole(Cutout),
}

impl Pixels {
    /// The image.
    pub fn load(self) -> Result<Cutout> {
        match self {
            Pixels::Ready(r) => r,
            Pixels::Deferred(f) => f(),
            Pixels::Decoder(d) => d.cutout(),
        }
    }

    /// The image for preprocessing that bins it by `k`: binned already
    /// where the reader bins while decoding (saving a pass over the whole
    /// image), whole otherwise.
    pub fn load_for_binning(self, k: usize) -> Result<Loaded> {
        match self {
            Pixels::Decoder(d) => d.binned(k),
            other => other.load().map(Loaded::Whole),
        }
    }
}

impl fmt::Debug for Pixels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pixels::Ready(Ok(c)) => write!(f, "Ready({:?})", c.shape()),
            Pixels::Ready(Err(e)) => write!(f, "Ready(Err({e}))"),
            Pixels::Deferred(_) => f.write_str("Deferred"),
            Pixels::Decoder(_) => f.write_str("Decoder"),
        }
    }
}

/// One object of a source.
#[derive(Debug)]
pub struct Record {
    /// Position in the source (0-based).
    pub index: usize,
    /// Identifier (catalogue id, tf.data id key, or the index).
    pub id: String,
    /// 0/1 label when known.
    pub label: Option<u8>,
    /// Metadata values, one per [`SourceInfo::meta_columns`].
    pub meta: Vec<String>,
    /// The file the pixels come from (for error reports).
    pub file: String,
    /// The image.
    pub pixels: Pixels,
}

/// A readable collection of objects.
pub trait Source: Send + Sync {
    /// What it holds.
    fn info(&self) -> &SourceInfo;

    /// Records in order, from index `start` on. The iterator ends early
    /// after an error that makes the rest unreadable (a corrupt stream); a
    /// bad object in a catalogue is reported in its record and the rest
    /// follow.
    fn records(&self, start: usize) -> Result<Box<dyn Iterator<Item = Result<Record>> + Send + '_>>;

    /// Every record's label, in order. Sources that know their labels
    /// without decoding images answer at once; the default reads every
    /// record (decoding tf.data and npy images on the way).
    fn labels(&self) -> Result<Vec<Option<u8>>> {
        self.records(0)?.map(|r| r.map(|r| r.label)).collect()
    }
}

/// Opens `path` as a source.
pub fn open(path: &Path, opts: &OpenOptions) -> Result<Box<dyn Source>> {
    let format = match (opts.format, &opts.coadd) {
        (None | Some(Format::Catalog) | Some(Format::Coadd), Some(_)) => Format::Coadd,
        (Some(f), Some(_)) => {
            return Err(Error::format(path, format!("with coadd images the data is a catalogue of RA/Dec, not {f}")))
        }
        (Some(f), None) => f,
        (None, None) => detect(path)?,
    };
    let mut source: Box<dyn Source> = match format {
        Format::TfData => Box::new(tfdata::TfDataSource::open(path, opts)?),
        Format::Npy => Box::new(npy::NpySource::open(path, opts)?),
        Format::Npz => Box::new(npy::NpySource::open_npz(path, opts)?),
        // A FITS file holding a table and no image is a catalogue.
        Format::Fits if crate::fits::is_table_only(path)? => Box::new(catalog::CatalogSource::open(path, opts)?),
        Format::Fits => Box::new(fits::FitsSource::open(path, opts)?),
        Format::Picture => Box::new(picture::PictureSource::open(path)?),
        Format::Catalog => Box::new(catalog::CatalogSource::open(path, opts)?),
        Format::Simulated => Box::new(catalog::SimulatedSource::open(path, opts)?),
        Format::Folder => Box::new(catalog::CatalogSource::folder(path, opts)?),
        Format::Coadd => match &opts.coadd {
            Some(c) => Box::new(coadd::CoaddSource::open(path, c)?),
            None => return Err(Error::format(path, "format coadd needs the coadd images (--coadd BAND=FILE,…)")),
        },
    };
    if let Some(label) = opts.label {
        let mut info = source.info().clone();
        info.labelled = true;
        source = Box::new(Relabelled { inner: source, label, info });
    }
    Ok(source)
}

/// Recognises a path's format by its content.
pub fn detect(path: &Path) -> Result<Format> {
    if path.is_dir() {
        return Ok(if path.join("snapshot.metadata").is_file() {
            Format::TfData
        } else if path.join("images.npy").is_file() && path.join("catalog.csv").is_file() {
            Format::Simulated
        } else if path.join("catalog.csv").is_file() {
            Format::Catalog
        } else {
            Format::Folder
        });
    }
    let mut head = [0u8; 16];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        f.read(&mut head).map_err(|e| Error::io(path, e))?
    };
    let head = &head[..n];
    Ok(if head.starts_with(b"\x93NUMPY") {
        Format::Npy
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Format::Npz
    } else if head.starts_with(b"SIMPLE  =") || gzipped_fits(path, head) {
        Format::Fits
    } else if head.starts_with(b"\x89PNG") || head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Format::Picture
    } else if head.starts_with(b"PAR1") {
        Format::Catalog
    } else if head.starts_with(b"BZh") || head.starts_with(&[0x1f, 0x8b]) {
        let how = if head.starts_with(b"BZh") {
            "bzip2: decompress it first (`bunzip2`)"
        } else {
            "gzip: decompress it first (`gunzip`; only FITS is read compressed so)"
        };
        return Err(Error::format(path, format!("compressed with {how}")));
    } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        || head.iter().all(|b| b.is_ascii()) && head.contains(&b',')
    {
        Format::Catalog
    } else {
        return Err(Error::format(path, "unrecognised input: not a tf.data folder, .npy, .npz, FITS, PNG/JPEG, catalogue CSV or Parquet (use --format to say which)"));
    })
}

/// Whether a file starting with `head` is a FITS file compressed whole
/// with gzip (`.fits.gz`), by its first inflated bytes.
fn gzipped_fits(path: &Path, head: &[u8]) -> bool {
    use std::io::Read;
    if !head.starts_with(&[0x1f, 0x8b]) {
        return false;
    }
    let mut inner = [0u8; 9];
    std::fs::File::open(path)
        .map(|f| flate2::read::GzDecoder::new(f).read_exact(&mut inner).is_ok() && &inner == b"SIMPLE  =")
        .unwrap_or(false)
}

/// The source's metadata column names as a table writes them after its
/// own columns `own`: a name already taken gets `_input` appended (then
/// `_input2`, `_input3`, …), so that every column is named once. A
/// catalogue that was itself scored brings `score` and
/// `nonfinite_fraction` along; a table with a name twice cannot be written
/// as FITS or Parquet, and pandas or astropy would rename it their own way.
pub fn meta_names(own: &[String], meta: &[String]) -> Vec<String> {
    let mut taken: std::collections::HashSet<String> = own.iter().cloned().collect();
    meta.iter()
        .map(|name| {
            let mut unique = name.clone();
            let mut k = 1;
            while taken.contains(&unique) {
                unique = if k == 1 { format!("{name}_input") } else { format!("{name}_input{k}") };
                k += 1;
            }
            taken.insert(unique.clone());
            unique
        })
        .collect()
}

/// Default band names for `n` channels: g,r,i,z,y for five, else b0, b1, …
pub fn default_bands(n: usize) -> Vec<String> {
    if n == 5 {
        ["g", "r", "i", "z", "y"].iter().map(|s| s.to_string()).collect()
    } else {
        (0..n).map(|i| format!("b{i}")).collect()
    }
}

/// A source whose every record gets the same label.
struct Relabelled {
    inner: Box<dyn Source>,
    label: u8,
    info: SourceInfo,
}

impl Source for Relabelled {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn labels(&self) -> Result<Vec<Option<u8>>> {
        Ok(vec![Some(self.label); self.info.len])
    }

    fn records(&self, start: usize) -> Result<Box<dyn Iterator<Item = Result<Record>> + Send + '_>> {
        let label = self.label;
        Ok(Box::new(self.inner.records(start)?.map(move |r| {
            r.map(|mut r| {
                r.label = Some(label);
                r
            })
        })))
    }
}

/// `inner` with every record's bands in another order: plane `k` of a
/// record is the inner record's plane `order[k]`, and the band names are
/// reordered likewise. Data whose bands are named in another order than a
/// model's reach its inputs so (`Preprocess::band_order` in
/// tidalscope-data finds `order`).
pub struct BandOrder<'a> {
    inner: &'a dyn Source,
    order: std::sync::Arc<[usize]>,
    info: SourceInfo,
}

impl<'a> BandOrder<'a> {
    /// Reorders `inner`'s bands by `order` (a permutation of its bands).
    ///
    /// # Panics
    /// If `order` is not a permutation of `0..bands`.
    pub fn new(inner: &'a dyn Source, order: Vec<usize>) -> Self {
        let mut info = inner.info().clone();
        let mut seen = order.clone();
        seen.sort_unstable();
        assert!(seen.iter().copied().eq(0..info.bands.len()), "band order {order:?} is not a permutation");
        info.bands = order.iter().map(|&k| info.bands[k].clone()).collect();
        Self { inner, order: order.into(), info }
    }
}

impl Source for BandOrder<'_> {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn labels(&self) -> Result<Vec<Option<u8>>> {
        self.inner.labels()
    }

    fn records(&self, start: usize) -> Result<Box<dyn Iterator<Item = Result<Record>> + Send + '_>> {
        Ok(Box::new(self.inner.records(start)?.map(move |r| {
            r.map(|mut r| {
                let (order, pixels) = (self.order.clone(), r.pixels);
                r.pixels = Pixels::Deferred(Box::new(move || {
                    let c = pixels.load()?;
                    // Another band count is refused image by image, naming it.
                    Ok(if c.bands() == order.len() { c.reordered(&order) } else { c })
                }));
                r
            })
        })))
    }
}

/// `source` with its labels replaced by a table of id → label (e.g. the
/// `labels.csv` of `tidalscope label`): objects whose id is absent, or whose
/// label is `None` (unsure), become unlabelled.
pub fn with_labels(source: Box<dyn Source>, labels: std::collections::HashMap<String, Option<u8>>) -> Box<dyn Source> {
    let mut info = source.info().clone();
    info.labelled = true;
    Box::new(LabelledById { inner: source, labels, info })
}

/// A source whose labels come from a table keyed by id.
struct LabelledById {
    inner: Box<dyn Source>,
    labels: std::collections::HashMap<String, Option<u8>>,
    info: SourceInfo,
}

impl Source for LabelledById {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn records(&self, start: usize) -> Result<Box<dyn Iterator<Item = Result<Record>> + Send + '_>> {
        Ok(Box::new(self.inner.records(start)?.map(move |r| {
            r.map(|mut r| {
                r.label = self.labels.get(&r.id).copied().flatten();
                r
            })
        })))
    }
}

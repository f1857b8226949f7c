//! Catalogue CSVs (one row per object, pixels in files named by `file` or
//! `file_<band>` columns, relative to the CSV; FITS and Parquet tables stand
//! where a CSV does), folders of image files, and
//! `simulate` output folders (images.npy + catalog.csv).

use super::{detect, Format, Layout, OpenOptions, Pixels, Record, Source, SourceInfo};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tidalscope_core::{Band, Cutout};

/// One data row of a catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogRow {
    /// Where it is: the line of a CSV (1 = header), or the row of a FITS
    /// or Parquet table (1 = first); see [`Catalog::place`].
    pub line: usize,
    /// Fields, one per column.
    pub fields: Vec<String>,
}

/// What a catalogue's columns are for ([`Catalog::roles`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    /// The ids' column.
    pub id: usize,
    /// The labels' column, if any.
    pub label: Option<usize>,
    /// Every row's label (all `None` without a label column).
    pub labels: Vec<Option<u8>>,
    /// The metadata columns, in order.
    pub meta: Vec<usize>,
}

/// A parsed catalogue: a CSV, or a FITS binary table or Parquet file read
/// as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// The file.
    pub path: PathBuf,
    /// What messages call a row's position: `line` (CSV) or `row` (FITS
    /// or Parquet table).
    pub place: &'static str,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: Vec<CatalogRow>,
}

impl Catalog {
    /// Reads a CSV with a header row (every row must have as many fields
    /// as the header), the first binary table of a FITS file or a Parquet
    /// file (their scalar and text columns; array columns left out), as
    /// text.
    pub fn read(path: &Path) -> Result<Self> {
        if crate::parquet_table::is_parquet(path) {
            return Ok(Self::from_table(path, crate::parquet_table::read_text(path)?));
        }
        if super::detect(path).is_ok_and(|f| f == super::Format::Fits) {
            return Ok(Self::from_table(path, crate::fits_table::read_text(path)?));
        }
        let mut r = ::csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(path)
            .map_err(|e| Error::format(path, e.to_string()))?;
        let columns: Vec<String> =
            r.headers().map_err(|e| Error::format(path, e.to_string()))?.iter().map(|s| s.trim().to_string()).collect();
        let mut rows = Vec::new();
        for (k, rec) in r.records().enumerate() {
            let rec = rec.map_err(|e| Error::format(path, format!("line {}: {e}", k + 2)))?;
            let line = rec.position().map(|p| p.line() as usize).unwrap_or(k + 2);
            if rec.len() != columns.len() {
                return Err(Error::format(
                    path,
                    format!("line {line}: {} fields for {} columns", rec.len(), columns.len()),
                ));
            }
            rows.push(CatalogRow { line, fields: rec.iter().map(|s| s.trim().to_string()).collect() });
        }
        Ok(Self { path: path.to_path_buf(), place: "line", columns, rows })
    }

    /// A FITS or Parquet table of `path` read as text, its rows named `row N`.
    pub fn from_table(path: &Path, t: crate::fits_table::TextTable) -> Self {
        let rows = t.rows.into_iter().enumerate().map(|(k, fields)| CatalogRow { line: k + 1, fields }).collect();
        Self { path: path.to_path_buf(), place: "row", columns: t.columns, rows }
    }

    /// What its columns are for where no column names files: the ids
    /// (checked: none empty, none repeated), the labels (`label`, when
    /// there is one) and the rest, metadata.
    pub fn roles(&self) -> Result<Roles> {
        let id = self.id_column()?;
        self.check_ids(id)?;
        let label = self.column("label");
        let labels = self.labels(label)?;
        let meta = (0..self.columns.len()).filter(|&c| c != id && Some(c) != label).collect();
        Ok(Roles { id, label, labels, meta })
    }

    /// Index of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Every row's 0/1 label from column `col` (empty = unlabelled); all
    /// unlabelled without a label column.
    pub fn labels(&self, col: Option<usize>) -> Result<Vec<Option<u8>>> {
        match col {
            Some(l) => self.rows.iter().map(|r| parse_label(self, r, &r.fields[l])).collect(),
            None => Ok(vec![None; self.rows.len()]),
        }
    }

    /// Checks that column `col` holds ids: none empty, none repeated. The
    /// outputs, `search --query ID` and label tables join on ids, so a
    /// repeated one would score an object twice and join the wrong row.
    pub fn check_ids(&self, col: usize) -> Result<()> {
        let mut first_line: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for row in &self.rows {
            let id = row.fields[col].as_str();
            if id.is_empty() {
                return Err(Error::format(
                    &self.path,
                    format!("{} {}: empty {:?}", self.place, row.line, self.columns[col]),
                ));
            }
            if let Some(line) = first_line.insert(id, row.line) {
                return Err(Error::format(
                    &self.path,
                    format!(
                        "{} {}: {} {id:?} is already on {} {line}; ids must be unique",
                        self.place, row.line, self.columns[col], self.place
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Index of the ids' column: `id`, else `object_id` (HSC's and the
    /// tf.data sets' name), else `objectId` (Rubin's Object tables), or an
    /// error listing the columns present.
    pub fn id_column(&self) -> Result<usize> {
        ["id", "object_id", "objectId"].iter().find_map(|c| self.column(c)).ok_or_else(|| {
            Error::format(
                &self.path,
                format!("missing column \"id\", \"object_id\" or \"objectId\" (columns: {})", self.columns.join(", ")),
            )
        })
    }

    /// Index of a required column, or an error naming it and listing those
    /// present.
    pub fn require(&self, name: &str) -> Result<usize> {
        self.column(name).ok_or_else(|| {
            Error::format(&self.path, format!("missing column {name:?} (columns: {})", self.columns.join(", ")))
        })
    }
}

/// Parses a label field: 0/1 (also false/true); empty = unlabelled.
fn parse_label(catalog: &Catalog, row: &CatalogRow, v: &str) -> Result<Option<u8>> {
    match v.to_ascii_lowercase().as_str() {
        "" | "nan" | "none" => Ok(None),
        "0" | "0.0" | "false" => Ok(Some(0)),
        "1" | "1.0" | "true" => Ok(Some(1)),
        _ => Err(Error::format(&catalog.path, format!("{} {}: label {v:?} is not 0 or 1", catalog.place, row.line))),
    }
}

/// Reads one image file of any single-object format.
pub fn load_file(path: &Path, layout: Layout) -> Result<Cutout> {
    match detect(path)? {
        Format::Fits => super::fits::load_image(path, layout),
        Format::Picture => super::picture::load(path),
        Format::Npy => {
            let (shape, values) = crate::npy::read_f32(path)?;
            let dims: [usize; 3] = match shape.as_slice() {
                [h, w] => [1, *h, *w],
                [a, b, c] => [*a, *b, *c],
                _ => return Err(Error::format(path, format!("array of shape {shape:?} is not one image"))),
            };
            let layout = if shape.len() == 2 { Layout::Chw } else { layout.resolve(dims) };
            layout.cutout(dims, values).map_err(|e| Error::format(path, e.to_string()))
        }
        f => Err(Error::format(path, format!("a {f} input cannot be one object's image"))),
    }
}

/// Where a row's pixels come from.
#[derive(Debug, Clone)]
enum Files {
    /// One file holding every band.
    Single(usize),
    /// One single-band file per band: (band name, column).
    PerBand(Vec<(String, usize)>),
}

/// A catalogue of image files (or a folder of them).
pub struct CatalogSource {
    info: SourceInfo,
    dir: PathBuf,
    catalog: Catalog,
    id: usize,
    files: Files,
    meta: Vec<usize>,
    layout: Layout,
    labels: Vec<Option<u8>>,
}

impl CatalogSource {
    /// Opens a catalogue CSV, FITS or Parquet table (or a folder holding
    /// `catalog.csv`).
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let csv = if path.is_dir() { path.join("catalog.csv") } else { path.to_path_buf() };
        let catalog = Catalog::read(&csv)?;
        Self::from_catalog(catalog, opts)
    }

    /// Every FITS (fpack's `.fits.fz`, gzip's `.fits.gz` too; `.fits.bz2`
    /// listed so that reading it says why it cannot be), PNG, JPEG and npy
    /// file of a folder, one object each (id = file stem, both suffixes of
    /// `.fits.fz` and the like taken off, or the whole file name where two
    /// files share a stem or the stem is another file's name), in name
    /// order.
    pub fn folder(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                let l = n.to_ascii_lowercase();
                let bare = [".fz", ".gz", ".bz2"].iter().find_map(|z| l.strip_suffix(z)).unwrap_or(&l);
                let fits = [".fits", ".fit", ".fts"].iter().any(|x| bare.ends_with(x));
                fits || [".png", ".jpg", ".jpeg", ".npy"].iter().any(|x| l.ends_with(x))
            })
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(Error::format(
                path,
                "folder holds no FITS, PNG, JPEG or .npy files, no catalog.csv and no tf.data snapshot",
            ));
        }
        let stem = |n: &str| {
            let l = n.to_ascii_lowercase();
            let n = [".fz", ".gz", ".bz2"].iter().find(|z| l.ends_with(*z)).map_or(n, |z| &n[..n.len() - z.len()]);
            n.rsplit_once('.').map_or(n, |p| p.0).to_string()
        };
        let mut stems: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for n in &names {
            *stems.entry(stem(n)).or_default() += 1;
        }
        let whole: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        // Ids must be unique: a file whose stem another file shares (a.fits,
        // a.png), or that is another file's whole name (a.png beside
        // a.png.npy), keeps its whole name. Whole names differ, and a stem
        // kept is no other file's stem or whole name.
        let rows = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let s = stem(n);
                let id = if stems[&s] > 1 || whole.contains(s.as_str()) { n.clone() } else { s };
                CatalogRow { line: i + 2, fields: vec![id, n.clone()] }
            })
            .collect();
        let catalog = Catalog {
            path: path.join("(folder listing)"),
            place: "line",
            columns: vec!["id".into(), "file".into()],
            rows,
        };
        let mut s = Self::from_catalog(catalog, opts)?;
        s.info.path = path.to_path_buf();
        s.info.format = Format::Folder;
        s.dir = path.to_path_buf();
        Ok(s)
    }

    fn from_catalog(catalog: Catalog, opts: &OpenOptions) -> Result<Self> {
        let path = catalog.path.clone();
        let id = catalog.id_column()?;
        catalog.check_ids(id)?;
        let label = catalog.column("label");
        let per_band: Vec<(String, usize)> = catalog
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.strip_prefix("file_").map(|b| (b.to_string(), i)))
            .collect();
        let per_band = in_band_order(&path, per_band)?;
        let files = match (catalog.column("file"), per_band.is_empty()) {
            (Some(f), true) => Files::Single(f),
            (None, false) => Files::PerBand(per_band.clone()),
            (Some(_), false) => {
                return Err(Error::format(&path, "has both a 'file' column and 'file_<band>' columns; keep one kind"))
            }
            (None, true) => {
                return Err(Error::format(
                    &path,
                    format!("missing column \"file\" or \"file_<band>\" (columns: {})", catalog.columns.join(", ")),
                ))
            }
        };
        let labels = catalog.labels(label)?;
        let skip: Vec<usize> = std::iter::once(id)
            .chain(label)
            .chain(match &files {
                Files::Single(f) => vec![*f],
                Files::PerBand(v) => v.iter().map(|(_, c)| *c).collect(),
            })
            .collect();
        let meta: Vec<usize> = (0..catalog.columns.len()).filter(|c| !skip.contains(c)).collect();
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut info = SourceInfo {
            path: path.clone(),
            format: Format::Catalog,
            len: catalog.rows.len(),
            bands: match &files {
                Files::PerBand(v) => v.iter().map(|(b, _)| b.clone()).collect(),
                Files::Single(_) => Vec::new(),
            },
            shape: None,
            dtype: "float32".into(),
            meta_columns: meta.iter().map(|&c| catalog.columns[c].clone()).collect(),
            labelled: label.is_some(),
        };
        let mut s = Self { info: info.clone(), dir, catalog, id, files, meta, layout: opts.layout, labels };
        // The first readable object tells the bands and shape.
        if let Some(first) = s.catalog.rows.first() {
            if let Ok(img) = s.loader(first)() {
                info.shape = Some(img.shape());
                if info.bands.is_empty() {
                    info.bands = super::default_bands(img.bands());
                }
            }
        }
        s.info = info;
        Ok(s)
    }

    fn loader(&self, row: &CatalogRow) -> impl FnOnce() -> Result<Cutout> + Send + 'static {
        let dir = self.dir.clone();
        let csv = self.catalog.path.clone();
        let files: Vec<(String, String)> = match &self.files {
            Files::Single(c) => vec![("file".into(), row.fields[*c].clone())],
            Files::PerBand(v) => v.iter().map(|(b, c)| (format!("file_{b}"), row.fields[*c].clone())).collect(),
        };
        let single = matches!(self.files, Files::Single(_));
        let layout = self.layout;
        let (place, line, id) = (self.catalog.place, row.line, row.fields[self.id].clone());
        move || {
            let at = |what: String| Error::format(&csv, format!("{place} {line} (id {id}): {what}"));
            if single {
                let (col, f) = &files[0];
                if f.is_empty() {
                    return Err(at(format!("empty {col}")));
                }
                return load_file(&dir.join(f), layout).map_err(|e| at(e.to_string()));
            }
            let mut planes: Vec<Cutout> = Vec::with_capacity(files.len());
            for (col, f) in &files {
                if f.is_empty() {
                    return Err(at(format!("empty {col}")));
                }
                let img = load_file(&dir.join(f), layout).map_err(|e| at(format!("{col}: {e}")))?;
                if img.bands() != 1 {
                    return Err(at(format!(
                        "{col}: {} holds {} bands; one band per file was expected",
                        f,
                        img.bands()
                    )));
                }
                if let Some(first) = planes.first() {
                    if first.shape() != img.shape() {
                        return Err(at(format!(
                            "{col}: image is {}×{}, the others {}×{}",
                            img.width(),
                            img.height(),
                            first.width(),
                            first.height()
                        )));
                    }
                }
                planes.push(img);
            }
            let (h, w) = (planes[0].height(), planes[0].width());
            // Appended plane by plane (a flattening iterator would push
            // pixel by pixel into a growing buffer).
            let mut data = Vec::with_capacity(planes.len() * h * w);
            for p in planes {
                data.extend_from_slice(p.data());
            }
            Cutout::from_chw(files.len(), h, w, data).map_err(|e| at(e.to_string()))
        }
    }
}

/// The `file_<band>` columns `(band, column)` in wavelength order (g, r,
/// i, z, y: every cutout's and model's channel order) when each names a
/// known band (`g`, `HSC-R2`, …), whatever their order in the file: read
/// in column order, a catalogue listing `file_i` before `file_g` fed a
/// model i-band pixels as g, with nothing to show for it. Two columns of
/// one band are refused; if any name is not a known band, every column
/// keeps the file's order (`inspect` lists it). Models recorded with their
/// bands out of this order are refused a catalogue
/// (`Preprocess::check_bands` in tidalscope-data).
fn in_band_order(path: &Path, columns: Vec<(String, usize)>) -> Result<Vec<(String, usize)>> {
    let Some(bands) = Band::parse_all(columns.iter().map(|(b, _)| b.as_str())) else {
        return Ok(columns);
    };
    let mut order: Vec<usize> = (0..columns.len()).collect();
    order.sort_by_key(|&k| bands[k]);
    if let Some(w) = order.windows(2).find(|w| bands[w[0]] == bands[w[1]]) {
        let (a, b) = (&columns[w[0].min(w[1])].0, &columns[w[0].max(w[1])].0);
        return Err(Error::format(
            path,
            format!("columns file_{a} and file_{b} are both band {}; keep one", bands[w[0]]),
        ));
    }
    Ok(order.into_iter().map(|k| columns[k].clone()).collect())
}

impl Source for CatalogSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn labels(&self) -> Result<Vec<Option<u8>>> {
        Ok(self.labels.clone())
    }

    fn records(&self, start: usize) -> Result<Box<dyn Iterator<Item = Result<Record>> + Send + '_>> {
        Ok(Box::new(self.catalog.rows.iter().enumerate().skip(start).map(move |(i, row)| {
            let file = match &self.files {
                Files::Single(c) => row.fields[*c].clone(),
                Files::PerBand(v) => v.iter().map(|(_, c)| row.fields[*c].as_str()).collect::<Vec<_>>().join(";"),
            };
            Ok(Record {
                index: i,
                id: row.fields[self.id].clone(),
                label: self.labels[i],
                meta: self.meta.iter().map(|&c| row.fields[c].clone()).collect(),
                file,
                pixels: Pixels::Deferred(Box::new(self.loader(row))),
            })
        })))
    }
}

/// A `simulate` output folder: `images.npy` and `catalog.csv`, row i
/// describing image i.
pub struct SimulatedSource {
    info: SourceInfo,
    images: super::npy::NpySource,
    catalog: Catalog,
    id: usize,
    labels: Vec<Option<u8>>,
    meta: Vec<usize>,
}

impl SimulatedSource {
    /// Opens a folder.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let images = super::npy::NpySource::open(&path.join("images.npy"), opts)?;
        let catalog = Catalog::read(&path.join("catalog.csv"))?;
        if catalog.rows.len() != images.info().len {
            return Err(Error::format(
                &catalog.path,
                format!("{} rows for {} images in images.npy", catalog.rows.len(), images.info().len),
            ));
        }
        let Roles { id, label, labels, meta } = catalog.roles()?;
        let mut info = images.info().clone();
        info.path = path.to_path_buf();
        info.format = Format::Simulated;
        info.meta_columns = meta.iter().map(|&c| catalog.columns[c].clone()).collect();
        info.labelled = label.is_some();
        Ok(Self { info, images, catalog, id, labels, meta })
    }
}

impl Source for SimulatedSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn labels(&self) -> Result<Vec<Option<u8>>> {
        Ok(self.labels.clone())
    }

    fn records(&self, start: usize) -> Result<Box<dyn Iterator<Item = Result<Record>> + Send + '_>> {
        Ok(Box::new(self.images.records(start)?.map(move |r| {
            let mut r = r?;
            let row = &self.catalog.rows[r.index];
            r.id = row.fields[self.id].clone();
            r.label = self.labels[r.index];
            r.meta = self.meta.iter().map(|&c| row.fields[c].clone()).collect();
            Ok(r)
        })))
    }
}

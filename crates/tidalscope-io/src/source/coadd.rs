//! Cutouts cut straight from coadd images: a catalogue with RA/Dec plus
//! one FITS image per band for each tile (an HSC/LSST patch), each with a
//! TAN or TAN-SIP WCS.
//!
//! Geometry, chosen to match astropy's `Cutout2D(data, SkyCoord, size,
//! wcs, mode="partial", fill_value=nan)` pixel for pixel: in each band the
//! object's position is mapped through that band's own WCS to a 0-based
//! pixel position `p`, and the cutout covers pixels `ceil(p − S/2)` …
//! `ceil(p − S/2) + S − 1` on each axis. Pixels outside the image are NaN
//! (the non-finite rule then flags the object). An object whose position
//! falls outside the image in any band of every tile is an error row.
//!
//! Each object goes to the tile where its cutout lies deepest inside (the
//! largest distance from its position to the nearest edge, over bands), so
//! overlapping patches give whole cutouts where they can. Objects are read
//! grouped by tile and each tile's bands are read once per pass, so memory
//! holds one tile's images at a time whatever the number of objects.

use super::catalog::Catalog;
use super::{Format, Pixels, Record, Source, SourceInfo};
use crate::fits::{self, HduInfo};
use crate::wcs::Wcs;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tidalscope_core::Cutout;

/// How to cut objects from coadds (what `--coadd` and friends say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoaddOptions {
    /// Tiles, each a list of `(band, FITS file)` in channel order; every
    /// tile has the same bands in the same order.
    pub tiles: Vec<Tile>,
    /// Cutout side in pixels.
    pub size: usize,
    /// Catalogue column of the right ascension (degrees).
    pub ra_column: String,
    /// Catalogue column of the declination (degrees).
    pub dec_column: String,
}

/// One tile (patch) of a coadd: one image per band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    /// Name used in outputs and errors (the `tile` column of a tile list,
    /// or `tile<k>`).
    pub name: String,
    /// `(band, file)` in channel order.
    pub bands: Vec<(String, PathBuf)>,
}

impl CoaddOptions {
    /// Parses `--coadd` values: each either `g=g.fits,r=r.fits,…` (one
    /// tile) or the path of a CSV tile list with columns `tile,band,file`
    /// (files relative to the CSV; rows of one tile give its bands in
    /// order).
    pub fn parse(specs: &[String], size: usize, ra_column: &str, dec_column: &str) -> Result<Self> {
        let mut tiles = Vec::new();
        for spec in specs {
            if spec.contains('=') {
                let mut bands = Vec::new();
                for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
                    let (b, f) = part.split_once('=').ok_or_else(|| {
                        Error::format(Path::new(spec), format!("--coadd part {part:?} is not BAND=FILE"))
                    })?;
                    bands.push((b.trim().to_string(), PathBuf::from(f.trim())));
                }
                tiles.push(Tile { name: format!("tile{}", tiles.len()), bands });
            } else {
                let path = Path::new(spec);
                let cat = Catalog::read(path)?;
                let (t, b, f) = (cat.require("tile")?, cat.require("band")?, cat.require("file")?);
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let mut listed: Vec<Tile> = Vec::new();
                for row in &cat.rows {
                    let name = &row.fields[t];
                    let entry = (row.fields[b].clone(), dir.join(&row.fields[f]));
                    match listed.iter_mut().find(|x| &x.name == name) {
                        Some(tile) => tile.bands.push(entry),
                        None => listed.push(Tile { name: name.clone(), bands: vec![entry] }),
                    }
                }
                if listed.is_empty() {
                    return Err(Error::format(path, "tile list has no rows"));
                }
                tiles.extend(listed);
            }
        }
        Self::new(tiles, size, ra_column, dec_column)
    }

    /// Options from tiles given directly, checked as [`CoaddOptions::parse`]
    /// checks them.
    pub fn new(tiles: Vec<Tile>, size: usize, ra_column: &str, dec_column: &str) -> Result<Self> {
        let opts = Self { tiles, size, ra_column: ra_column.into(), dec_column: dec_column.into() };
        opts.check()?;
        Ok(opts)
    }

    fn check(&self) -> Result<()> {
        let first = self.tiles.first().ok_or_else(|| Error::format(Path::new("--coadd"), "no tiles given"))?;
        let names: Vec<&String> = first.bands.iter().map(|(b, _)| b).collect();
        for tile in &self.tiles {
            let here: Vec<&String> = tile.bands.iter().map(|(b, _)| b).collect();
            if here.is_empty() || here != names {
                return Err(Error::format(
                    Path::new("--coadd"),
                    format!(
                        "tile {} has bands [{}], tile {} has [{}]: every tile needs the same bands in the same order",
                        first.name,
                        names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
                        tile.name,
                        here.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
                    ),
                ));
            }
            for (i, b) in here.iter().enumerate() {
                if b.is_empty() || here[..i].contains(b) {
                    return Err(Error::format(
                        Path::new("--coadd"),
                        format!("tile {}: band {b:?} empty or repeated", tile.name),
                    ));
                }
            }
        }
        if self.size == 0 {
            return Err(Error::format(Path::new("--cutout-size"), "must be at least 1 pixel"));
        }
        Ok(())
    }

    /// The tiles as `--coadd` values with absolute paths, so that a later
    /// command (`search`) can cut the same objects from anywhere.
    pub fn specs(&self) -> Vec<String> {
        self.tiles
            .iter()
            .map(|t| {
                let b: Vec<String> = t
                    .bands
                    .iter()
                    .map(|(b, f)| format!("{b}={}", std::fs::canonicalize(f).unwrap_or(f.clone()).display()))
                    .collect();
                b.join(",")
            })
            .collect()
    }

    /// The settings as one line for a run's manifest.
    pub fn describe(&self) -> String {
        format!("size={} ra={} dec={} {}", self.size, self.ra_column, self.dec_column, self.specs().join(" "))
    }
}

/// One band image of a tile, as scanned (pixels not yet read).
#[derive(Debug, Clone)]
struct BandImage {
    file: PathBuf,
    hdu: HduInfo,
    wcs: Wcs,
    nx: usize,
    ny: usize,
}

impl BandImage {
    fn open(file: &Path) -> Result<Self> {
        let hdus = fits::scan(file)?;
        let hdu = fits::pixel_hdu(file, &hdus)?;
        if hdu.axes.len() != 2 {
            return Err(Error::format(
                file,
                format!("image HDU {} has {} axes; a coadd band is 2-D", hdu.index, hdu.axes.len()),
            ));
        }
        let wcs = Wcs::from_header(&hdu.header, file)?;
        Ok(Self { file: file.to_path_buf(), nx: hdu.axes[0], ny: hdu.axes[1], hdu, wcs })
    }

    /// Distance in pixels from `(x, y)` to the nearest edge of the image,
    /// negative outside it.
    fn depth(&self, x: f64, y: f64) -> f64 {
        let dx = (x + 0.5).min(self.nx as f64 - 0.5 - x);
        let dy = (y + 0.5).min(self.ny as f64 - 0.5 - y);
        dx.min(dy)
    }
}

/// The tile index of an object that lies on no tile.
const OFF: u32 = u32::MAX;

/// A catalogue of sky positions cut from coadd tiles.
pub struct CoaddSource {
    info: SourceInfo,
    catalog: Catalog,
    id: usize,
    ra: usize,
    dec: usize,
    meta: Vec<usize>,
    labels: Vec<Option<u8>>,
    tiles: Vec<(String, Vec<BandImage>)>,
    size: usize,
    /// Catalogue rows in reading order: grouped by tile, then in
    /// catalogue order; objects on no tile last.
    order: Vec<u32>,
    /// The tile of each catalogue row (`OFF`: none).
    tile_of: Vec<u32>,
}

/// A tile's pixels, one plane per band, row-major as stored.
type Planes = Arc<Vec<Vec<f32>>>;

impl CoaddSource {
    /// Opens `catalog` (CSV with id, RA and Dec columns) over the tiles of
    /// `coadd`.
    pub fn open(path: &Path, coadd: &CoaddOptions) -> Result<Self> {
        let csv = if path.is_dir() { path.join("catalog.csv") } else { path.to_path_buf() };
        let catalog = Catalog::read(&csv)?;
        let id = catalog.id_column()?;
        catalog.check_ids(id)?;
        let find = |want: &str, alt: &str| -> Result<usize> {
            catalog
                .column(want)
                .or_else(|| catalog.columns.iter().position(|c| c.eq_ignore_ascii_case(want)))
                .or_else(|| catalog.column(alt))
                .ok_or_else(|| {
                    Error::format(&csv, format!("missing column {want:?} (columns: {})", catalog.columns.join(", ")))
                })
        };
        let ra = find(&coadd.ra_column, "coord_ra")?;
        let dec = find(&coadd.dec_column, "coord_dec")?;
        let label = catalog.column("label");
        let labels = catalog.labels(label)?;
        let meta: Vec<usize> = (0..catalog.columns.len()).filter(|&c| c != id && Some(c) != label).collect();
        let tiles = coadd
            .tiles
            .iter()
            .map(|t| {
                let bands = t.bands.iter().map(|(_, f)| BandImage::open(f)).collect::<Result<Vec<_>>>()?;
                Ok((t.name.clone(), bands))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut s = Self {
            info: SourceInfo {
                path: csv.clone(),
                format: Format::Coadd,
                len: catalog.rows.len(),
                bands: coadd.tiles[0].bands.iter().map(|(b, _)| b.clone()).collect(),
                shape: Some([coadd.tiles[0].bands.len(), coadd.size, coadd.size]),
                dtype: "float32".into(),
                meta_columns: {
                    // The catalogue's own `tile` is input: it gives way to
                    // ours, as every clashing input column does.
                    let tile = "tile".to_string();
                    let given: Vec<String> = meta.iter().map(|&c| catalog.columns[c].clone()).collect();
                    let mut names = super::meta_names(std::slice::from_ref(&tile), &given);
                    names.push(tile);
                    names
                },
                labelled: label.is_some(),
            },
            catalog,
            id,
            ra,
            dec,
            meta,
            labels,
            tiles,
            size: coadd.size,
            order: Vec::new(),
            tile_of: Vec::new(),
        };
        s.tile_of = (0..s.catalog.rows.len()).map(|r| s.place(r).map_or(OFF, |t| t as u32)).collect();
        let mut order: Vec<u32> = (0..s.catalog.rows.len() as u32).collect();
        order.sort_by_key(|&r| s.tile_of[r as usize]);
        s.order = order;
        Ok(s)
    }

    /// RA and Dec of a catalogue row.
    fn position(&self, row: usize) -> std::result::Result<(f64, f64), String> {
        let f = &self.catalog.rows[row].fields;
        let parse = |c: usize| -> std::result::Result<f64, String> {
            let v =
                f[c].parse::<f64>().map_err(|_| format!("{} {:?} is not a number", self.catalog.columns[c], f[c]))?;
            v.is_finite().then_some(v).ok_or_else(|| format!("{} is {v}", self.catalog.columns[c]))
        };
        let (ra, dec) = (parse(self.ra)?, parse(self.dec)?);
        if !(-90.0..=90.0).contains(&dec) {
            return Err(format!("{} {dec} is outside −90 … 90 degrees", self.catalog.columns[self.dec]));
        }
        Ok((ra, dec))
    }

    /// The tile whose images hold the row's position deepest inside, or why
    /// there is none.
    fn place(&self, row: usize) -> std::result::Result<usize, String> {
        let (ra, dec) = self.position(row)?;
        let mut best: Option<(usize, f64)> = None;
        for (t, (_, bands)) in self.tiles.iter().enumerate() {
            let depth = bands
                .iter()
                .map(|b| b.wcs.world_to_pixel(ra, dec).map_or(f64::NEG_INFINITY, |(x, y)| b.depth(x, y)))
                .fold(f64::INFINITY, f64::min);
            if depth >= 0.0 && best.is_none_or(|(_, d)| depth > d) {
                best = Some((t, depth));
            }
        }
        best.map(|(t, _)| t).ok_or_else(|| {
            let b = &self.tiles[0].1[0];
            let at = match b.wcs.world_to_pixel(ra, dec) {
                Some((x, y)) => format!("pixel ({x:.1}, {y:.1}) of {} ({}×{})", b.file.display(), b.nx, b.ny),
                None => format!("the far side of the sky from {}", b.file.display()),
            };
            format!(
                "RA {ra}, Dec {dec} is off the coadd: outside the images of every tile in at least one band \
                 (it maps to {at})"
            )
        })
    }

    /// Reads every band of tile `t`.
    fn read_tile(&self, t: usize) -> std::result::Result<Planes, String> {
        let planes = self.tiles[t]
            .1
            .iter()
            .map(|b| fits::read_values(&b.file, &b.hdu, 0, b.nx * b.ny).map_err(|e| e.to_string()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Arc::new(planes))
    }

    /// The cutout of catalogue row `row` from tile `t`'s pixels.
    fn cut(&self, row: usize, t: usize, planes: &[Vec<f32>]) -> std::result::Result<Cutout, String> {
        let (ra, dec) = self.position(row)?;
        let s = self.size;
        let mut out = vec![f32::NAN; planes.len() * s * s];
        for (k, (b, plane)) in self.tiles[t].1.iter().zip(planes).enumerate() {
            let (x, y) = b.wcs.world_to_pixel(ra, dec).ok_or("no pixel position")?;
            let x0 = (x - s as f64 / 2.0).ceil() as i64;
            let y0 = (y - s as f64 / 2.0).ceil() as i64;
            let dst = &mut out[k * s * s..(k + 1) * s * s];
            let (c0, c1) = (x0.max(0), (x0 + s as i64).min(b.nx as i64));
            if c0 >= c1 {
                continue;
            }
            for r in 0..s as i64 {
                let yy = y0 + r;
                if yy < 0 || yy >= b.ny as i64 {
                    continue;
                }
                let src = &plane[yy as usize * b.nx + c0 as usize..yy as usize * b.nx + c1 as usize];
                let at = r as usize * s + (c0 - x0) as usize;
                dst[at..at + src.len()].copy_from_slice(src);
            }
        }
        Cutout::from_chw(planes.len(), s, s, out).map_err(|e| e.to_string())
    }

    fn record(&self, index: usize, row: usize, planes: Option<&std::result::Result<Planes, String>>) -> Record {
        let r = &self.catalog.rows[row];
        let id = r.fields[self.id].clone();
        let t = self.tile_of[row];
        let tile_name = if t == OFF { String::new() } else { self.tiles[t as usize].0.clone() };
        let mut meta: Vec<String> = self.meta.iter().map(|&c| r.fields[c].clone()).collect();
        meta.push(tile_name.clone());
        let place = self.catalog.place;
        let at = |what: String| Error::format(&self.catalog.path, format!("{place} {} (id {id}): {what}", r.line));
        let pixels = match (t, planes) {
            (OFF, _) | (_, None) => Err(at(self.place(row).err().unwrap_or_else(|| "no tile".into()))),
            (_, Some(Err(e))) => Err(at(format!("tile {tile_name}: {e}"))),
            (t, Some(Ok(p))) => self.cut(row, t as usize, p).map_err(at),
        };
        Record {
            index,
            id,
            label: self.labels[row],
            meta,
            file: if t == OFF { self.catalog.path.display().to_string() } else { tile_name },
            pixels: Pixels::Ready(pixels),
        }
    }
}

impl Source for CoaddSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn labels(&self) -> Result<Vec<Option<u8>>> {
        Ok(self.order.iter().map(|&r| self.labels[r as usize]).collect())
    }

    fn records(&self, start: usize) -> Result<Box<dyn Iterator<Item = Result<Record>> + Send + '_>> {
        let mut loaded: Option<(u32, std::result::Result<Planes, String>)> = None;
        Ok(Box::new((start.min(self.order.len())..self.order.len()).map(move |i| {
            let row = self.order[i] as usize;
            let t = self.tile_of[row];
            if t != OFF && loaded.as_ref().is_none_or(|(lt, _)| *lt != t) {
                // Drop the previous tile before reading the next.
                loaded = None;
                loaded = Some((t, self.read_tile(t as usize)));
            }
            let planes = loaded.as_ref().filter(|(lt, _)| *lt == t).map(|(_, p)| p);
            Ok(self.record(i, row, planes))
        })))
    }
}

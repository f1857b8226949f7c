//! Tile-compressed FITS images (FITS standard 4.0, §10): an image stored as
//! a binary table with `ZIMAGE = T`, one row per rectangular tile of the
//! image, each tile compressed on its own. fpack's `.fits.fz` files are made
//! so, and several surveys ship their coadds and cutouts this way (the
//! Legacy Surveys' images, for one, are RICE-compressed and quantised).
//!
//! Read here: `RICE_1`, `GZIP_1`, `GZIP_2` and `NOCOMPRESS` tiles of every
//! BITPIX; the `GZIP_COMPRESSED_DATA` and `UNCOMPRESSED_DATA` columns writers
//! fall back to for tiles they cannot quantise; floating-point images
//! quantised to integers with `ZSCALE`/`ZZERO` (`NO_DITHER`,
//! `SUBTRACTIVE_DITHER_1`, `SUBTRACTIVE_DITHER_2`, with the dither sequence
//! of §10.2.1); undefined pixels (`ZBLANK`, or `BLANK` for integer images)
//! read as NaN, which the non-finite rule then covers. `HCOMPRESS_1` (lossy,
//! rare in survey data) and `PLIO_1` (for masks) are refused, naming the
//! method. [`crate::fits::scan`] presents such an HDU as an image HDU (its
//! header rewritten as the image's: BITPIX, NAXISn, the table's own keywords
//! left out), and [`crate::fits::read_values`] decompresses only the tiles
//! that hold the values asked for.

use crate::fits::{Header, Value};
use crate::fits_table::{parse_tform, type_width};
use crate::{Error, Result};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::OnceLock;

/// Length of the dither sequence (§10.2.1).
const N_RANDOM: usize = 10_000;

/// The quantised value `SUBTRACTIVE_DITHER_2` keeps for an exact zero.
const ZERO_VALUE: i64 = -2_147_483_646;

/// The most pixels a compressed HDU may claim per byte it stores (RICE's
/// own bound aside: a constant block of BLOCKSIZE pixels costs at least 3
/// bits): DEFLATE cannot expand a byte into more than 1,032. A header
/// claiming more is corrupt, and is refused before any memory is set aside
/// for it.
const MAX_PIXELS_PER_BYTE: u64 = 1_100;

/// How a tile's bytes are compressed (`ZCMPTYPE`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Method {
    /// Rice coding of successive differences in blocks of `block` pixels of
    /// `bytepix` bytes.
    Rice { block: usize, bytepix: usize },
    /// gzip of the big-endian values.
    Gzip1,
    /// gzip of the values' bytes shuffled: every value's first byte, then
    /// every value's second, …
    Gzip2,
    /// The big-endian values as they are.
    NoCompress,
}

/// How a floating-point image was made integers (`ZQUANTIZ`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Quantize {
    /// Lossless: floats stored as floats (no `ZSCALE`, or `ZQUANTIZ = 'NONE'`).
    Lossless,
    /// value = i·ZSCALE + ZZERO.
    NoDither,
    /// value = (i − r + ½)·ZSCALE + ZZERO, r from the dither sequence.
    Dither1,
    /// As [`Quantize::Dither1`], with the reserved value [`ZERO_VALUE`] for 0.
    Dither2,
}

/// Where a value of a tile's row comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PerTile {
    /// A column of the table: its byte offset in the row and its type letter.
    Column(usize, u8),
    /// A header keyword, the same for every tile.
    Keyword(f64),
    /// Not given.
    Missing,
}

/// A variable-length array column (`1PB(n)`, `1QE(n)`, …).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ArrayColumn {
    /// Byte offset of its descriptor in a row.
    offset: usize,
    /// `P` (32-bit descriptor) or `Q` (64-bit).
    descriptor: u8,
    /// Type letter of its elements.
    element: u8,
}

/// What a reader needs to decompress one tile-compressed image HDU.
#[derive(Debug, Clone, PartialEq)]
pub struct Tiling {
    method: Method,
    quantize: Quantize,
    /// `ZDITHER0`: where tile 0's dither starts in the sequence.
    dither0: i64,
    /// The image's BITPIX (`ZBITPIX`).
    bitpix: i64,
    /// Image axes, NAXIS1 first (`ZNAXISn`).
    axes: Vec<usize>,
    /// Tile shape (`ZTILEn`).
    tile: Vec<usize>,
    /// Bytes per table row (the table's NAXIS1) and rows (tiles).
    row_len: usize,
    rows: usize,
    /// Where the heap starts, from the start of the table's data, and its
    /// length in bytes (what PCOUNT leaves after THEAP).
    heap_start: u64,
    heap_len: u64,
    compressed: ArrayColumn,
    gzip_fallback: Option<ArrayColumn>,
    uncompressed: Option<ArrayColumn>,
    zscale: PerTile,
    zzero: PerTile,
    /// The undefined value of the stored integers (`ZBLANK`, else `BLANK`
    /// for integer images).
    blank: PerTile,
    /// BSCALE and BZERO of an integer image (applied after decompressing).
    bscale: f64,
    bzero: f64,
}

/// Whether `key` belongs to the compression convention or to the table
/// that carries it, and so is not the image's keyword.
fn is_table_keyword(key: &str) -> bool {
    // CHECKSUM and DATASUM are the table's; the image's own are ZHECKSUM
    // and ZDATASUM, which no longer hold once the header is rewritten.
    const EXACT: [&str; 25] = [
        "XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "TFIELDS", "THEAP", "ZIMAGE", "ZTENSION", "ZSIMPLE",
        "ZEXTEND", "ZBLOCKED", "ZBITPIX", "ZNAXIS", "ZPCOUNT", "ZGCOUNT", "ZCMPTYPE", "ZQUANTIZ", "ZDITHER0",
        "ZHECKSUM", "ZDATASUM", "ZBLANK", "ZMASKCMP", "CHECKSUM", "DATASUM",
    ];
    let numbered =
        |prefix: &str| key.strip_prefix(prefix).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    EXACT.contains(&key)
        || ["NAXIS", "ZNAXIS", "ZTILE", "ZNAME", "ZVAL"].into_iter().any(numbered)
        || ["TTYPE", "TFORM", "TUNIT", "TNULL", "TSCAL", "TZERO", "TDIM", "TDISP"].into_iter().any(numbered)
        || key == "ZSCALE"
        || key == "ZZERO"
}

impl Tiling {
    /// Reads the convention's keywords of the binary-table HDU `index`
    /// (`table_axes` its NAXIS1, NAXIS2; `pcount` its heap size). `None`
    /// when the table is not a compressed image.
    pub(crate) fn from_table(
        table: &Header,
        table_axes: &[usize],
        pcount: u64,
        path: &Path,
        index: usize,
    ) -> Result<Option<Tiling>> {
        if table.get("XTENSION").and_then(Value::as_str) != Some("BINTABLE")
            || table.get("ZIMAGE") != Some(&Value::Logical(true))
        {
            return Ok(None);
        }
        let bad = |what: String| Error::format(path, format!("HDU {index} (tile-compressed image): {what}"));
        let int = |key: &str| table.get(key).and_then(Value::as_i64);
        let need = |key: &str| int(key).ok_or_else(|| bad(format!("missing or non-integer keyword {key}")));
        let bitpix = need("ZBITPIX")?;
        if ![8, 16, 32, 64, -32, -64].contains(&bitpix) {
            return Err(bad(format!("invalid ZBITPIX {bitpix}")));
        }
        let naxis = need("ZNAXIS")?;
        if !(0..=999).contains(&naxis) {
            return Err(bad(format!("ZNAXIS = {naxis} is out of range")));
        }
        let mut axes = Vec::new();
        let mut tile = Vec::new();
        for i in 1..=naxis as usize {
            let n = need(&format!("ZNAXIS{i}"))?;
            let n = usize::try_from(n).map_err(|_| bad(format!("ZNAXIS{i} = {n} is negative")))?;
            let t = int(&format!("ZTILE{i}")).unwrap_or(if i == 1 { n as i64 } else { 1 });
            if t < 1 {
                return Err(bad(format!("ZTILE{i} = {t} is not positive")));
            }
            axes.push(n);
            tile.push((t as usize).min(n.max(1)));
        }
        let (row_len, rows) = match table_axes {
            [a, b] => (*a, *b),
            _ => return Err(bad("the table is not 2-D".into())),
        };
        let tiles: usize = axes.iter().zip(&tile).map(|(&a, &t)| a.div_ceil(t)).product();
        if !axes.is_empty() && tiles != rows {
            return Err(bad(format!("{rows} table rows for {tiles} tiles (ZNAXISn / ZTILEn)")));
        }
        let param = |name: &str| {
            (1..=999)
                .map_while(|i| table.get(&format!("ZNAME{i}")).map(|n| (i, n)))
                .find(|(_, n)| n.as_str().is_some_and(|s| s.trim().eq_ignore_ascii_case(name)))
                .and_then(|(i, _)| table.get(&format!("ZVAL{i}")).and_then(Value::as_i64))
        };
        let cmp = table.get("ZCMPTYPE").and_then(Value::as_str).unwrap_or("").trim().to_ascii_uppercase();
        let method = match cmp.as_str() {
            "RICE_1" | "RICE_ONE" => {
                let block = param("BLOCKSIZE").unwrap_or(32);
                let bytepix = param("BYTEPIX").unwrap_or(match bitpix {
                    8 => 1,
                    16 => 2,
                    _ => 4,
                });
                if !(1..=4096).contains(&block) || ![1, 2, 4].contains(&bytepix) {
                    return Err(bad(format!("RICE_1 with BLOCKSIZE {block} and BYTEPIX {bytepix} is not supported")));
                }
                Method::Rice { block: block as usize, bytepix: bytepix as usize }
            }
            "GZIP_1" => Method::Gzip1,
            "GZIP_2" => Method::Gzip2,
            "NOCOMPRESS" => Method::NoCompress,
            "HCOMPRESS_1" | "PLIO_1" => {
                return Err(bad(format!(
                    "compressed with {cmp}, which this reader does not decode (RICE_1, GZIP_1, GZIP_2 and \
                     NOCOMPRESS are); decompress it first, e.g. with `funpack`"
                )))
            }
            other => return Err(bad(format!("unknown compression ZCMPTYPE = '{other}'"))),
        };
        let per_byte = match method {
            Method::Rice { block, .. } => MAX_PIXELS_PER_BYTE.max(8 * block as u64 / 3),
            _ => MAX_PIXELS_PER_BYTE,
        };
        let pixels = axes.iter().try_fold(1u64, |acc, &a| acc.checked_mul(a as u64));
        let stored = (row_len as u64).saturating_mul(rows as u64).saturating_add(pcount);
        match pixels {
            Some(p) if axes.is_empty() || p <= stored.saturating_mul(per_byte) + (1 << 20) => {}
            _ => {
                return Err(bad(format!(
                    "ZNAXISn claim {} pixels from {stored} stored bytes (corrupt header)",
                    pixels.map_or("too many".to_string(), |p| p.to_string())
                )))
            }
        }
        // The table's columns, by name.
        let fields = int("TFIELDS").unwrap_or(0).clamp(0, 999) as usize;
        let (mut compressed, mut gzip_fallback, mut uncompressed) = (None, None, None);
        let (mut zscale, mut zzero, mut blank) = (PerTile::Missing, PerTile::Missing, PerTile::Missing);
        let mut offset = 0usize;
        for i in 1..=fields {
            let form = table.get(&format!("TFORM{i}")).and_then(Value::as_str).unwrap_or("");
            let (repeat, t, element) =
                parse_tform(form).ok_or_else(|| bad(format!("TFORM{i} = '{form}' unreadable")))?;
            let width = if t == b'X' {
                repeat.div_ceil(8)
            } else {
                let w = type_width(t).ok_or_else(|| bad(format!("TFORM{i} = '{form}' has an unknown type")))?;
                w.checked_mul(repeat).ok_or_else(|| bad(format!("TFORM{i} = '{form}' is too wide")))?
            };
            let name =
                table.get(&format!("TTYPE{i}")).and_then(Value::as_str).unwrap_or("").trim().to_ascii_uppercase();
            let array = |element: Option<u8>| -> Result<ArrayColumn> {
                match element {
                    Some(e) if type_width(e).is_some() && repeat == 1 => {
                        Ok(ArrayColumn { offset, descriptor: t, element: e })
                    }
                    _ => Err(bad(format!("column {name} (TFORM{i} = '{form}') is not a variable-length array"))),
                }
            };
            let scalar = || match (repeat, t) {
                (1, b'D' | b'E' | b'J' | b'K' | b'I') => Ok(PerTile::Column(offset, t)),
                _ => Err(bad(format!("column {name} (TFORM{i} = '{form}') is not one number"))),
            };
            match name.as_str() {
                "COMPRESSED_DATA" => compressed = Some(array(element)?),
                "GZIP_COMPRESSED_DATA" => gzip_fallback = Some(array(element)?),
                "UNCOMPRESSED_DATA" => uncompressed = Some(array(element)?),
                "ZSCALE" => zscale = scalar()?,
                "ZZERO" => zzero = scalar()?,
                "ZBLANK" => blank = scalar()?,
                _ => {}
            }
            offset = offset.checked_add(width).ok_or_else(|| bad("row width overflows".into()))?;
        }
        if offset > row_len {
            return Err(bad(format!("columns need {offset} bytes of a {row_len}-byte row")));
        }
        let compressed = compressed.ok_or_else(|| bad("no COMPRESSED_DATA column".into()))?;
        let keyword = |key: &str, current: PerTile| match (current, table.get(key).and_then(Value::as_f64)) {
            (PerTile::Missing, Some(v)) => PerTile::Keyword(v),
            (c, _) => c,
        };
        zscale = keyword("ZSCALE", zscale);
        zzero = keyword("ZZERO", zzero);
        blank = keyword("ZBLANK", blank);
        if bitpix > 0 {
            blank = keyword("BLANK", blank);
        }
        let quantize = match table.get("ZQUANTIZ").and_then(Value::as_str).map(|s| s.trim().to_ascii_uppercase()) {
            _ if bitpix > 0 || zscale == PerTile::Missing => Quantize::Lossless,
            None => Quantize::NoDither,
            Some(q) => match q.as_str() {
                "NO_DITHER" => Quantize::NoDither,
                "SUBTRACTIVE_DITHER_1" => Quantize::Dither1,
                "SUBTRACTIVE_DITHER_2" => Quantize::Dither2,
                "NONE" => Quantize::Lossless,
                other => return Err(bad(format!("unknown quantisation ZQUANTIZ = '{other}'"))),
            },
        };
        let heap_start = match int("THEAP") {
            Some(t) if t >= 0 => t as u64,
            Some(t) => return Err(bad(format!("THEAP = {t} is negative"))),
            None => (row_len as u64) * (rows as u64),
        };
        let heap_len = match ((row_len as u64) * (rows as u64) + pcount).checked_sub(heap_start) {
            Some(len) => len,
            None => return Err(bad(format!("THEAP = {heap_start} lies beyond the table's data"))),
        };
        let float = |key: &str, default: f64| table.get(key).and_then(Value::as_f64).unwrap_or(default);
        let (bscale, bzero) = if bitpix > 0 { (float("BSCALE", 1.0), float("BZERO", 0.0)) } else { (1.0, 0.0) };
        let tiling = Tiling {
            method,
            quantize,
            dither0: int("ZDITHER0").unwrap_or(1),
            bitpix,
            axes,
            tile,
            row_len,
            rows,
            heap_start,
            heap_len,
            compressed,
            gzip_fallback,
            uncompressed,
            zscale,
            zzero,
            blank,
            bscale,
            bzero,
        };
        Ok(Some(tiling))
    }

    /// The image's BITPIX (`ZBITPIX`).
    pub fn bitpix(&self) -> i64 {
        self.bitpix
    }

    /// The compression, as `ZCMPTYPE` names it.
    pub fn method(&self) -> &'static str {
        match self.method {
            Method::Rice { .. } => "RICE_1",
            Method::Gzip1 => "GZIP_1",
            Method::Gzip2 => "GZIP_2",
            Method::NoCompress => "NOCOMPRESS",
        }
    }

    /// The image's axes, NAXIS1 first (`ZNAXISn`).
    pub fn axes(&self) -> &[usize] {
        &self.axes
    }

    /// The image's header made from the table's: BITPIX and NAXISn of the
    /// image, then every keyword that is not the table's or the
    /// convention's (WCS, photometry, EXTNAME, BSCALE/BZERO, …) in order.
    pub fn image_header(&self, table: &Header) -> Header {
        let mut h = Header::new();
        h.push("XTENSION", Value::Str("IMAGE".into()), "decompressed from a tile-compressed HDU");
        h.push("BITPIX", Value::Int(self.bitpix), "");
        h.push("NAXIS", Value::Int(self.axes.len() as i64), "");
        for (i, &a) in self.axes.iter().enumerate() {
            h.push(&format!("NAXIS{}", i + 1), Value::Int(a as i64), "");
        }
        for (k, v) in table.cards() {
            if !is_table_keyword(k) {
                h.push(k, v.clone(), "");
            }
        }
        h
    }

    /// `count` values of the image from value `first` (in file order), as
    /// physical values in float32. `data_offset` is where the table's data
    /// start in `f`.
    pub(crate) fn read<R: Read + Seek>(
        &self,
        f: &mut R,
        path: &Path,
        index: usize,
        data_offset: u64,
        first: usize,
        count: usize,
    ) -> Result<Vec<f32>> {
        let bad = |what: String| Error::format(path, format!("HDU {index} (tile-compressed image): {what}"));
        let mut out = vec![0f32; count];
        if count == 0 {
            return Ok(out);
        }
        let end = first + count;
        let strides: Vec<usize> = self.axes.iter().scan(1usize, |s, &a| Some(std::mem::replace(s, *s * a))).collect();
        let per_axis: Vec<usize> = self.axes.iter().zip(&self.tile).map(|(&a, &t)| a.div_ceil(t)).collect();
        // Only the rows of the tiles along the slowest axis that the values
        // span: one object of a compressed stack reads its own tiles' rows,
        // not the whole table.
        let last = self.axes.len() - 1;
        let (slab, below): (usize, usize) = (strides[last] * self.tile[last], per_axis[..last].iter().product());
        let (k0, k1) = ((first / slab) * below, ((end - 1) / slab + 1).saturating_mul(below).min(self.rows));
        let mut table = vec![0u8; self.row_len * (k1 - k0)];
        f.seek(SeekFrom::Start(data_offset + (k0 * self.row_len) as u64)).map_err(|e| Error::io(path, e))?;
        f.read_exact(&mut table).map_err(|_| bad("the table ends early (truncated file)".into()))?;
        // The tiles whose box meets the values asked for, and the span of
        // the heap their bytes lie in (read at once).
        let mut wanted = Vec::new();
        for k in k0..k1 {
            let (start, shape) = self.tile_box(k, &per_axis);
            let lo: usize = start.iter().zip(&strides).map(|(s, d)| s * d).sum();
            let hi: usize = start.iter().zip(&shape).zip(&strides).map(|((s, n), d)| (s + n - 1) * d).sum();
            if lo < end && hi >= first {
                wanted.push((k, start, shape));
            }
        }
        let row = |k: usize| &table[(k - k0) * self.row_len..(k - k0 + 1) * self.row_len];
        let mut span: Option<(u64, u64)> = None;
        for (k, _, _) in &wanted {
            for col in [Some(self.compressed), self.gzip_fallback, self.uncompressed].into_iter().flatten() {
                let (n, off) = descriptor(row(*k), &col)
                    .ok_or_else(|| bad(format!("tile {k}: a negative heap descriptor (corrupt table)")))?;
                let len = n.checked_mul(type_width(col.element).unwrap_or(1) as u64);
                match (len, off.checked_add(len.unwrap_or(u64::MAX))) {
                    (Some(len), Some(e)) if len > 0 => {
                        span = Some(span.map_or((off, e), |(a, b)| (a.min(off), b.max(e))));
                    }
                    (Some(_), Some(_)) => {}
                    _ => return Err(bad(format!("tile {k}: its heap descriptor overflows (corrupt table)"))),
                }
            }
        }
        let (heap_lo, heap) = match span {
            Some((_, hi)) if hi > self.heap_len => {
                return Err(bad(format!("tile data reach byte {hi} of a {}-byte heap (corrupt table)", self.heap_len)))
            }
            Some((lo, hi)) => {
                let mut heap = vec![0u8; usize::try_from(hi - lo).map_err(|_| bad("heap span too large".into()))?];
                f.seek(SeekFrom::Start(data_offset + self.heap_start + lo)).map_err(|e| Error::io(path, e))?;
                f.read_exact(&mut heap).map_err(|_| bad("the heap ends early (truncated file)".into()))?;
                (lo, heap)
            }
            None => (0, Vec::new()),
        };
        let mut values = Vec::new();
        let mut raw = Vec::new();
        for (k, start, shape) in wanted {
            let n: usize = shape.iter().product();
            self.decode_tile(row(k), k, &heap, heap_lo, n, &mut raw, &mut values)
                .map_err(|e| bad(format!("tile {k}: {e}")))?;
            if values.len() != n {
                return Err(bad(format!("tile {k}: {} values for its {n} pixels", values.len())));
            }
            // Scatter the tile, a run along NAXIS1 at a time.
            let runs = n / shape[0];
            for r in 0..runs {
                let mut rest = r;
                let mut at = start[0];
                for ((&s, &len), &d) in start.iter().zip(&shape).zip(&strides).skip(1) {
                    at += (s + rest % len) * d;
                    rest /= len;
                }
                let (a, b) = (at.max(first), (at + shape[0]).min(end));
                if a < b {
                    let src = &values[r * shape[0] + (a - at)..][..b - a];
                    out[a - first..b - first].copy_from_slice(src);
                }
            }
        }
        Ok(out)
    }

    /// Start and shape of tile `k` (tiles run along NAXIS1 first).
    fn tile_box(&self, k: usize, per_axis: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let mut rest = k;
        let mut start = Vec::with_capacity(self.axes.len());
        let mut shape = Vec::with_capacity(self.axes.len());
        for ((&a, &t), &m) in self.axes.iter().zip(&self.tile).zip(per_axis) {
            let s = (rest % m) * t;
            rest /= m;
            start.push(s);
            shape.push(t.min(a - s));
        }
        (start, shape)
    }

    /// One number of a tile's row: its column's value, or the keyword's.
    fn per_tile(row: &[u8], p: PerTile) -> Option<f64> {
        match p {
            PerTile::Column(off, t) => {
                let w = type_width(t)?;
                let b = row.get(off..off + w)?;
                Some(match t {
                    b'D' => f64::from_be_bytes(b.try_into().ok()?),
                    b'E' => f32::from_be_bytes(b.try_into().ok()?) as f64,
                    b'K' => i64::from_be_bytes(b.try_into().ok()?) as f64,
                    b'J' => i32::from_be_bytes(b.try_into().ok()?) as f64,
                    b'I' => i16::from_be_bytes(b.try_into().ok()?) as f64,
                    _ => return None,
                })
            }
            PerTile::Keyword(v) => Some(v),
            PerTile::Missing => None,
        }
    }

    /// Decompresses tile `k` (`n` pixels) into physical values.
    #[allow(clippy::too_many_arguments)]
    fn decode_tile(
        &self,
        row: &[u8],
        k: usize,
        heap: &[u8],
        heap_lo: u64,
        n: usize,
        raw: &mut Vec<i64>,
        values: &mut Vec<f32>,
    ) -> std::result::Result<(), String> {
        values.clear();
        let bytes_of = |col: &ArrayColumn| -> std::result::Result<&[u8], String> {
            let (count, off) = descriptor(row, col).ok_or("a negative heap descriptor")?;
            if count == 0 {
                return Ok(&[]);
            }
            let len = count.saturating_mul(type_width(col.element).unwrap_or(1) as u64);
            let a = off.checked_sub(heap_lo).and_then(|a| usize::try_from(a).ok());
            let b = a.and_then(|a| a.checked_add(usize::try_from(len).ok()?));
            a.zip(b).and_then(|(a, b)| heap.get(a..b)).ok_or_else(|| "its bytes lie outside the heap".to_string())
        };
        let float_width = (self.bitpix.unsigned_abs() / 8) as usize;
        let data = bytes_of(&self.compressed)?;
        if data.is_empty() {
            // The writer could not compress this tile as the rest.
            let has = |c: &ArrayColumn| descriptor(row, c).is_some_and(|(count, _)| count > 0);
            if let Some(col) = self.gzip_fallback.filter(has) {
                // cfitsio writes (and reads) this column for float images only.
                if self.bitpix > 0 {
                    return Err("GZIP_COMPRESSED_DATA in an integer image".into());
                }
                let bytes = gunzip(bytes_of(&col)?, n * float_width)?;
                push_floats(&bytes, float_width, values);
            } else if let Some(col) = self.uncompressed.filter(has) {
                let bytes = bytes_of(&col)?;
                let w = type_width(col.element).unwrap_or(1);
                if bytes.len() != n * w {
                    return Err(format!("{} uncompressed bytes for {n} pixels", bytes.len()));
                }
                if matches!(col.element, b'E' | b'D') {
                    push_floats(bytes, w, values);
                } else {
                    raw.clear();
                    push_ints(bytes, w, raw);
                    self.physical(row, k, raw, values, false)?;
                }
            } else {
                return Err("no data in any column".into());
            }
            return Ok(());
        }
        if self.bitpix < 0 && self.quantize == Quantize::Lossless {
            let bytes = match self.method {
                Method::Gzip1 => gunzip(data, n * float_width)?,
                Method::Gzip2 => unshuffle(&gunzip(data, n * float_width)?, float_width),
                Method::NoCompress => data.to_vec(),
                Method::Rice { .. } => return Err("RICE_1 of unquantised floating-point pixels".into()),
            };
            if bytes.len() != n * float_width {
                return Err(format!("{} bytes for {n} pixels", bytes.len()));
            }
            push_floats(&bytes, float_width, values);
            return Ok(());
        }
        // Integers: the image's own, or the quantised floats (4 bytes).
        let width = if self.bitpix < 0 { 4 } else { self.bitpix as usize / 8 };
        raw.clear();
        match self.method {
            Method::Rice { block, bytepix } => rice(data, n, block, bytepix, raw)?,
            Method::Gzip1 | Method::Gzip2 | Method::NoCompress => {
                let bytes = match self.method {
                    Method::Gzip1 => gunzip(data, n * width)?,
                    Method::Gzip2 => unshuffle(&gunzip(data, n * width)?, width),
                    _ => data.to_vec(),
                };
                if bytes.len() != n * width {
                    return Err(format!("{} bytes for {n} pixels of {width} bytes", bytes.len()));
                }
                push_ints(&bytes, width, raw);
            }
        }
        self.physical(row, k, raw, values, self.bitpix < 0)
    }

    /// Stored integers → physical values: quantised floats through
    /// ZSCALE/ZZERO (and the dither), integer images through BSCALE/BZERO;
    /// the undefined value becomes NaN.
    fn physical(
        &self,
        row: &[u8],
        k: usize,
        raw: &[i64],
        values: &mut Vec<f32>,
        quantised: bool,
    ) -> std::result::Result<(), String> {
        let blank = Self::per_tile(row, self.blank).map(|b| b as i64);
        if !quantised {
            values.extend(raw.iter().map(|&v| {
                if Some(v) == blank {
                    f32::NAN
                } else {
                    (self.bscale * v as f64 + self.bzero) as f32
                }
            }));
            return Ok(());
        }
        let scale = Self::per_tile(row, self.zscale).ok_or("no ZSCALE for a quantised tile")?;
        let zero = Self::per_tile(row, self.zzero).unwrap_or(0.0);
        if self.quantize == Quantize::NoDither {
            values.extend(
                raw.iter().map(|&v| if Some(v) == blank { f32::NAN } else { (v as f64 * scale + zero) as f32 }),
            );
            return Ok(());
        }
        let r = randoms();
        let start = (self.dither0.rem_euclid(N_RANDOM as i64) as usize + N_RANDOM - 1) % N_RANDOM;
        let mut seed = (k % N_RANDOM + start) % N_RANDOM;
        let mut next = (r[seed] * 500.0) as usize;
        for &v in raw {
            values.push(if Some(v) == blank {
                f32::NAN
            } else if self.quantize == Quantize::Dither2 && v == ZERO_VALUE {
                0.0
            } else {
                ((v as f64 - r[next] as f64 + 0.5) * scale + zero) as f32
            });
            next += 1;
            if next == N_RANDOM {
                seed = (seed + 1) % N_RANDOM;
                next = (r[seed] * 500.0) as usize;
            }
        }
        Ok(())
    }
}

/// A variable-length array's element count and heap offset in `row`
/// (`P`: 32-bit, read unsigned as cfitsio does; `Q`: 64-bit), `None` where
/// a `Q` descriptor is negative.
fn descriptor(row: &[u8], col: &ArrayColumn) -> Option<(u64, u64)> {
    let field = |a: usize, w: usize| row.get(col.offset + a..col.offset + a + w);
    match col.descriptor {
        b'P' => {
            let n = u32::from_be_bytes(field(0, 4)?.try_into().ok()?);
            let o = u32::from_be_bytes(field(4, 4)?.try_into().ok()?);
            Some((n as u64, o as u64))
        }
        _ => {
            let n = i64::from_be_bytes(field(0, 8)?.try_into().ok()?);
            let o = i64::from_be_bytes(field(8, 8)?.try_into().ok()?);
            Some((u64::try_from(n).ok()?, u64::try_from(o).ok()?))
        }
    }
}

/// Inflates a gzip (or zlib) stream that must hold exactly `expected` bytes.
fn gunzip(data: &[u8], expected: usize) -> std::result::Result<Vec<u8>, String> {
    // Not reserved up front: a corrupt header's claim is not yet proven.
    let mut out = Vec::new();
    let limit = expected as u64 + 1;
    let got = if data.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(data).take(limit).read_to_end(&mut out)
    } else {
        flate2::read::ZlibDecoder::new(data).take(limit).read_to_end(&mut out)
    };
    got.map_err(|e| format!("gzip data unreadable ({e})"))?;
    if out.len() != expected {
        return Err(format!(
            "gzip data hold {}{} bytes, {expected} expected",
            out.len(),
            if out.len() > expected { "+" } else { "" }
        ));
    }
    Ok(out)
}

/// GZIP_2's byte order undone: the bytes of value i are at i, n + i, 2n + i, ….
fn unshuffle(bytes: &[u8], width: usize) -> Vec<u8> {
    let n = bytes.len() / width;
    let mut out = vec![0u8; n * width];
    for (b, plane) in bytes.chunks_exact(n.max(1)).take(width).enumerate() {
        for (i, &v) in plane.iter().enumerate() {
            out[i * width + b] = v;
        }
    }
    out
}

/// Big-endian floats of `width` bytes appended as float32.
fn push_floats(bytes: &[u8], width: usize, out: &mut Vec<f32>) {
    if width == 8 {
        out.extend(bytes.chunks_exact(8).map(|c| f64::from_be_bytes(c.try_into().expect("8 bytes")) as f32));
    } else {
        out.extend(bytes.chunks_exact(4).map(|c| f32::from_be_bytes(c.try_into().expect("4 bytes"))));
    }
}

/// Big-endian integers of `width` bytes appended (bytes unsigned, as BITPIX 8).
fn push_ints(bytes: &[u8], width: usize, out: &mut Vec<i64>) {
    match width {
        1 => out.extend(bytes.iter().map(|&b| b as i64)),
        2 => out.extend(bytes.chunks_exact(2).map(|c| i16::from_be_bytes([c[0], c[1]]) as i64)),
        4 => out.extend(bytes.chunks_exact(4).map(|c| i32::from_be_bytes(c.try_into().expect("4 bytes")) as i64)),
        _ => out.extend(bytes.chunks_exact(8).map(|c| i64::from_be_bytes(c.try_into().expect("8 bytes")))),
    }
}

/// The dither sequence of §10.2.1: a Park–Miller generator (a = 16807,
/// m = 2³¹ − 1) from seed 1, each value seed/m as float32.
fn randoms() -> &'static [f32] {
    static VALUES: OnceLock<Vec<f32>> = OnceLock::new();
    VALUES.get_or_init(|| {
        let (a, m) = (16807.0f64, 2_147_483_647.0f64);
        let mut seed = 1.0f64;
        (0..N_RANDOM)
            .map(|_| {
                let t = a * seed;
                seed = t - m * (t / m).floor();
                (seed / m) as f32
            })
            .collect()
    })
}

/// Bits read most significant first.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    /// Valid bits at the top of `buf`.
    have: u32,
}

impl Bits<'_> {
    fn refill(&mut self) {
        while self.have <= 56 && self.pos < self.data.len() {
            self.buf |= (self.data[self.pos] as u64) << (56 - self.have);
            self.pos += 1;
            self.have += 8;
        }
    }

    /// The next `k` ≤ 32 bits, `None` past the end.
    fn take(&mut self, k: u32) -> Option<u32> {
        if k == 0 {
            return Some(0);
        }
        if self.have < k {
            self.refill();
            if self.have < k {
                return None;
            }
        }
        let v = (self.buf >> (64 - k)) as u32;
        self.buf <<= k;
        self.have -= k;
        Some(v)
    }

    /// Zero bits before the next one bit (which is consumed).
    fn zeros(&mut self) -> Option<u32> {
        let mut count = 0u32;
        loop {
            self.refill();
            if self.have == 0 {
                return None;
            }
            let lz = self.buf.leading_zeros();
            if lz < self.have {
                count += lz;
                self.buf = self.buf.checked_shl(lz + 1).unwrap_or(0);
                self.have -= lz + 1;
                return Some(count);
            }
            count += self.have;
            self.buf = 0;
            self.have = 0;
        }
    }
}

/// Rice decoding (§10.4.1) of `n` pixels of `bytepix` bytes: the first
/// value raw, then blocks of `block` differences, each block led by its
/// split `fs + 1` in 3, 4 or 5 bits (0: a block of zero differences; the
/// largest: the differences raw), each difference as a unary high part
/// and `fs` low bits, zigzag-mapped to unsigned.
fn rice(data: &[u8], n: usize, block: usize, bytepix: usize, out: &mut Vec<i64>) -> std::result::Result<(), String> {
    let (fsbits, fsmax, bbits) = match bytepix {
        1 => (3, 6, 8),
        2 => (4, 14, 16),
        _ => (5, 25, 32),
    };
    let short = || "RICE_1 data end early".to_string();
    let first = data.get(..bytepix).ok_or_else(short)?;
    let mut last = first.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32);
    let mask = if bbits == 32 { u32::MAX } else { (1u32 << bbits) - 1 };
    let signed = |v: u32| -> i64 {
        match bytepix {
            1 => v as i64,
            2 => v as u16 as i16 as i64,
            _ => v as i32 as i64,
        }
    };
    let unzig = |d: u32| if d & 1 == 0 { d >> 1 } else { !(d >> 1) };
    let mut bits = Bits { data: &data[bytepix..], pos: 0, buf: 0, have: 0 };
    let mut i = 0;
    while i < n {
        let len = block.min(n - i);
        let fs = bits.take(fsbits).ok_or_else(short)? as i32 - 1;
        if fs < 0 {
            out.extend(std::iter::repeat_n(signed(last), len));
        } else if fs == fsmax {
            for _ in 0..len {
                let d = bits.take(bbits).ok_or_else(short)?;
                last = last.wrapping_add(unzig(d)) & mask;
                out.push(signed(last));
            }
        } else if fs > fsmax {
            return Err(format!("RICE_1 block with split {fs} above the largest, {fsmax}"));
        } else {
            for _ in 0..len {
                let high = bits.zeros().ok_or_else(short)?;
                let low = bits.take(fs as u32).ok_or_else(short)?;
                let d = ((high as u64) << fs | low as u64) as u32;
                last = last.wrapping_add(unzig(d)) & mask;
                out.push(signed(last));
            }
        }
        i += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dither_sequence_ends_where_the_standard_says() {
        // §10.2.1: the first value is 16807/m, and after 10,000 steps the
        // generator's seed is 1043618065 (its last value that over m).
        let r = randoms();
        assert_eq!(r.len(), N_RANDOM);
        assert_eq!(r[0], (16807.0 / 2_147_483_647.0f64) as f32);
        assert_eq!(r[N_RANDOM - 1], (1_043_618_065.0 / 2_147_483_647.0f64) as f32);
        assert!(r.iter().all(|&v| (0.0..1.0).contains(&v)));
    }

    #[test]
    fn rice_round_trips_a_hand_made_stream() {
        // First value 5 (one byte), then one block of 3 differences with
        // split fs = 1 (fs + 1 = 2 in 3 bits), each zigzag-mapped and
        // written as (high zeros, a one, one low bit): +1 → 2 = "0 1 0",
        // −1 → 1 = "1 1", 0 → 0 = "1 0".
        // Bits: 010 | 010 | 11 | 10 → 0100_1011 10(pad)
        let data = [5u8, 0b0100_1011, 0b1000_0000];
        let mut out = Vec::new();
        rice(&data, 3, 32, 1, &mut out).unwrap();
        assert_eq!(out, vec![6, 5, 5]);
        let mut out = Vec::new();
        assert!(rice(&data[..1], 3, 32, 1, &mut out).is_err());
    }

    #[test]
    fn table_keywords_are_told_from_the_images() {
        for k in ["ZNAXIS2", "ZTILE1", "TFORM3", "ZVAL1", "ZQUANTIZ", "NAXIS1", "PCOUNT"] {
            assert!(is_table_keyword(k), "{k}");
        }
        for k in ["ZP", "ZPT", "ZEROPT", "CRPIX1", "EXTNAME", "BZERO", "FLUXMAG0", "TELESCOP", "TZ"] {
            assert!(!is_table_keyword(k), "{k}");
        }
    }
}

//! FITS images (Pence et al. 2010, FITS standard 4.0): a writer for image
//! HDUs, including the HSC cutout-service layout, and a reader of image HDUs
//! of any BITPIX with BSCALE/BZERO, tile-compressed ones included
//! ([`crate::fits_compressed`]).
//!
//! A FITS file is a sequence of HDUs, each a header of 80-character ASCII
//! cards ending with `END`, padded to a 2880-byte block, then big-endian
//! data padded to a block. Pixel `(x, y)` (1-based, x fastest) of a 2-D
//! image is element `[y-1][x-1]` of the row-major array: the first row
//! written is the bottom row of the image.

use crate::atomic::AtomicFile;
use crate::fits_compressed::Tiling;
use crate::{Error, Result};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

const BLOCK: usize = 2880;
const CARD: usize = 80;

/// A header keyword value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// T or F.
    Logical(bool),
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// A quoted string.
    Str(String),
    /// A keyword with no value (COMMENT, HISTORY, blank).
    None,
}

impl Value {
    /// The value as a float, for Int and Float.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The value as an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// An ordered list of header cards.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    cards: Vec<(String, Value, String)>,
}

/// Formats a real as the shortest decimal that reads back to the same f64,
/// with an explicit-sign two-digit exponent as FITS readers expect, e.g.
/// `6.3095734448019424E+10`.
fn format_real(v: f64) -> String {
    if v == 0.0 {
        return "0.0".to_string();
    }
    let s = format!("{v:E}");
    let (mant, exp) = s.split_once('E').expect("E format has an exponent");
    let e: i32 = exp.parse().expect("E format exponent is an integer");
    let dot = if mant.contains('.') { "" } else { ".0" };
    format!("{mant}{dot}E{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

impl Header {
    /// An empty header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a card.
    pub fn push(&mut self, key: &str, value: Value, comment: &str) -> &mut Self {
        self.cards.push((key.to_string(), value, comment.to_string()));
        self
    }

    /// First value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.cards.iter().find(|(k, _, _)| k == key).map(|(_, v, _)| v)
    }

    /// All cards, in order.
    pub fn cards(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.cards.iter().map(|(k, v, _)| (k.as_str(), v))
    }

    fn card_bytes(key: &str, value: &Value, comment: &str) -> String {
        let val = match value {
            Value::Logical(b) => format!("{:>20}", if *b { "T" } else { "F" }),
            Value::Int(i) => format!("{i:>20}"),
            Value::Float(f) => format!("{:>20}", format_real(*f)),
            Value::Str(s) => format!("{:<20}", format!("'{:<8}'", s.replace('\'', "''"))),
            Value::None => String::new(),
        };
        let mut card = if matches!(value, Value::None) {
            format!("{key:<8}{comment}")
        } else if key.len() > 8 {
            // ESO's HIERARCH convention, which astropy and cfitsio read: a
            // keyword longer than 8 characters (HSC's MP_DETECTED_NEGATIVE).
            let val = val.trim_start();
            if comment.is_empty() {
                format!("HIERARCH {key} = {val}")
            } else {
                format!("HIERARCH {key} = {val} / {comment}")
            }
        } else if comment.is_empty() {
            format!("{key:<8}= {val}")
        } else {
            format!("{key:<8}= {val} / {comment}")
        };
        card.truncate(CARD);
        format!("{card:<80}")
    }

    /// The header as FITS bytes, `END` included, padded to a block.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::new();
        for (k, v, c) in &self.cards {
            s.push_str(&Self::card_bytes(k, v, c));
        }
        s.push_str(&format!("{:<80}", "END"));
        let mut b = s.into_bytes();
        b.resize(b.len().div_ceil(BLOCK) * BLOCK, b' ');
        b
    }
}

/// Pixel data of one HDU to write.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// No data (an empty primary HDU).
    None,
    /// 32-bit floats (BITPIX −32), axes listed fastest first (NAXIS1 = width).
    F32 {
        /// Axis lengths, NAXIS1 first.
        axes: &'a [usize],
        /// Pixels, C order of the reversed axes (row-major for 2-D).
        data: &'a [f32],
    },
    /// 32-bit integers (BITPIX 32).
    I32 {
        /// Axis lengths, NAXIS1 first.
        axes: &'a [usize],
        /// Pixels.
        data: &'a [i32],
    },
}

/// The mandatory cards for an HDU holding `data`: `SIMPLE` for the primary,
/// `XTENSION = 'IMAGE'` for extensions.
pub fn structural_header(data: &Data, primary: bool) -> Header {
    let mut h = Header::new();
    if primary {
        h.push("SIMPLE", Value::Logical(true), "conforms to FITS standard");
    } else {
        h.push("XTENSION", Value::Str("IMAGE".into()), "image extension");
    }
    let (bitpix, axes): (i64, &[usize]) = match data {
        Data::None => (8, &[]),
        Data::F32 { axes, .. } => (-32, axes),
        Data::I32 { axes, .. } => (32, axes),
    };
    h.push("BITPIX", Value::Int(bitpix), "array data type");
    h.push("NAXIS", Value::Int(axes.len() as i64), "number of array dimensions");
    for (i, &n) in axes.iter().enumerate() {
        h.push(&format!("NAXIS{}", i + 1), Value::Int(n as i64), "");
    }
    if primary {
        h.push("EXTEND", Value::Logical(true), "extensions may follow");
    } else {
        h.push("PCOUNT", Value::Int(0), "");
        h.push("GCOUNT", Value::Int(1), "");
    }
    h
}

fn data_bytes(data: &Data) -> Vec<u8> {
    let mut b = match data {
        Data::None => Vec::new(),
        Data::F32 { data, .. } => data.iter().flat_map(|v| v.to_be_bytes()).collect(),
        Data::I32 { data, .. } => data.iter().flat_map(|v| v.to_be_bytes()).collect(),
    };
    b.resize(b.len().div_ceil(BLOCK) * BLOCK, 0);
    b
}

/// Writes HDUs to `path` atomically. Each header must already hold its
/// structural cards (see [`structural_header`]).
pub fn write(path: &Path, hdus: &[(Header, Data)]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    for (h, d) in hdus {
        let expected: usize = match d {
            Data::None => 0,
            Data::F32 { axes, data } => {
                if axes.iter().product::<usize>() != data.len() {
                    return Err(Error::format(path, "FITS data length does not match its axes"));
                }
                data.len()
            }
            Data::I32 { axes, data } => {
                if axes.iter().product::<usize>() != data.len() {
                    return Err(Error::format(path, "FITS data length does not match its axes"));
                }
                data.len()
            }
        };
        let _ = expected;
        f.write_all(&h.to_bytes()).map_err(|e| Error::io(path, e))?;
        f.write_all(&data_bytes(d)).map_err(|e| Error::io(path, e))?;
    }
    f.commit()
}

/// EXTNAME of the table of a stack's objects ([`StackWriter`]).
pub const OBJECTS: &str = "OBJECTS";

/// Streams images of one shape into a single FITS file: a primary HDU of
/// NAXIS = 4 (`NAXIS1` = width, `NAXIS2` = height, `NAXIS3` = bands,
/// `NAXIS4` = objects), float32, with `BAND1`… cards naming the bands; or,
/// for a single object, a 3-D cube; then, where given, a binary table
/// `OBJECTS` of the objects' ids, labels and metadata, one row per image
/// ([`finish_with_objects`](Self::finish_with_objects)). The file appears
/// when complete.
pub struct StackWriter {
    file: AtomicFile,
    expected: usize,
    written: usize,
    buf: Vec<u8>,
}

impl StackWriter {
    /// Starts a file for `n` images of `[bands, height, width]`.
    pub fn create(path: &Path, n: usize, shape: [usize; 3], bands: &[String]) -> Result<Self> {
        let [c, h, w] = shape;
        let axes: Vec<usize> = if n == 1 { vec![w, h, c] } else { vec![w, h, c, n] };
        let mut header = structural_header(&Data::F32 { axes: &axes, data: &[] }, true);
        for (i, b) in bands.iter().enumerate() {
            header.push(&format!("BAND{}", i + 1), Value::Str(b.clone()), &format!("band of plane NAXIS3 = {}", i + 1));
        }
        header.push("EXTEND", Value::Logical(true), "an OBJECTS table may follow");
        header.push("ORIGIN", Value::Str("tidalscope".into()), "");
        let mut file = AtomicFile::create(path)?;
        file.write_all(&header.to_bytes()).map_err(|e| Error::io(path, e))?;
        Ok(Self { file, expected: n * c * h * w, written: 0, buf: Vec::new() })
    }

    /// Appends one image (band-major values).
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        if self.written + values.len() > self.expected {
            return Err(Error::format(self.file.path(), "more pixels than the declared stack holds"));
        }
        self.buf.clear();
        self.buf.extend(values.iter().flat_map(|v| v.to_be_bytes()));
        self.file.write_all(&self.buf).map_err(|e| Error::io(self.file.path(), e))?;
        self.written += values.len();
        Ok(())
    }

    /// Pads the data to a block and moves the file into place.
    pub fn finish(self) -> Result<()> {
        self.pad()?.commit()
    }

    /// [`finish`](Self::finish), with the catalogue `csv` (a row per image:
    /// id, label, metadata) appended as the binary table `OBJECTS`, which
    /// the FITS source reads the objects' ids, labels and metadata from.
    /// A catalogue a FITS table cannot hold (names or text beyond printable
    /// ASCII) is left out, the stack written whole: the reason is returned.
    pub fn finish_with_objects(self, csv: &Path) -> Result<Option<Error>> {
        let meta = crate::fits_table::TableMeta { extname: OBJECTS.into(), ..Default::default() };
        if let Err(e) = crate::fits_table::scan_columns(csv, &meta, true) {
            self.finish()?;
            return Ok(Some(e));
        }
        let mut file = self.pad()?;
        let path = file.path().to_path_buf();
        crate::fits_table::write_table_hdu(&mut file, csv, &path, &meta)?;
        file.commit()?;
        Ok(None)
    }

    /// The file with its image data complete and padded to a block.
    fn pad(mut self) -> Result<AtomicFile> {
        if self.written != self.expected {
            return Err(Error::format(self.file.path(), format!("wrote {} of {} pixels", self.written, self.expected)));
        }
        let pad = (self.written * 4).div_ceil(BLOCK) * BLOCK - self.written * 4;
        self.file.write_all(&vec![0u8; pad]).map_err(|e| Error::io(self.file.path(), e))?;
        Ok(self.file)
    }
}

/// What the HSC cutout service puts in each file's IMAGE header.
#[derive(Debug, Clone, PartialEq)]
pub struct HscCutoutMeta {
    /// Filter name, e.g. `HSC-I`.
    pub filter: String,
    /// Flux of a zero-magnitude source: 10^(0.4 zp).
    pub fluxmag0: f64,
    /// Right ascension of the reference pixel (degrees).
    pub ra: f64,
    /// Declination of the reference pixel (degrees).
    pub dec: f64,
    /// Reference pixel (1-based x, y): the cutout centre.
    pub crpix: (f64, f64),
    /// Pixel scale (arcsec).
    pub pixel_scale: f64,
}

/// Mask planes of an HSC coadd, in bit order (the `MP_*` cards of the MASK
/// HDU).
pub const HSC_MASK_PLANES: [&str; 10] =
    ["BAD", "SAT", "INTRP", "CR", "EDGE", "DETECTED", "DETECTED_NEGATIVE", "SUSPECT", "NO_DATA", "CROSSTALK"];

/// Writes one band of a cutout in the layout of the HSC cutout service: an
/// empty PRIMARY, then `IMAGE` (float32, TAN WCS, FLUXMAG0), `MASK` (int32
/// bit planes) and `VARIANCE` (float32), each `w × h`, rows bottom-up.
pub fn write_hsc_cutout(
    path: &Path,
    w: usize,
    h: usize,
    image: &[f32],
    mask: &[i32],
    variance: &[f32],
    meta: &HscCutoutMeta,
) -> Result<()> {
    let axes = [w, h];
    let primary = structural_header(&Data::None, true);
    let img = Data::F32 { axes: &axes, data: image };
    let mut ih = structural_header(&img, false);
    ih.push("EXTNAME", Value::Str("IMAGE".into()), "")
        .push("FILTER", Value::Str(meta.filter.clone()), "filter")
        .push("FLUXMAG0", Value::Float(meta.fluxmag0), "flux of a zero-magnitude source")
        .push("WCSAXES", Value::Int(2), "")
        .push("CTYPE1", Value::Str("RA---TAN".into()), "")
        .push("CTYPE2", Value::Str("DEC--TAN".into()), "")
        .push("CRPIX1", Value::Float(meta.crpix.0), "")
        .push("CRPIX2", Value::Float(meta.crpix.1), "")
        .push("CRVAL1", Value::Float(meta.ra), "")
        .push("CRVAL2", Value::Float(meta.dec), "")
        .push("CD1_1", Value::Float(-meta.pixel_scale / 3600.0), "")
        .push("CD1_2", Value::Float(0.0), "")
        .push("CD2_1", Value::Float(0.0), "")
        .push("CD2_2", Value::Float(meta.pixel_scale / 3600.0), "")
        .push("CUNIT1", Value::Str("deg".into()), "")
        .push("CUNIT2", Value::Str("deg".into()), "")
        .push("RADESYS", Value::Str("ICRS".into()), "")
        .push("EQUINOX", Value::Float(2000.0), "");
    let m = Data::I32 { axes: &axes, data: mask };
    let mut mh = structural_header(&m, false);
    mh.push("EXTNAME", Value::Str("MASK".into()), "");
    for (bit, name) in HSC_MASK_PLANES.iter().enumerate() {
        mh.push(&format!("MP_{name}"), Value::Int(bit as i64), "");
    }
    let v = Data::F32 { axes: &axes, data: variance };
    let mut vh = structural_header(&v, false);
    vh.push("EXTNAME", Value::Str("VARIANCE".into()), "");
    write(path, &[(primary, Data::None), (ih, img), (mh, m), (vh, v)])
}

/// One image HDU read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageHdu {
    /// Its header.
    pub header: Header,
    /// Axis lengths, NAXIS1 first.
    pub axes: Vec<usize>,
    /// Physical values (BSCALE·raw + BZERO) as float32; empty when NAXIS = 0.
    pub data: Vec<f32>,
}

impl ImageHdu {
    /// EXTNAME, if any.
    pub fn name(&self) -> Option<&str> {
        self.header.get("EXTNAME").and_then(Value::as_str)
    }
}

fn parse_value(raw: &str) -> Value {
    let t = raw.trim();
    if let Some(rest) = t.strip_prefix('\'') {
        // A string runs to the next lone quote; '' is an escaped quote.
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    out.push('\'');
                } else {
                    break;
                }
            } else {
                out.push(c);
            }
        }
        return Value::Str(out.trim_end().to_string());
    }
    let v = t.split('/').next().unwrap_or("").trim();
    match v {
        "T" => Value::Logical(true),
        "F" => Value::Logical(false),
        "" => Value::None,
        _ => {
            if let Ok(i) = v.parse::<i64>() {
                Value::Int(i)
            } else if let Ok(f) = v.replace('D', "E").parse::<f64>() {
                Value::Float(f)
            } else {
                Value::None
            }
        }
    }
}

/// Reads one header starting at the reader's position. `None` at a clean
/// end of file.
fn read_header(r: &mut impl Read, path: &Path, hdu: usize) -> Result<Option<Header>> {
    let mut h = Header::new();
    let mut block = [0u8; BLOCK];
    let mut first = true;
    loop {
        let mut got = 0;
        while got < BLOCK {
            match r.read(&mut block[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        if got == 0 && first {
            return Ok(None);
        }
        if got < BLOCK {
            return Err(Error::format(path, format!("HDU {hdu}: header ends before its END card (truncated file)")));
        }
        first = false;
        for card in block.chunks_exact(CARD) {
            if !card.iter().all(|&b| (32..127).contains(&b)) {
                return Err(Error::format(
                    path,
                    format!("HDU {hdu}: header card with non-ASCII bytes (corrupt header)"),
                ));
            }
            let card = std::str::from_utf8(card).expect("ASCII checked above");
            let key = card[..8].trim_end();
            if key == "END" {
                return Ok(Some(h));
            }
            // HIERARCH: the keyword runs to the `=`.
            if let Some((long, value)) = card.strip_prefix("HIERARCH ").and_then(|c| c.split_once('=')) {
                h.push(long.trim(), parse_value(value), "");
                continue;
            }
            let value = if &card[8..10] == "= " { parse_value(&card[10..]) } else { Value::None };
            h.push(key, value, "");
        }
    }
}

fn required_int(h: &Header, key: &str, path: &Path, hdu: usize) -> Result<i64> {
    h.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| Error::format(path, format!("HDU {hdu}: missing or non-integer keyword {key}")))
}

/// Where one HDU lives in a file, without its data.
#[derive(Debug, Clone, PartialEq)]
pub struct HduInfo {
    /// Position in the file (0 = primary).
    pub index: usize,
    /// Its header.
    pub header: Header,
    /// Axis lengths, NAXIS1 first.
    pub axes: Vec<usize>,
    /// BITPIX.
    pub bitpix: i64,
    /// Byte offset of the data.
    pub data_offset: u64,
    /// True for the primary HDU, IMAGE extensions and tile-compressed images.
    pub is_image: bool,
    /// How a tile-compressed image is stored (then `header`, `axes` and
    /// `bitpix` are the image's, and `data_offset` is where its table starts).
    pub compressed: Option<Box<Tiling>>,
}

impl HduInfo {
    /// EXTNAME, if any.
    pub fn name(&self) -> Option<&str> {
        self.header.get("EXTNAME").and_then(Value::as_str)
    }

    /// Number of data values (0 when NAXIS = 0).
    pub fn len(&self) -> usize {
        if self.axes.is_empty() {
            0
        } else {
            self.axes.iter().product()
        }
    }

    /// True when the HDU has no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn elem_size(&self) -> usize {
        (self.bitpix.unsigned_abs() / 8) as usize
    }
}

/// The most bytes a gzip-compressed FITS file may inflate to in memory.
const MAX_GUNZIPPED: u64 = 4 << 30;

/// A FITS file compressed whole with gzip (`.fits.gz`, as archives often
/// serve them), inflated in memory; `None` for any other file. The last
/// one is kept, so that reading its HDUs one after another (a scan, then
/// the pixels) inflates it once. A bzip2 file is refused by name.
fn gunzipped(path: &Path) -> Result<Option<std::sync::Arc<Vec<u8>>>> {
    type Kept = Option<(std::path::PathBuf, std::time::SystemTime, std::sync::Arc<Vec<u8>>)>;
    static LAST: std::sync::Mutex<Kept> = std::sync::Mutex::new(None);
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 3];
    let n = file.read(&mut magic).map_err(|e| Error::io(path, e))?;
    if magic[..n].starts_with(b"BZh") {
        return Err(Error::format(path, "compressed with bzip2: decompress it first (`bunzip2`)"));
    }
    if !magic[..n].starts_with(&[0x1f, 0x8b]) {
        return Ok(None);
    }
    let modified = file.metadata().and_then(|m| m.modified()).map_err(|e| Error::io(path, e))?;
    let lock = || LAST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((p, t, bytes)) = lock().as_ref() {
        if p == path && *t == modified {
            return Ok(Some(bytes.clone()));
        }
    }
    // Inflated unlocked: readers of other files go on meanwhile.
    file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file))
        .take(MAX_GUNZIPPED + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::format(path, format!("gzip-compressed, and unreadable as such ({e})")))?;
    if bytes.len() as u64 > MAX_GUNZIPPED {
        return Err(Error::format(path, "gzip-compressed to more than 4 GiB: decompress it first (`gunzip`)"));
    }
    let bytes = std::sync::Arc::new(bytes);
    *lock() = Some((path.to_path_buf(), modified, bytes.clone()));
    Ok(Some(bytes))
}

/// Something to read a FITS file's bytes from.
pub(crate) trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// Inflated bytes shared with the kept copy.
struct Shared(std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A FITS file's bytes: the file, or its inflated copy where it is
/// compressed whole with gzip.
pub(crate) fn bytes(path: &Path) -> Result<Box<dyn ReadSeek>> {
    Ok(match gunzipped(path)? {
        Some(b) => Box::new(std::io::Cursor::new(Shared(b))),
        None => Box::new(std::io::BufReader::new(std::fs::File::open(path).map_err(|e| Error::io(path, e))?)),
    })
}

/// Reads every header of a FITS file (or one compressed whole with gzip)
/// and where each HDU's data starts, checking that the file is long enough
/// to hold all the data.
pub fn scan(path: &Path) -> Result<Vec<HduInfo>> {
    if let Some(bytes) = gunzipped(path)? {
        return scan_from(&mut std::io::Cursor::new(&bytes[..]), bytes.len() as u64, path);
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    scan_from(&mut std::io::BufReader::new(file), file_len, path)
}

/// [`scan`] over any seekable byte stream of `file_len` bytes; `path`
/// names it in errors.
pub fn scan_from<R: Read + Seek>(f: &mut R, file_len: u64, path: &Path) -> Result<Vec<HduInfo>> {
    let mut out = Vec::new();
    let mut pos: u64 = 0;
    let mut index = 0;
    while pos < file_len {
        let Some(header) = read_header(f, path, index)? else { break };
        if index == 0 && header.get("SIMPLE") != Some(&Value::Logical(true)) {
            return Err(Error::format(path, "not a FITS file: the first card is not SIMPLE = T"));
        }
        let header_blocks = (header.cards.len() + 1).div_ceil(BLOCK / CARD) as u64;
        pos += header_blocks * BLOCK as u64;
        let bitpix = required_int(&header, "BITPIX", path, index)?;
        if ![8, 16, 32, 64, -32, -64].contains(&bitpix) {
            return Err(Error::format(path, format!("HDU {index}: invalid BITPIX {bitpix}")));
        }
        let naxis = required_int(&header, "NAXIS", path, index)?;
        if !(0..=999).contains(&naxis) {
            return Err(Error::format(path, format!("HDU {index}: NAXIS = {naxis} is out of range")));
        }
        let axes = (1..=naxis)
            .map(|i| {
                let n = required_int(&header, &format!("NAXIS{i}"), path, index)?;
                usize::try_from(n).map_err(|_| Error::format(path, format!("HDU {index}: NAXIS{i} = {n} is negative")))
            })
            .collect::<Result<Vec<_>>>()?;
        let pcount = header.get("PCOUNT").and_then(Value::as_i64).unwrap_or(0).max(0) as u64;
        let gcount = header.get("GCOUNT").and_then(Value::as_i64).unwrap_or(1).max(1) as u64;
        let overflow =
            || Error::format(path, format!("HDU {index}: data size overflows (corrupt NAXISn, PCOUNT or GCOUNT)"));
        let n: u64 = if axes.is_empty() {
            0
        } else {
            axes.iter().try_fold(1u64, |acc, &a| acc.checked_mul(a as u64)).ok_or_else(overflow)?
        };
        let nbytes = n
            .checked_add(pcount)
            .and_then(|v| v.checked_mul(gcount))
            .and_then(|v| v.checked_mul(bitpix.unsigned_abs() / 8))
            .ok_or_else(overflow)?;
        let is_image = index == 0 || header.get("XTENSION").and_then(Value::as_str) == Some("IMAGE");
        if pos.checked_add(nbytes).is_none_or(|end| end > file_len) {
            return Err(Error::format(
                path,
                format!("HDU {index}: data ends early (truncated file; {nbytes} bytes expected)"),
            ));
        }
        // A compressed image this reader cannot decode stays a table, so
        // the file's other images still read; `pixel_hdu` says why when it
        // was the only one.
        match Tiling::from_table(&header, &axes, pcount, path, index).unwrap_or(None) {
            Some(tiling) => out.push(HduInfo {
                index,
                header: tiling.image_header(&header),
                axes: tiling.axes().to_vec(),
                bitpix: tiling.bitpix(),
                data_offset: pos,
                is_image: true,
                compressed: Some(Box::new(tiling)),
            }),
            None => out.push(HduInfo { index, header, axes, bitpix, data_offset: pos, is_image, compressed: None }),
        }
        let skip = nbytes.div_ceil(BLOCK as u64) * BLOCK as u64;
        pos += skip;
        f.seek(SeekFrom::Start(pos)).map_err(|e| Error::io(path, e))?;
        index += 1;
    }
    if out.is_empty() {
        return Err(Error::format(path, "empty file: not a FITS file"));
    }
    Ok(out)
}

/// Reads `count` values of an image HDU starting at value `first` (in file
/// order), as physical values BSCALE·raw + BZERO in float32 (Pan-STARRS1's
/// asinh-compressed flux made linear; see `linear_flux`).
pub fn read_values(path: &Path, hdu: &HduInfo, first: usize, count: usize) -> Result<Vec<f32>> {
    if let Some(bytes) = gunzipped(path)? {
        return read_values_from(&mut std::io::Cursor::new(&bytes[..]), path, hdu, first, count);
    }
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_values_from(&mut f, path, hdu, first, count)
}

/// [`read_values`] from any seekable byte stream.
pub fn read_values_from<R: Read + Seek>(
    f: &mut R,
    path: &Path,
    hdu: &HduInfo,
    first: usize,
    count: usize,
) -> Result<Vec<f32>> {
    if first.checked_add(count).is_none_or(|end| end > hdu.len()) {
        return Err(Error::format(
            path,
            format!(
                "HDU {}: values {first}..{} lie beyond its {} values",
                hdu.index,
                first.saturating_add(count),
                hdu.len()
            ),
        ));
    }
    let mut data = match &hdu.compressed {
        Some(tiling) => tiling.read(f, path, hdu.index, hdu.data_offset, first, count)?,
        None => stored_values(f, path, hdu, first, count)?,
    };
    linear_flux(&hdu.header, &mut data);
    Ok(data)
}

/// Pan-STARRS1 images keep their flux asinh-compressed, saying so with
/// BSOFTEN and BOFFSET (the PS1 image products' convention): the linear
/// flux is BOFFSET + BSOFTEN·2·sinh(v·ln 10 / 2.5). Undone here, so that
/// every survey's pixels arrive linear in flux, as the normalisation and
/// the residuals assume.
fn linear_flux(header: &Header, data: &mut [f32]) {
    let get = |k: &str| header.get(k).and_then(Value::as_f64);
    if let (Some(soft), Some(offset)) = (get("BSOFTEN"), get("BOFFSET")) {
        let k = std::f64::consts::LN_10 / 2.5;
        data.iter_mut().for_each(|v| *v = (offset + soft * 2.0 * (*v as f64 * k).sinh()) as f32);
    }
}

/// The values as stored, through BSCALE/BZERO and BLANK.
fn stored_values<R: Read + Seek>(
    f: &mut R,
    path: &Path,
    hdu: &HduInfo,
    first: usize,
    count: usize,
) -> Result<Vec<f32>> {
    let elem = hdu.elem_size();
    f.seek(SeekFrom::Start(hdu.data_offset + (first * elem) as u64)).map_err(|e| Error::io(path, e))?;
    let mut raw = vec![0u8; count * elem];
    f.read_exact(&mut raw)
        .map_err(|_| Error::format(path, format!("HDU {}: data ends early (truncated file)", hdu.index)))?;
    let bscale = hdu.header.get("BSCALE").and_then(Value::as_f64).unwrap_or(1.0);
    let bzero = hdu.header.get("BZERO").and_then(Value::as_f64).unwrap_or(0.0);
    // Integer data mark undefined pixels with the raw value BLANK (FITS 4.0,
    // §4.4.2.5; floating-point data use NaN): they become NaN, so the
    // non-finite rule covers them instead of their scaled value passing as
    // flux.
    let blank = if hdu.bitpix > 0 { hdu.header.get("BLANK").and_then(Value::as_i64) } else { None };
    let mut data = vec![0f32; count];
    macro_rules! conv {
        ($t:ty, $k:expr) => {
            for (o, c) in data.iter_mut().zip(raw.chunks_exact($k)) {
                let v = <$t>::from_be_bytes(c.try_into().expect("chunk size")) as f64;
                *o = (bscale * v + bzero) as f32;
            }
        };
    }
    macro_rules! conv_int {
        ($t:ty, $k:expr) => {
            for (o, c) in data.iter_mut().zip(raw.chunks_exact($k)) {
                let v = <$t>::from_be_bytes(c.try_into().expect("chunk size"));
                *o = if Some(v as i64) == blank { f32::NAN } else { (bscale * v as f64 + bzero) as f32 };
            }
        };
    }
    match hdu.bitpix {
        8 => conv_int!(u8, 1),
        16 => conv_int!(i16, 2),
        32 => conv_int!(i32, 4),
        64 => conv_int!(i64, 8),
        -32 => conv!(f32, 4),
        -64 => conv!(f64, 8),
        b => return Err(Error::format(path, format!("HDU {}: invalid BITPIX {b}", hdu.index))),
    }
    Ok(data)
}

/// Reads every HDU of a FITS file; image HDUs keep their data, other
/// extensions (tables) get an empty data vector.
pub fn read(path: &Path) -> Result<Vec<ImageHdu>> {
    scan(path)?
        .into_iter()
        .map(|h| {
            let data = if h.is_image && !h.is_empty() { read_values(path, &h, 0, h.len())? } else { Vec::new() };
            Ok(ImageHdu { header: h.header, axes: h.axes, data })
        })
        .collect()
}

/// Whether an HDU is a binary table of values (not a tile-compressed
/// image this reader could not decode).
pub fn is_table(hdu: &HduInfo) -> bool {
    !hdu.is_image
        && hdu.header.get("XTENSION").and_then(Value::as_str) == Some("BINTABLE")
        && hdu.header.get("ZIMAGE") != Some(&Value::Logical(true))
}

/// Whether a FITS file holds a binary table and no image with data: a
/// catalogue, not pixels.
pub fn is_table_only(path: &Path) -> Result<bool> {
    let hdus = scan(path)?;
    Ok(hdus.iter().any(is_table) && !hdus.iter().any(|h| h.is_image && !h.is_empty()))
}

/// The HDU holding a cutout's pixels: the one named IMAGE (HSC cutout
/// layout), else the first image HDU with data. Without one, a
/// tile-compressed image this reader cannot decode is named with why.
pub fn pixel_hdu(path: &Path, hdus: &[HduInfo]) -> Result<HduInfo> {
    let found = hdus
        .iter()
        .find(|h| h.is_image && h.name() == Some("IMAGE") && !h.is_empty())
        .or_else(|| hdus.iter().find(|h| h.is_image && !h.is_empty()));
    if let Some(h) = found {
        return Ok(h.clone());
    }
    let undecoded = hdus.iter().filter(|h| !h.is_image).find_map(|h| {
        let pcount = h.header.get("PCOUNT").and_then(Value::as_i64).unwrap_or(0).max(0) as u64;
        Tiling::from_table(&h.header, &h.axes, pcount, path, h.index).err()
    });
    Err(undecoded.unwrap_or_else(|| Error::format(path, "no image HDU with data")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reals_use_a_signed_two_digit_exponent() {
        assert_eq!(format_real(6.30957344480193e10), "6.30957344480193E+10");
        assert_eq!(format_real(-4.666666666666667e-5), "-4.666666666666667E-05");
        assert_eq!(format_real(2000.0), "2.0E+03");
        assert_eq!(parse_value("  6.30957344480193E+10 / c"), Value::Float(6.30957344480193e10));
        assert_eq!(parse_value("'it''s   ' / q"), Value::Str("it's".into()));
    }

    #[test]
    fn hsc_layout_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.fits");
        let img: Vec<f32> = (0..12).map(|v| v as f32 * 0.5).collect();
        let meta = HscCutoutMeta {
            filter: "HSC-I".into(),
            fluxmag0: 10f64.powf(0.4 * 27.0),
            ra: 150.1,
            dec: 2.2,
            crpix: (2.0, 1.5),
            pixel_scale: 0.168,
        };
        write_hsc_cutout(&p, 4, 3, &img, &[1; 12], &[0.25; 12], &meta).unwrap();
        let bytes = std::fs::metadata(&p).unwrap().len();
        assert_eq!(bytes % 2880, 0);
        let hdus = read(&p).unwrap();
        assert_eq!(hdus.len(), 4);
        assert_eq!(hdus[1].name(), Some("IMAGE"));
        assert_eq!(hdus[1].axes, vec![4, 3]);
        assert_eq!(hdus[1].data, img);
        assert_eq!(hdus[1].header.get("FLUXMAG0").and_then(Value::as_f64), Some(meta.fluxmag0));
        assert_eq!(hdus[2].data, vec![1.0; 12]);
        // The mask planes' long names as HIERARCH cards, read back.
        let mask = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
        assert!(mask.contains("HIERARCH MP_DETECTED_NEGATIVE = "), "HIERARCH card");
        assert!(hdus[2].header.get("MP_DETECTED_NEGATIVE").and_then(Value::as_i64).is_some());
        assert_eq!(hdus[3].name(), Some("VARIANCE"));
    }

    /// Pan-STARRS1's asinh-compressed pixels come back as linear flux:
    /// v = 2.5·log10(f/(2·BSOFTEN) + …) inverted, BOFFSET added.
    #[test]
    fn pan_starrs_asinh_pixels_read_as_linear_flux() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ps1.fits");
        let (soft, offset) = (12.5f64, 3.0f64);
        let flux = [0.0f64, 1.0, 250.0, -40.0];
        let a = 2.5 / std::f64::consts::LN_10;
        let stored: Vec<f32> = flux.iter().map(|f| (a * ((f - offset) / (2.0 * soft)).asinh()) as f32).collect();
        let data = Data::F32 { axes: &[4, 1], data: &stored };
        let mut h = structural_header(&data, true);
        h.push("BSOFTEN", Value::Float(soft), "");
        h.push("BOFFSET", Value::Float(offset), "");
        write(&p, &[(h, data)]).unwrap();
        let got = read(&p).unwrap().remove(0).data;
        for (g, f) in got.iter().zip(flux) {
            assert!((*g as f64 - f).abs() < 1e-4 * (1.0 + f.abs()), "{got:?}");
        }
    }

    /// A scaled 16-bit image as another writer makes it (cards written out
    /// by hand): pixels equal to BLANK read as NaN, the rest as
    /// BSCALE·raw + BZERO; without BLANK the same raw value is a number.
    #[test]
    fn blank_integer_pixels_read_as_nan() {
        let dir = tempfile::tempdir().unwrap();
        let file = |blank: bool| {
            let mut cards = vec!["SIMPLE  =                    T", "BITPIX  =                   16"];
            cards.extend([
                "NAXIS   =                    2",
                "NAXIS1  =                    3",
                "NAXIS2  =                    1",
            ]);
            cards.extend(["BSCALE  =                  0.5", "BZERO   =                  1.0"]);
            if blank {
                cards.push("BLANK   =               -32768");
            }
            cards.push("END");
            let mut bytes: Vec<u8> = cards.iter().flat_map(|c| format!("{c:<80}").into_bytes()).collect();
            bytes.resize(2880, b' ');
            for v in [2i16, -32768, 4] {
                bytes.extend(v.to_be_bytes());
            }
            bytes.resize(5760, 0);
            let p = dir.path().join(format!("blank{blank}.fits"));
            std::fs::write(&p, bytes).unwrap();
            read(&p).unwrap().remove(0).data
        };
        let with = file(true);
        assert!(with[0] == 2.0 && with[1].is_nan() && with[2] == 3.0, "{with:?}");
        assert_eq!(file(false), vec![2.0, -16383.0, 3.0]);
    }
}

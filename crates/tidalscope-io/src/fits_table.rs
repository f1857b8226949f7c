//! Catalogues as FITS binary tables (`BINTABLE`), which astropy, TOPCAT and
//! fitsio read with each column's type: written from a CSV catalogue in two
//! streaming passes — one learns each column's type and width, one writes
//! the rows — so memory does not grow with the number of rows.
//!
//! Read back (and read from astropy, TOPCAT or fitsio) as text, a string
//! per cell, so that a FITS table can stand wherever a catalogue CSV does
//! ([`read_text`]).
//!
//! A column is a 64-bit integer (`K`) when every value is an integer written
//! plainly, a 64-bit float (`D`, empty values NaN) when every value is a
//! number or empty, and fixed-width text (`nA`) otherwise; an integer with
//! leading zeros ("007") is text, as it is a code, not a number, and so is
//! one too large for 64 bits; the `id` column is never float.

use crate::atomic::AtomicFile;
use crate::fits::{Header, Value};
use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

const BLOCK: usize = 2880;

/// Byte width of one element of a binary-table type letter.
pub(crate) fn type_width(t: u8) -> Option<usize> {
    Some(match t {
        b'L' | b'B' | b'A' => 1,
        b'I' => 2,
        b'J' | b'E' => 4,
        b'K' | b'D' | b'C' | b'P' => 8,
        b'M' | b'Q' => 16,
        _ => return None,
    })
}

/// A parsed `TFORMn`: repeat count, type letter and, for `P`/`Q`, the
/// element type letter.
pub(crate) fn parse_tform(s: &str) -> Option<(usize, u8, Option<u8>)> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let repeat = if digits == 0 { 1 } else { s[..digits].parse().ok()? };
    let rest = &s.as_bytes()[digits..];
    let t = *rest.first()?;
    let element = if t == b'P' || t == b'Q' { Some(*rest.get(1)?) } else { None };
    Some((repeat, t, element))
}

/// A FITS binary table's scalar and text columns as text, one string per
/// cell, as a CSV would hold them.
#[derive(Debug, Clone, PartialEq)]
pub struct TextTable {
    /// The HDU read (the first binary table; 0 for a Parquet file).
    pub hdu: usize,
    /// Column names (TTYPEn; `col<n>` where missing).
    pub columns: Vec<String>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
    /// Columns left out: arrays (a repeat above 1 but text), variable-length
    /// arrays, bits and complex numbers, which one cell cannot hold.
    pub skipped: Vec<String>,
}

/// One column of a table being read.
struct Field {
    offset: usize,
    kind: u8,
    width: usize,
    scale: f64,
    zero: f64,
    null: Option<i64>,
}

impl Field {
    /// A cell as text: integers plainly (TZERO'd unsigned included), floats
    /// as the shortest text that reads back to the same value, NaN and
    /// TNULL empty, logicals `true`/`false`, text without trailing blanks.
    fn text(&self, b: &[u8]) -> String {
        let float = |v: f64| if v.is_nan() { String::new() } else { format!("{v}") };
        let int = |raw: i64| {
            if Some(raw) == self.null {
                String::new()
            } else if self.scale == 1.0 && self.zero.fract() == 0.0 && self.zero.abs() < 1e19 {
                (raw as i128 + self.zero as i128).to_string()
            } else {
                float(raw as f64 * self.scale + self.zero)
            }
        };
        match self.kind {
            b'A' => {
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                String::from_utf8_lossy(&b[..end]).trim_end().to_string()
            }
            b'L' => match b[0] {
                b'T' => "true".into(),
                b'F' => "false".into(),
                _ => String::new(),
            },
            b'B' => int(b[0] as i64),
            b'I' => int(i16::from_be_bytes([b[0], b[1]]) as i64),
            b'J' => int(i32::from_be_bytes(b[..4].try_into().expect("4 bytes")) as i64),
            b'K' => int(i64::from_be_bytes(b[..8].try_into().expect("8 bytes"))),
            b'E' => {
                let v = f32::from_be_bytes(b[..4].try_into().expect("4 bytes"));
                if self.scale == 1.0 && self.zero == 0.0 {
                    if v.is_nan() {
                        String::new()
                    } else {
                        format!("{v}")
                    }
                } else {
                    float(v as f64 * self.scale + self.zero)
                }
            }
            _ => float(f64::from_be_bytes(b[..8].try_into().expect("8 bytes")) * self.scale + self.zero),
        }
    }
}

/// Reads the first binary table of a FITS file as text ([`TextTable`]):
/// how a FITS catalogue (astropy's, the Legacy Surveys' tractor files)
/// stands where a catalogue CSV does.
pub fn read_text(path: &Path) -> Result<TextTable> {
    let hdus = crate::fits::scan(path)?;
    let h = hdus
        .iter()
        .find(|h| crate::fits::is_table(h))
        .ok_or_else(|| Error::format(path, "no binary table (BINTABLE) in the file"))?;
    read_hdu_text(path, h)
}

/// [`read_text`] of the binary-table HDU `h` of `path`.
pub fn read_hdu_text(path: &Path, h: &crate::fits::HduInfo) -> Result<TextTable> {
    use std::io::{Read, Seek, SeekFrom};
    let bad = |what: String| Error::format(path, format!("HDU {} (binary table): {what}", h.index));
    let (row_len, rows) = match h.axes[..] {
        [a, b] => (a, b),
        _ => return Err(bad("NAXIS is not 2".into())),
    };
    let int = |k: String| h.header.get(&k).and_then(Value::as_i64);
    let num = |k: String, d: f64| h.header.get(&k).and_then(Value::as_f64).unwrap_or(d);
    let mut out = TextTable { hdu: h.index, columns: Vec::new(), rows: Vec::new(), skipped: Vec::new() };
    let mut fields = Vec::new();
    let mut offset = 0usize;
    for i in 1..=int("TFIELDS".into()).unwrap_or(0).clamp(0, 999) as usize {
        let form = h.header.get(&format!("TFORM{i}")).and_then(Value::as_str).unwrap_or("").to_string();
        let name = h.header.get(&format!("TTYPE{i}")).and_then(Value::as_str).map(str::trim).unwrap_or("");
        let name = if name.is_empty() { format!("col{i}") } else { name.to_string() };
        let (repeat, t, _) = parse_tform(&form).ok_or_else(|| bad(format!("TFORM{i} = '{form}' unreadable")))?;
        let width = if t == b'X' {
            repeat.div_ceil(8)
        } else {
            let w = type_width(t).ok_or_else(|| bad(format!("TFORM{i} = '{form}' has an unknown type")))?;
            w.checked_mul(repeat).ok_or_else(|| bad(format!("TFORM{i} = '{form}' is too wide")))?
        };
        let scalar = repeat == 1 && matches!(t, b'L' | b'B' | b'I' | b'J' | b'K' | b'E' | b'D');
        if scalar || t == b'A' {
            let (scale, zero) = (num(format!("TSCAL{i}"), 1.0), num(format!("TZERO{i}"), 0.0));
            fields.push(Field { offset, kind: t, width, scale, zero, null: int(format!("TNULL{i}")) });
            out.columns.push(name);
        } else if width > 0 {
            out.skipped.push(name);
        }
        offset = offset.checked_add(width).ok_or_else(|| bad("row width overflows".into()))?;
    }
    if offset > row_len {
        return Err(bad(format!("columns need {offset} bytes of a {row_len}-byte row")));
    }
    let mut f = crate::fits::bytes(path)?;
    f.seek(SeekFrom::Start(h.data_offset)).map_err(|e| Error::io(path, e))?;
    let mut row = vec![0u8; row_len];
    for _ in 0..rows {
        f.read_exact(&mut row).map_err(|_| bad("the table ends early (truncated file)".into()))?;
        out.rows.push(fields.iter().map(|c| c.text(&row[c.offset..c.offset + c.width])).collect());
    }
    Ok(out)
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Float,
    /// A float column asked to be float32 ([`TableMeta::singles`]).
    Single,
    Text,
}

/// Type and width of one column, learnt from its values.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    int: bool,
    float: bool,
    single: bool,
    pub(crate) width: usize,
}

impl Column {
    fn see(&mut self, v: &[u8]) {
        let s = std::str::from_utf8(v).unwrap_or("\u{fffd}");
        self.width = self.width.max(v.len());
        let plain_int = s.parse::<i64>().map(|i| (i.to_string() == s, i.unsigned_abs() <= 1 << 53));
        self.int &= matches!(plain_int, Ok((true, _)));
        // An integer written otherwise ("007") is a code, not a number; one
        // beyond 2⁵³ (a survey object id), or beyond 64 bits, would lose
        // digits as a float: text.
        let digits = s.strip_prefix('-').unwrap_or(s);
        let integer_like = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let exact = match plain_int {
            Ok(p) => p == (true, true),
            Err(_) => !integer_like,
        };
        self.float &= s.is_empty() || (exact && s.parse::<f64>().is_ok());
    }

    pub(crate) fn kind(&self) -> Kind {
        if self.int {
            Kind::Int
        } else if self.float && self.single {
            Kind::Single
        } else if self.float {
            Kind::Float
        } else {
            Kind::Text
        }
    }

    fn bytes(&self) -> usize {
        match self.kind() {
            Kind::Int | Kind::Float => 8,
            Kind::Single => 4,
            Kind::Text => self.width.max(1),
        }
    }

    fn tform(&self) -> String {
        match self.kind() {
            Kind::Int => "K".into(),
            Kind::Float => "D".into(),
            Kind::Single => "E".into(),
            Kind::Text => format!("{}A", self.width.max(1)),
        }
    }
}

/// What a table carries besides its columns.
#[derive(Debug, Clone, Default)]
pub struct TableMeta {
    /// `EXTNAME` of the table HDU.
    pub extname: String,
    /// Units by column name (`TUNITn`), for the columns that have one.
    pub units: Vec<(String, String)>,
    /// Further header cards (provenance), after the structural ones.
    pub keywords: Vec<(String, Value, String)>,
    /// Columns that are floats whatever their values look like (a column of
    /// fractions that happen to be all `0` is still a fraction).
    pub floats: Vec<String>,
    /// Columns that are text whatever their values look like (a column of
    /// band names that happens to be empty in every row is still text).
    pub texts: Vec<String>,
    /// Float columns stored as 32-bit floats (values that were float32,
    /// e.g. embeddings): FITS `E`, Parquet `FLOAT`.
    pub singles: Vec<String>,
    /// FITS only: the adjacent float32 columns `{name}_0` … `{name}_{D−1}`
    /// become one array column `name` of D elements (`DE`), which astropy
    /// reads as a 2-D column. Other formats keep one column per element.
    pub vector: Option<String>,
}

pub(crate) fn reader(path: &Path) -> Result<csv::Reader<std::fs::File>> {
    csv::Reader::from_path(path).map_err(|e| Error::format(path, e.to_string()))
}

/// Reads a CSV catalogue once to learn each column's type (and width).
/// With `ascii`, names and values must be printable ASCII (FITS). Returns
/// the columns and the row count.
pub(crate) fn scan_columns(csv: &Path, meta: &TableMeta, ascii: bool) -> Result<(Vec<Column>, usize)> {
    let mut r = reader(csv)?;
    let names = r.byte_headers().map_err(|e| Error::format(csv, e.to_string()))?.clone();
    let mut cols: Vec<Column> = names
        .iter()
        .map(|n| {
            let name = String::from_utf8_lossy(n).into_owned();
            let single = meta.singles.contains(&name);
            // Ids are integers or text, never floats: "4" must not read back as 4.0.
            let float = name != "id";
            Column { name, int: true, float, single, width: 0 }
        })
        .collect();
    for (i, c) in cols.iter().enumerate() {
        // TTYPE values must fit one header card, in printable ASCII.
        if ascii && (c.name.len() > 68 || !c.name.bytes().all(|b| (b' '..=b'~').contains(&b))) {
            return Err(Error::format(
                csv,
                format!("column {:?}: a FITS column name must be 1 to 68 printable ASCII characters", c.name),
            ));
        }
        if c.name.is_empty() {
            return Err(Error::format(csv, format!("column {} has no name", i + 1)));
        }
        if cols[..i].iter().any(|o| o.name == c.name) {
            return Err(Error::format(csv, format!("column {:?} appears twice", c.name)));
        }
    }
    let mut rows = 0usize;
    let mut rec = csv::ByteRecord::new();
    while r.read_byte_record(&mut rec).map_err(|e| Error::format(csv, format!("row {}: {e}", rows + 1)))? {
        for (c, v) in cols.iter_mut().zip(rec.iter()) {
            if ascii && !v.iter().all(|b| (b' '..=b'~').contains(b)) {
                return Err(Error::format(
                    csv,
                    format!("row {}, column {:?}: FITS text must be printable ASCII", rows + 1, c.name),
                ));
            }
            if !ascii && std::str::from_utf8(v).is_err() {
                return Err(Error::format(csv, format!("row {}, column {:?}: not UTF-8 text", rows + 1, c.name)));
            }
            c.see(v);
        }
        rows += 1;
    }
    for c in cols.iter_mut().filter(|c| (meta.floats.contains(&c.name) || c.single) && c.float) {
        c.int = false;
    }
    for c in cols.iter_mut().filter(|c| meta.texts.contains(&c.name)) {
        (c.int, c.float) = (false, false);
    }
    if rows == 0 {
        // No values to type the columns by: text, as written.
        cols.iter_mut().for_each(|c| c.int = false);
        cols.iter_mut().for_each(|c| c.float = false);
    }
    Ok((cols, rows))
}

/// Writes the CSV catalogue `csv` as a FITS file at `fits` (an empty
/// primary HDU, then one binary table), atomically. Returns the row count.
pub fn csv_to_fits(csv: &Path, fits: &Path, meta: &TableMeta) -> Result<usize> {
    let mut primary = Header::new();
    primary
        .push("SIMPLE", Value::Logical(true), "conforms to FITS")
        .push("BITPIX", Value::Int(8), "")
        .push("NAXIS", Value::Int(0), "no data: the table follows")
        .push("EXTEND", Value::Logical(true), "");
    let mut out = AtomicFile::create(fits)?;
    out.write_all(&primary.to_bytes()).map_err(|e| Error::io(fits, e))?;
    let rows = write_table_hdu(&mut out, csv, fits, meta)?;
    out.commit()?;
    Ok(rows)
}

/// Appends the CSV catalogue `csv` to `out` (the FITS file `fits`, for
/// errors) as a binary-table extension HDU, padded to a block. Returns
/// the row count.
pub fn write_table_hdu(out: &mut impl Write, csv: &Path, fits: &Path, meta: &TableMeta) -> Result<usize> {
    let (cols, rows) = scan_columns(csv, meta, true)?;
    let mut rec = csv::ByteRecord::new();
    let row_bytes: usize = cols.iter().map(Column::bytes).sum();
    let fields = fits_fields(csv, &cols, meta)?;

    let mut h = Header::new();
    h.push("XTENSION", Value::Str("BINTABLE".into()), "binary table")
        .push("BITPIX", Value::Int(8), "")
        .push("NAXIS", Value::Int(2), "")
        .push("NAXIS1", Value::Int(row_bytes as i64), "bytes per row")
        .push("NAXIS2", Value::Int(rows as i64), "rows")
        .push("PCOUNT", Value::Int(0), "")
        .push("GCOUNT", Value::Int(1), "")
        .push("TFIELDS", Value::Int(fields.len() as i64), "columns");
    for (i, (name, tform)) in fields.iter().enumerate() {
        h.push(&format!("TTYPE{}", i + 1), Value::Str(name.clone()), "");
        h.push(&format!("TFORM{}", i + 1), Value::Str(tform.clone()), "");
        if let Some((_, unit)) = meta.units.iter().find(|(n, _)| n == name) {
            h.push(&format!("TUNIT{}", i + 1), Value::Str(unit.clone()), "");
        }
    }
    if !meta.extname.is_empty() {
        h.push("EXTNAME", Value::Str(meta.extname.clone()), "");
    }
    for (k, v, c) in &meta.keywords {
        h.push(k, v.clone(), c);
    }

    let io = |e: std::io::Error| Error::io(fits, e);
    out.write_all(&h.to_bytes()).map_err(io)?;
    let mut r = reader(csv)?;
    let mut row = Vec::with_capacity(row_bytes);
    let mut written = 0usize;
    while r.read_byte_record(&mut rec).map_err(|e| Error::format(csv, e.to_string()))? {
        row.clear();
        for (c, v) in cols.iter().zip(rec.iter()) {
            let s = std::str::from_utf8(v).unwrap_or("");
            match c.kind() {
                Kind::Int => row.extend(s.parse::<i64>().unwrap_or(0).to_be_bytes()),
                Kind::Float => row.extend(s.parse::<f64>().unwrap_or(f64::NAN).to_be_bytes()),
                Kind::Single => row.extend(s.parse::<f32>().unwrap_or(f32::NAN).to_be_bytes()),
                Kind::Text => {
                    let start = row.len();
                    row.extend_from_slice(v);
                    row.resize(start + c.bytes(), b' ');
                }
            }
        }
        out.write_all(&row).map_err(io)?;
        written += 1;
    }
    if written != rows {
        return Err(Error::format(csv, format!("changed while being written: {rows} rows, then {written}")));
    }
    let data = rows * row_bytes;
    out.write_all(&vec![0u8; data.div_ceil(BLOCK) * BLOCK - data]).map_err(io)?;
    Ok(rows)
}

/// The table's fields as `(TTYPE, TFORM)`: one per column, except that
/// [`TableMeta::vector`]'s element columns make one array field.
fn fits_fields(csv: &Path, cols: &[Column], meta: &TableMeta) -> Result<Vec<(String, String)>> {
    let mut fields = Vec::new();
    let mut i = 0;
    while i < cols.len() {
        let element = |j: usize, k: usize| meta.vector.as_ref().is_some_and(|v| cols[j].name == format!("{v}_{k}"));
        if element(i, 0) {
            let d = (i..cols.len()).take_while(|&j| element(j, j - i)).count();
            if cols[i..i + d].iter().any(|c| c.kind() != Kind::Single) {
                return Err(Error::format(
                    csv,
                    format!("vector columns {}_*: every element must be float32", cols[i].name),
                ));
            }
            fields.push((meta.vector.clone().expect("element of a vector"), format!("{d}E")));
            i += d;
        } else {
            fields.push((cols[i].name.clone(), cols[i].tform()));
            i += 1;
        }
    }
    Ok(fields)
}

/// True when `path` names a FITS file by its extension (`.fits`, `.fit`,
/// `.fts`), the cue for writing a catalogue as a FITS table.
pub fn is_fits_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "fits" | "fit" | "fts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_typed_and_the_file_is_whole_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("t.csv");
        std::fs::write(&csv, "id,score,kind,code\n1,0.5,shell,007\n22,,stream,8\n").unwrap();
        let fits = dir.path().join("t.fits");
        let meta = TableMeta {
            extname: "SCORES".into(),
            units: vec![("score".into(), "probability".into())],
            keywords: vec![("ORIGIN".into(), Value::Str("tidalscope".into()), "".into())],
            floats: vec![],
            texts: vec![],
            singles: vec![],
            vector: None,
        };
        assert_eq!(csv_to_fits(&csv, &fits, &meta).unwrap(), 2);
        let bytes = std::fs::read(&fits).unwrap();
        assert_eq!(bytes.len() % BLOCK, 0);
        let text = String::from_utf8_lossy(&bytes[BLOCK..2 * BLOCK]).into_owned();
        for card in ["TFORM1  = 'K       '", "TFORM2  = 'D       '", "TFORM3  = '6A      '", "TFORM4  = '3A      '"] {
            assert!(text.contains(card), "{card} in {text}");
        }
        assert!(text.contains("NAXIS1  =                   25") && text.contains("NAXIS2  =                    2"));
        assert!(text.contains("TUNIT2  = 'probability'") && text.contains("EXTNAME = 'SCORES  '"));
        let data = &bytes[2 * BLOCK..];
        assert_eq!(&data[..8], &1i64.to_be_bytes());
        assert_eq!(&data[8..16], &0.5f64.to_be_bytes());
        assert_eq!(&data[16..25], b"shell 007");
        assert!(f64::from_be_bytes(data[33..41].try_into().unwrap()).is_nan(), "empty float is NaN");
        assert!(is_fits_name(Path::new("a/b.FITS")) && !is_fits_name(Path::new("b.csv")));
        // Ids beyond 2^53 with a gap stay exact, as text; bad names are refused.
        std::fs::write(&csv, "object_id,σ\n36407037608965120,1\n,2\n").unwrap();
        let err = csv_to_fits(&csv, &fits, &meta).unwrap_err().to_string();
        assert!(err.contains("column \"σ\"") && err.contains("printable ASCII"), "{err}");
        std::fs::write(&csv, "object_id,s\n36407037608965120,1\n,2\n").unwrap();
        csv_to_fits(&csv, &fits, &meta).unwrap();
        let text = String::from_utf8_lossy(&std::fs::read(&fits).unwrap()[BLOCK..2 * BLOCK]).into_owned();
        assert!(text.contains("TFORM1  = '17A     '"), "{text}");
        std::fs::write(&csv, "a,a\n1,2\n").unwrap();
        assert!(csv_to_fits(&csv, &fits, &meta).unwrap_err().to_string().contains("appears twice"));
        // Ids beyond 64 bits, or written as floats, stay text (not colliding
        // floats, nor "4" read back as 4.0): read back cell for cell.
        std::fs::write(&csv, "id,x\n18446744073709551615,1.5\n18446744073709551614,2\n").unwrap();
        csv_to_fits(&csv, &fits, &meta).unwrap();
        let back = read_text(&fits).unwrap().rows;
        assert_eq!(back[0][0], "18446744073709551615");
        assert_eq!(back[1][0], "18446744073709551614");
        std::fs::write(&csv, "id,x\n1.0,1\n4,2\n").unwrap();
        csv_to_fits(&csv, &fits, &meta).unwrap();
        let back = read_text(&fits).unwrap().rows;
        assert_eq!((back[0][0].as_str(), back[1][0].as_str(), back[1][1].as_str()), ("1.0", "4", "2"));
        // A column asked to be text stays text when every value is empty
        // (it would read as a float column of NaN).
        std::fs::write(&csv, "id,bands,other\n1,,\n2,,\n").unwrap();
        let meta = TableMeta { texts: vec!["bands".into()], ..meta };
        csv_to_fits(&csv, &fits, &meta).unwrap();
        let text = String::from_utf8_lossy(&std::fs::read(&fits).unwrap()[BLOCK..2 * BLOCK]).into_owned();
        assert!(text.contains("TFORM2  = '1A      '") && text.contains("TFORM3  = 'D       '"), "{text}");
    }

    #[test]
    fn vector_columns_become_one_float32_array_column() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("t.csv");
        std::fs::write(&csv, "id,e_0,e_1,e_2,x\n7,0.5,-1,0.1,2.5\n").unwrap();
        let fits = dir.path().join("t.fits");
        let meta = TableMeta {
            singles: vec!["e_0".into(), "e_1".into(), "e_2".into()],
            vector: Some("e".into()),
            ..TableMeta::default()
        };
        csv_to_fits(&csv, &fits, &meta).unwrap();
        let bytes = std::fs::read(&fits).unwrap();
        let text = String::from_utf8_lossy(&bytes[BLOCK..2 * BLOCK]).into_owned();
        assert!(text.contains("TFIELDS =                    3"), "{text}");
        assert!(text.contains("TTYPE2  = 'e       '") && text.contains("TFORM2  = '3E      '"), "{text}");
        assert!(text.contains("NAXIS1  =                   28"), "8 + 3×4 + 8 bytes: {text}");
        let data = &bytes[2 * BLOCK..];
        assert_eq!(&data[8..12], &0.5f32.to_be_bytes());
        assert_eq!(&data[12..16], &(-1f32).to_be_bytes());
        assert_eq!(&data[16..20], &0.1f32.to_be_bytes());
        assert_eq!(&data[20..28], &2.5f64.to_be_bytes());
    }
}

//! Catalogues as Apache Parquet files (the `parquet` crate of Apache Arrow),
//! which pandas, pyarrow, astropy and DuckDB read with each column's type.
//!
//! Written from a CSV catalogue in two streaming passes, like the FITS
//! tables: one learns the column types (the same rules: 64-bit integers,
//! 64-bit floats with empty values NaN, UTF-8 text), one writes row groups
//! of [`ROW_GROUP`] rows, so memory holds one row group whatever the
//! number of rows. Provenance goes into the file's key-value metadata, and
//! also as astropy's `table_meta_yaml` entry, so that
//! `astropy.table.Table.read` gives the units and the table's `meta`.
//! Empty numbers are written as nulls (NaN in pandas, masked in astropy).
//!
//! Read ([`read_text`]) as a catalogue, as a FITS table is: its scalar
//! columns as text, so that a Parquet file (Rubin's and pandas' catalogue
//! format) stands where a catalogue CSV does. Pages compressed with
//! Snappy (pyarrow's and pandas' default), gzip, LZ4 or Zstandard are
//! read; Brotli is refused by name.

use crate::fits::Value;
use crate::fits_table::{reader, scan_columns, Column, Kind, TableMeta, TextTable};
use crate::{Error, Result};
use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, FloatType, Int64Type};
use parquet::file::metadata::{ColumnChunkMetaData, KeyValue};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use std::path::Path;
use std::sync::Arc;

/// Rows per row group.
pub const ROW_GROUP: usize = 65_536;

/// True when `path` names a Parquet file by its extension (`.parquet`,
/// `.pq`).
pub fn is_parquet_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "parquet" | "pq"))
}

fn pq_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |e| Error::format(path, format!("writing Parquet: {e}"))
}

/// A YAML scalar in single quotes.
fn yaml_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Logical(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => s.clone(),
        Value::None => String::new(),
    }
}

/// astropy's table header (as its ECSV and Parquet writers make it): column
/// types and units, and the table's metadata.
fn astropy_yaml(cols: &[Column], meta: &TableMeta) -> String {
    let mut y = String::from("datatype:\n");
    for c in cols {
        let t = match c.kind() {
            Kind::Int => "int64",
            Kind::Float => "float64",
            Kind::Single => "float32",
            Kind::Text => "string",
        };
        y += &format!("- {{name: {}, datatype: {t}", yaml_str(&c.name));
        if let Some((_, u)) = meta.units.iter().find(|(n, _)| *n == c.name) {
            y += &format!(", unit: {}", yaml_str(u));
        }
        y += "}\n";
    }
    if !meta.keywords.is_empty() || !meta.extname.is_empty() {
        y += "meta: !!omap\n";
        if !meta.extname.is_empty() {
            y += &format!("- {{EXTNAME: {}}}\n", yaml_str(&meta.extname));
        }
        for (k, v, _) in &meta.keywords {
            y += &format!("- {{{}: {}}}\n", yaml_str(k), yaml_str(&value_text(v)));
        }
    }
    y
}

/// Float columns are nullable: an empty CSV cell is a null there. Integer
/// columns have no empty cells (one makes the column float) and an empty
/// text is an empty string.
fn repetition(kind: Kind) -> Repetition {
    match kind {
        Kind::Float | Kind::Single => Repetition::OPTIONAL,
        Kind::Int | Kind::Text => Repetition::REQUIRED,
    }
}

/// Writes the CSV catalogue `csv` as a Parquet file at `out`, atomically.
/// Returns the row count.
pub fn csv_to_parquet(csv: &Path, out: &Path, meta: &TableMeta) -> Result<usize> {
    let (cols, rows) = scan_columns(csv, meta, false)?;
    let err = pq_err(out);
    let fields = cols
        .iter()
        .map(|c| {
            let b = match c.kind() {
                Kind::Int => Type::primitive_type_builder(&c.name, Physical::INT64),
                Kind::Float => Type::primitive_type_builder(&c.name, Physical::DOUBLE),
                Kind::Single => Type::primitive_type_builder(&c.name, Physical::FLOAT),
                Kind::Text => Type::primitive_type_builder(&c.name, Physical::BYTE_ARRAY)
                    .with_logical_type(Some(LogicalType::String)),
            };
            b.with_repetition(repetition(c.kind())).build().map(Arc::new)
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(&err)?;
    let schema = Arc::new(Type::group_type_builder("schema").with_fields(fields).build().map_err(&err)?);
    let mut kv: Vec<KeyValue> = meta.keywords.iter().map(|(k, v, _)| KeyValue::new(k.clone(), value_text(v))).collect();
    for (c, u) in &meta.units {
        kv.push(KeyValue::new(format!("unit:{c}"), u.clone()));
    }
    // astropy sizes its text columns from these (bytes ≥ characters).
    for c in cols.iter().filter(|c| c.kind() == Kind::Text) {
        kv.push(KeyValue::new(format!("table::len::{}", c.name), c.width.max(1).to_string()));
    }
    kv.push(KeyValue::new("table_meta_yaml".into(), astropy_yaml(&cols, meta)));
    let props = WriterProperties::builder()
        .set_created_by(format!("tidalscope {}", tidalscope_core::VERSION))
        .set_key_value_metadata(Some(kv))
        .build();
    let mut file = crate::atomic::AtomicFile::create(out)?;
    let mut writer = SerializedFileWriter::new(&mut file, schema, Arc::new(props)).map_err(&err)?;

    let mut r = reader(csv)?;
    let mut rec = csv::ByteRecord::new();
    let mut written = 0usize;
    // One row group's values, by column.
    let mut ints: Vec<Vec<i64>> = vec![Vec::new(); cols.len()];
    let mut floats: Vec<Vec<f64>> = vec![Vec::new(); cols.len()];
    let mut singles: Vec<Vec<f32>> = vec![Vec::new(); cols.len()];
    let mut texts: Vec<Vec<ByteArray>> = vec![Vec::new(); cols.len()];
    // Definition levels of the nullable (number) columns: 0 = null.
    let mut defined: Vec<Vec<i16>> = vec![Vec::new(); cols.len()];
    loop {
        let more = r.read_byte_record(&mut rec).map_err(|e| Error::format(csv, e.to_string()))?;
        if more {
            for (i, (c, v)) in cols.iter().zip(rec.iter()).enumerate() {
                let s = std::str::from_utf8(v).unwrap_or("");
                if repetition(c.kind()) == Repetition::OPTIONAL {
                    defined[i].push(i16::from(!s.is_empty()));
                    if s.is_empty() {
                        continue;
                    }
                }
                match c.kind() {
                    Kind::Int => ints[i].push(s.parse::<i64>().unwrap_or(0)),
                    Kind::Float => floats[i].push(s.parse::<f64>().unwrap_or(f64::NAN)),
                    Kind::Single => singles[i].push(s.parse::<f32>().unwrap_or(f32::NAN)),
                    Kind::Text => texts[i].push(ByteArray::from(v.to_vec())),
                }
            }
            written += 1;
        }
        let pending = written % ROW_GROUP;
        if (more && pending == 0) || (!more && (pending != 0 || written == 0)) {
            let mut group = writer.next_row_group().map_err(&err)?;
            let mut i = 0;
            while let Some(mut col) = group.next_column().map_err(&err)? {
                let def = (repetition(cols[i].kind()) == Repetition::OPTIONAL).then_some(&defined[i][..]);
                match cols[i].kind() {
                    Kind::Int => col.typed::<Int64Type>().write_batch(&ints[i], def, None),
                    Kind::Float => col.typed::<DoubleType>().write_batch(&floats[i], def, None),
                    Kind::Single => col.typed::<FloatType>().write_batch(&singles[i], def, None),
                    Kind::Text => col.typed::<ByteArrayType>().write_batch(&texts[i], def, None),
                }
                .map_err(&err)?;
                col.close().map_err(&err)?;
                ints[i].clear();
                floats[i].clear();
                singles[i].clear();
                texts[i].clear();
                defined[i].clear();
                i += 1;
            }
            group.close().map_err(&err)?;
        }
        if !more {
            break;
        }
    }
    if written != rows {
        return Err(Error::format(csv, format!("changed while being written: {rows} rows, then {written}")));
    }
    writer.close().map_err(&err)?;
    file.commit()?;
    Ok(rows)
}

/// True when the file at `path` starts with Parquet's magic bytes.
pub fn is_parquet(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == b"PAR1"
}

/// Reads a Parquet file as text ([`TextTable`], as a FITS table is read):
/// its top-level scalar columns, each cell as the CSV would hold it
/// (integers in full, floats as the shortest decimal that reads back,
/// booleans `true`/`false`, nulls and NaN empty); nested columns (lists,
/// structs, maps) and pandas' index columns are left out.
pub fn read_text(path: &Path) -> Result<TextTable> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_text_from(file, path)
}

/// [`read_text`] of the Parquet bytes of `source`; `path` names it in errors.
///
/// The parquet crate's page decoders panic on some damaged files (found by
/// `fuzz_parsers parquet`): such a panic is caught here and becomes an
/// error naming the file, and its message is kept off the terminal (by a
/// panic hook installed once, chained to the one before it, silent only on
/// this thread and only during the read; a build with `panic = "abort"`
/// would abort instead).
pub fn read_text_from<R: parquet::file::reader::ChunkReader + 'static>(source: R, path: &Path) -> Result<TextTable> {
    use std::cell::Cell;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    thread_local!(static QUIET: Cell<bool> = const { Cell::new(false) });
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `try_with`: a hook that panicked would abort the process.
            if !QUIET.try_with(Cell::get).unwrap_or(false) {
                previous(info)
            }
        }));
    });
    let quiet = QUIET.with(|q| q.replace(true));
    let read = catch_unwind(AssertUnwindSafe(|| decode(source, path)));
    QUIET.with(|q| q.set(quiet));
    read.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let why = if why.is_empty() { String::new() } else { format!(": {why}") };
        Err(Error::format(path, format!("reading Parquet: damaged or unsupported file (the decoder failed{why})")))
    })
}

fn decode<R: parquet::file::reader::ChunkReader + 'static>(source: R, path: &Path) -> Result<TextTable> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let bad = |e: parquet::errors::ParquetError| Error::format(path, format!("reading Parquet: {e}"));
    let reader = SerializedFileReader::new(source).map_err(bad)?;
    // Codecs not compiled in, refused before any page is read.
    let unread = |c: &ColumnChunkMetaData| match c.compression() {
        Compression::BROTLI(_) => Some((c.column_path().string(), "Brotli")),
        Compression::LZO => Some((c.column_path().string(), "LZO")),
        _ => None,
    };
    if let Some((column, codec)) = reader.metadata().row_groups().iter().flat_map(|g| g.columns()).find_map(unread) {
        return Err(Error::format(
            path,
            format!(
                "column {column:?} is compressed with {codec}, which is not read: rewrite the file with \
                 another codec (pyarrow: `pq.write_table(table, path, compression=\"zstd\")`)"
            ),
        ));
    }
    let schema = reader.metadata().file_metadata().schema();
    let mut out = TextTable { hdu: 0, columns: Vec::new(), rows: Vec::new(), skipped: Vec::new() };
    let mut kept = Vec::new();
    for f in schema.get_fields() {
        let name = f.name();
        if f.is_primitive() && f.get_basic_info().repetition() != Repetition::REPEATED && readable(f) {
            if !name.starts_with("__index_level_") {
                out.columns.push(name.to_string());
                kept.push(f.clone());
            }
        } else {
            out.skipped.push(name.to_string());
        }
    }
    // Nanosecond timestamps (pandas' datetime64) come from the crate as
    // plain integers; it prints every timestamp with a UTC offset, also
    // local ("naive") ones, which name no zone.
    let stamps: Vec<Option<Stamp>> = kept
        .iter()
        .map(|f| match f.get_basic_info().logical_type_ref() {
            Some(LogicalType::Timestamp(t)) => {
                Some(Stamp { nanos: matches!(t.unit, parquet::basic::TimeUnit::NANOS), local: !t.is_adjusted_to_u_t_c })
            }
            _ => None,
        })
        .collect();
    let projection = Type::group_type_builder(schema.name()).with_fields(kept).build().map_err(bad)?;
    let rows = reader.get_row_iter(Some(projection)).map_err(bad)?;
    for (k, row) in rows.enumerate() {
        let row = row.map_err(|e| Error::format(path, format!("row {}: reading Parquet: {e}", k + 1)))?;
        out.rows.push(
            row.get_column_iter()
                .zip(&stamps)
                .map(|((_, v), &stamp)| {
                    let text = match v {
                        parquet::record::Field::Long(t) if stamp.is_some_and(|s| s.nanos) => {
                            cell_text(&parquet::record::Field::TimestampMicros(t.div_euclid(1000)))
                        }
                        v => cell_text(v),
                    };
                    match stamp {
                        Some(Stamp { local: true, .. }) => {
                            text.strip_suffix(" +00:00").map(str::to_string).unwrap_or(text)
                        }
                        _ => text,
                    }
                })
                .collect(),
        );
    }
    Ok(out)
}

/// A timestamp column, for what its cells need beyond [`cell_text`].
#[derive(Clone, Copy)]
struct Stamp {
    /// Nanoseconds, which the crate reads as plain integers.
    nanos: bool,
    /// Local time (not adjusted to UTC): printed without an offset.
    local: bool,
}

/// Whether the crate's record reader turns the primitive column `f` into a
/// value (it panics, "not yet implemented", on the rest, such as INTERVAL):
/// columns it cannot read are left out, as arrays are, instead of making the
/// whole table unreadable.
fn readable(f: &Type) -> bool {
    use parquet::basic::ConvertedType as C;
    let c = f.get_basic_info().converted_type();
    match f.get_physical_type() {
        Physical::INT32 => matches!(
            c,
            C::NONE
                | C::INT_8
                | C::INT_16
                | C::INT_32
                | C::UINT_8
                | C::UINT_16
                | C::UINT_32
                | C::DATE
                | C::TIME_MILLIS
                | C::DECIMAL
        ),
        Physical::INT64 => matches!(
            c,
            C::NONE | C::INT_64 | C::UINT_64 | C::TIME_MICROS | C::TIMESTAMP_MILLIS | C::TIMESTAMP_MICROS | C::DECIMAL
        ),
        Physical::BYTE_ARRAY => matches!(c, C::NONE | C::UTF8 | C::ENUM | C::JSON | C::BSON | C::DECIMAL),
        Physical::FIXED_LEN_BYTE_ARRAY => matches!(c, C::NONE | C::DECIMAL),
        Physical::BOOLEAN | Physical::INT96 | Physical::FLOAT | Physical::DOUBLE => true,
    }
}

/// Days from 1970 to the end of the year 9999.
const DAYS_TO_9999: u32 = 2_932_896;

/// One Parquet value as a catalogue cell.
fn cell_text(v: &parquet::record::Field) -> String {
    use parquet::record::Field as F;
    let float = |v: f64| if v.is_nan() { String::new() } else { format!("{v}") };
    match v {
        F::Null => String::new(),
        F::Bool(b) => b.to_string(),
        F::Byte(i) => i.to_string(),
        F::Short(i) => i.to_string(),
        F::Int(i) => i.to_string(),
        F::Long(i) => i.to_string(),
        F::UByte(i) => i.to_string(),
        F::UShort(i) => i.to_string(),
        F::UInt(i) => i.to_string(),
        F::ULong(i) => i.to_string(),
        F::Float16(x) => float(f64::from(*x)),
        F::Float(x) if x.is_nan() => String::new(),
        F::Float(x) => format!("{x}"),
        F::Double(x) => float(*x),
        F::Str(s) => s.trim().to_string(),
        F::Bytes(b) => String::from_utf8_lossy(b.data()).trim().to_string(),
        // The crate renders dates through chrono, which panics beyond its
        // range: dates past the years ±9999 stay numbers (days, ms or µs
        // since 1970).
        F::Date(d) if d.unsigned_abs() >= DAYS_TO_9999 => d.to_string(),
        F::TimestampMillis(t) if t.unsigned_abs() >= DAYS_TO_9999 as u64 * 86_400_000 => t.to_string(),
        F::TimestampMicros(t) if t.unsigned_abs() >= DAYS_TO_9999 as u64 * 86_400_000_000 => t.to_string(),
        // Decimals, dates and times as the crate renders them.
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    #[test]
    fn columns_keep_their_types_and_rows_span_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("t.csv");
        let mut text = String::from("id,score,kind,σ\n");
        let n = ROW_GROUP + 3;
        for i in 0..n {
            text += &format!(
                "{},{},{},{}\n",
                36407037608965120u64 + i as u64,
                i as f64 / 4.0,
                ["shell", "tail"][i % 2],
                match i {
                    1 => "",
                    2 => "nan",
                    _ => "0.5",
                }
            );
        }
        std::fs::write(&csv, text).unwrap();
        let out = dir.path().join("t.parquet");
        let meta = TableMeta {
            extname: "SCORES".into(),
            units: vec![("score".into(), "probability".into())],
            keywords: vec![("ORIGIN".into(), Value::Str("tidal'scope".into()), "".into())],
            floats: vec![],
            texts: vec![],
            singles: vec![],
            vector: None,
        };
        assert_eq!(csv_to_parquet(&csv, &out, &meta).unwrap(), n);
        let r = SerializedFileReader::new(std::fs::File::open(&out).unwrap()).unwrap();
        let md = r.metadata();
        assert_eq!(md.file_metadata().num_rows(), n as i64);
        assert_eq!(md.num_row_groups(), 2);
        let kv = md.file_metadata().key_value_metadata().unwrap();
        let get = |k: &str| kv.iter().find(|x| x.key == k).and_then(|x| x.value.clone()).unwrap();
        assert_eq!(get("ORIGIN"), "tidal'scope");
        assert!(get("table_meta_yaml").contains("{name: 'score', datatype: float64, unit: 'probability'}"));
        let rows: Vec<_> = r.get_row_iter(None).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), n);
        let first: Vec<_> = rows[1].get_column_iter().map(|(_, f)| f.clone()).collect();
        assert_eq!(first[0], Field::Long(36407037608965121));
        assert_eq!(first[1], Field::Double(0.25));
        assert_eq!(first[2], Field::Str("tail".into()));
        assert_eq!(first[3], Field::Null, "an empty float is a null");
        let second: Vec<_> = rows[2].get_column_iter().map(|(_, f)| f.clone()).collect();
        assert!(matches!(second[3], Field::Double(v) if v.is_nan()), "\"nan\" is NaN");
        let last: Vec<_> = rows[n - 1].get_column_iter().map(|(_, f)| f.clone()).collect();
        assert_eq!(last[0], Field::Long(36407037608965120 + n as i64 - 1));
        assert!(is_parquet_name(Path::new("a/b.Parquet")) && !is_parquet_name(Path::new("b.csv")));

        // Read back as a catalogue: the CSV's cells (NaN and empty both empty).
        let t = read_text(&out).unwrap();
        assert_eq!(t.columns, ["id", "score", "kind", "σ"]);
        assert_eq!(t.rows[1], ["36407037608965121", "0.25", "tail", ""]);
        assert_eq!(t.rows[2][3], "");
        assert_eq!(t.rows[3], ["36407037608965123", "0.75", "tail", "0.5"]);
        assert_eq!(t.rows.len(), n);
    }

    #[test]
    fn an_empty_catalogue_is_a_valid_file_with_its_columns() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("t.csv");
        std::fs::write(&csv, "id,score\n").unwrap();
        let out = dir.path().join("t.parquet");
        assert_eq!(csv_to_parquet(&csv, &out, &TableMeta::default()).unwrap(), 0);
        let r = SerializedFileReader::new(std::fs::File::open(&out).unwrap()).unwrap();
        assert_eq!(r.metadata().file_metadata().num_rows(), 0);
        assert_eq!(r.metadata().file_metadata().schema_descr().num_columns(), 2);
    }
}

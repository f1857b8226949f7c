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

use crate::fits::Value;
use crate::fits_table::{reader, scan_columns, Column, Kind, TableMeta};
use crate::{Error, Result};
use parquet::basic::{LogicalType, Repetition, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, FloatType, Int64Type};
use parquet::file::metadata::KeyValue;
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
            b.with_repetition(Repetition::REQUIRED).build().map(Arc::new)
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
    loop {
        let more = r.read_byte_record(&mut rec).map_err(|e| Error::format(csv, e.to_string()))?;
        if more {
            for (i, (c, v)) in cols.iter().zip(rec.iter()).enumerate() {
                let s = std::str::from_utf8(v).unwrap_or("");
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
                match cols[i].kind() {
                    Kind::Int => col.typed::<Int64Type>().write_batch(&ints[i], None, None),
                    Kind::Float => col.typed::<DoubleType>().write_batch(&floats[i], None, None),
                    Kind::Single => col.typed::<FloatType>().write_batch(&singles[i], None, None),
                    Kind::Text => col.typed::<ByteArrayType>().write_batch(&texts[i], None, None),
                }
                .map_err(&err)?;
                col.close().map_err(&err)?;
                ints[i].clear();
                floats[i].clear();
                singles[i].clear();
                texts[i].clear();
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
                if i == 1 { "" } else { "0.5" }
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
        assert!(matches!(first[3], Field::Double(v) if v.is_nan()), "empty float is NaN");
        let last: Vec<_> = rows[n - 1].get_column_iter().map(|(_, f)| f.clone()).collect();
        assert_eq!(last[0], Field::Long(36407037608965120 + n as i64 - 1));
        assert!(is_parquet_name(Path::new("a/b.Parquet")) && !is_parquet_name(Path::new("b.csv")));
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

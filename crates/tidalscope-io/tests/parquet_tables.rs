//! Parquet catalogues as pyarrow and pandas write them
//! (tests/fixtures/parquet, made by its `make.py`) read as catalogues, cell
//! by cell as text, whatever the page codec.

use std::path::{Path, PathBuf};
use tidalscope_io::parquet_table::read_text;
use tidalscope_io::source::{detect, Catalog, Format};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parquet").join(name)
}

#[test]
fn every_codec_reads_the_same_cells() {
    for codec in ["snappy", "gzip", "zstd", "lz4", "none"] {
        let t = read_text(&fixture(&format!("catalogue-{codec}.parquet"))).unwrap();
        let names = ["object_id", "ra", "dec", "mag_i", "is_primary", "field", "n_visits", "big", "label"];
        assert_eq!(t.columns, names, "{codec}");
        // Nested columns are left out; pandas' index is not data.
        assert_eq!(t.skipped, ["flux_aper", "shape"], "{codec}");
        let rows: Vec<Vec<&str>> = t.rows.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
        assert_eq!(rows[0], ["36407037608591362", "150.123456789012", "2.2", "21.5", "true", "deep", "3", "0", "1"]);
        // NaN and nulls are empty; a uint64 beyond 2⁶³ whole.
        assert_eq!(
            rows[1],
            ["36407037608591363", "150.2", "-0.000123456789", "", "", "ultradeep", "", "18446744073709551615", ""]
        );
        assert_eq!(rows[2], ["7", "149.9999999999", "2.25", "", "false", "", "12", "5", "0"]);
    }
}

#[test]
fn a_parquet_file_serves_as_a_catalogue() {
    let path = fixture("catalogue-snappy.parquet");
    assert_eq!(detect(&path).unwrap(), Format::Catalog);
    let c = Catalog::read(&path).unwrap();
    assert_eq!((c.place, c.rows.len(), c.rows[0].line), ("row", 3, 1));
    let roles = c.roles().unwrap();
    assert_eq!(c.columns[roles.id], "object_id");
    assert_eq!(roles.labels, [Some(1), None, Some(0)]);
    // A label column of other values is refused naming the row.
    let e = c.labels(c.column("n_visits")).unwrap_err().to_string();
    assert!(e.contains("catalogue-snappy.parquet") && e.contains("row 1") && e.contains("\"3\""), "{e}");

    let pandas = Catalog::read(&fixture("pandas.parquet")).unwrap();
    assert_eq!(pandas.columns, ["id", "ra", "dec"]);
    assert_eq!(pandas.rows[1].fields, ["b", "2.25", "4"]);
}

#[test]
fn brotli_and_damaged_files_are_refused_by_name() {
    let e = Catalog::read(&fixture("catalogue-brotli.parquet")).unwrap_err().to_string();
    assert!(e.contains("catalogue-brotli.parquet") && e.contains("Brotli"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("catalogue-snappy.parquet")).unwrap();
    let cut = dir.path().join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = Catalog::read(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.parquet") && e.contains("Parquet"), "{e}");
    // Pages damaged in the middle: an error naming the file, never a panic.
    let mut bad = bytes.clone();
    for b in &mut bad[8..bytes.len() / 2] {
        *b ^= 0x5a;
    }
    let damaged = dir.path().join("damaged.parquet");
    std::fs::write(&damaged, &bad).unwrap();
    let e = Catalog::read(&damaged).unwrap_err().to_string();
    assert!(e.contains("damaged.parquet"), "{e}");
    // A file found by the fuzzer on which the parquet crate's page decoder panics.
    let e = Catalog::read(&fixture("damaged.parquet")).unwrap_err().to_string();
    assert!(e.contains("damaged.parquet") && e.contains("damaged or unsupported file"), "{e}");
}

#[test]
fn dates_times_and_decimals_read_as_text_and_far_dates_as_numbers() {
    let t = read_text(&fixture("dates.parquet")).unwrap();
    assert_eq!(t.columns, ["id", "observed", "day", "at", "flux", "taken", "zoned"]);
    // Local timestamps (no time zone) name no offset; UTC ones do.
    let first = ["1", "2024-05-01 12:00:00.123", "2024-05-01", "12:34:56.789", "12.34"];
    assert_eq!(t.rows[0][..5], first);
    assert_eq!(t.rows[0][6], "2024-05-01 12:00:00.123456 +00:00");
    // Nanoseconds to the microsecond, as a date; one before 1970 too.
    assert_eq!(t.rows[0][5], "2024-05-01 12:00:00.123456");
    assert_eq!(t.rows[1][5], "1969-12-31 23:59:59.999999");
    // Beyond what a calendar renders: the stored number, never a panic.
    assert_eq!(t.rows[1][..5], ["2", "2534023008000000", "2147483647", "00:00:00.000", "-0.50"]);
}

#[test]
fn rubins_object_id_column_names_the_ids() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("objects.csv");
    std::fs::write(&csv, "coord_ra,coord_dec,objectId\n150.1,2.2,1249537790362809267\n").unwrap();
    let c = Catalog::read(&csv).unwrap();
    assert_eq!(c.id_column().unwrap(), 2);
    std::fs::write(&csv, "ra,dec\n150.1,2.2\n").unwrap();
    let e = Catalog::read(&csv).unwrap().id_column().unwrap_err().to_string();
    assert!(e.contains("\"objectId\"") && e.contains("columns: ra, dec"), "{e}");
}

//! A FITS binary table as astropy writes one (tests/fixtures/fits-tables,
//! made by its `make.py`) read as a catalogue, cell by cell as text.

use std::path::{Path, PathBuf};
use tidalscope_io::fits_table::read_text;
use tidalscope_io::source::Catalog;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fits-tables/catalogue.fits")
}

#[test]
fn an_astropy_table_reads_as_text_cells() {
    let t = read_text(&fixture()).unwrap();
    assert_eq!(t.hdu, 1);
    let names = ["object_id", "ra", "dec", "mag_i", "is_primary", "field", "n_visits", "flags", "big", "band_count"];
    assert_eq!(t.columns, names);
    assert_eq!(t.skipped, ["flux_aper"]);
    let rows: Vec<Vec<&str>> = t.rows.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
    assert_eq!(rows[0], ["36407037608591362", "150.123456789012", "2.2", "21.5", "true", "deep", "3", "0", "0", "5"]);
    // NaN and TNULL cells are empty; unsigned integers through TZERO whole.
    assert_eq!(
        rows[1],
        [
            "36407037608591363",
            "150.2",
            "-0.000123456789",
            "",
            "false",
            "ultradeep",
            "",
            "4000000000",
            "18446744073709551615",
            "3"
        ]
    );
    assert_eq!(rows[2], ["7", "149.9999999999", "2.25", "19.25", "true", "", "12", "1", "5", "255"]);
}

#[test]
fn a_fits_table_serves_as_a_catalogue_and_names_rows() {
    let c = Catalog::read(&fixture()).unwrap();
    assert_eq!((c.place, c.rows.len(), c.rows[0].line), ("row", 3, 1));
    let id = c.id_column().unwrap();
    assert_eq!(c.rows[2].fields[id], "7");
    // A label column of other values is refused naming the row.
    let flags = c.column("flags").unwrap();
    let e = c.labels(Some(flags)).unwrap_err().to_string();
    assert!(e.contains("catalogue.fits") && e.contains("row 2") && e.contains("4000000000"), "{e}");
}

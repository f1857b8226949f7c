//! Cutouts from coadd images: geometry against hand-computed pixels, band
//! images with different WCS, edges, objects off the image, tile lists and
//! the errors a user meets. (Pixel-exactness against astropy's Cutout2D is
//! tested in the Python package's tests, where astropy is at hand.)

use std::path::Path;
use tidalscope_io::fits::{self, Data, Header, Value};
use tidalscope_io::source::{open, CoaddOptions, Format, OpenOptions, Source};
use tidalscope_io::wcs::Wcs;

const NX: usize = 60;
const NY: usize = 50;

/// A TAN header whose reference pixel is shifted by `(dx, dy)`.
fn wcs_header(dx: f64, dy: f64) -> Header {
    let mut h = Header::new();
    h.push("CTYPE1", Value::Str("RA---TAN".into()), "")
        .push("CTYPE2", Value::Str("DEC--TAN".into()), "")
        .push("CRPIX1", Value::Float(30.5 + dx), "")
        .push("CRPIX2", Value::Float(25.5 + dy), "")
        .push("CRVAL1", Value::Float(10.0), "")
        .push("CRVAL2", Value::Float(-5.0), "")
        .push("CD1_1", Value::Float(-1e-4), "")
        .push("CD2_2", Value::Float(1e-4), "");
    h
}

/// Writes a band image whose pixel (x, y) holds `offset + y·NX + x`, in
/// HDU 1 behind an empty primary (the HSC/LSST layout).
fn write_band(path: &Path, offset: f32, wcs: Option<Header>) {
    let data: Vec<f32> = (0..NX * NY).map(|i| offset + i as f32).collect();
    let axes = [NX, NY];
    let d = Data::F32 { axes: &axes, data: &data };
    let mut h = fits::structural_header(&d, false);
    h.push("EXTNAME", Value::Str("IMAGE".into()), "");
    for (k, v) in wcs.iter().flat_map(|w| w.cards()) {
        h.push(k, v.clone(), "");
    }
    fits::write(path, &[(fits::structural_header(&Data::None, true), Data::None), (h, d)]).unwrap();
}

/// A g and an r image (r's WCS shifted by (+2, −1) pixels) and a catalogue
/// of objects at the given g pixel positions (id 1, 2, …).
fn setup(dir: &Path, positions: &[(f64, f64)]) -> CoaddOptions {
    write_band(&dir.join("g.fits"), 0.0, Some(wcs_header(0.0, 0.0)));
    write_band(&dir.join("r.fits"), 10_000.0, Some(wcs_header(2.0, -1.0)));
    let w = Wcs::from_header(&wcs_header(0.0, 0.0), Path::new("g.fits")).unwrap();
    let mut csv = String::from("id,ra,dec,label\n");
    for (k, &(x, y)) in positions.iter().enumerate() {
        let (ra, dec) = w.pixel_to_world(x, y);
        csv += &format!("{},{ra:?},{dec:?},{}\n", k + 1, k % 2);
    }
    std::fs::write(dir.join("objects.csv"), csv).unwrap();
    let spec = format!("g={},r={}", dir.join("g.fits").display(), dir.join("r.fits").display());
    CoaddOptions::parse(&[spec], 8, "ra", "dec").unwrap()
}

fn open_coadd(dir: &Path, coadd: CoaddOptions) -> Box<dyn Source> {
    open(&dir.join("objects.csv"), &OpenOptions { coadd: Some(coadd), ..OpenOptions::default() }).unwrap()
}

/// A catalogue with a `tile` column of its own keeps it as `tile_input`
/// (the rule for every input column whose name an output takes): `tile`
/// names the patch the cutout was cut from.
#[test]
fn a_catalogues_own_tile_column_gives_way_to_the_patch_name() {
    let dir = tempfile::tempdir().unwrap();
    let coadd = setup(dir.path(), &[(20.3, 15.7)]);
    let csv = std::fs::read_to_string(dir.path().join("objects.csv")).unwrap();
    let mut lines = csv.lines();
    let mut with_tile = format!("{},tile\n", lines.next().unwrap());
    lines.for_each(|l| with_tile += &format!("{l},9813\n"));
    std::fs::write(dir.path().join("objects.csv"), with_tile).unwrap();
    let src = open_coadd(dir.path(), coadd);
    assert_eq!(src.info().meta_columns, ["ra", "dec", "tile_input", "tile"]);
    let rec = src.records(0).unwrap().next().unwrap().unwrap();
    assert_eq!(rec.meta[2..], ["9813".to_string(), "tile0".to_string()]);
}

#[test]
fn cutouts_take_each_bands_own_wcs_and_fill_edges_with_nan() {
    let dir = tempfile::tempdir().unwrap();
    let coadd = setup(dir.path(), &[(20.3, 15.7), (1.2, 30.0), (100.0, 30.0)]);
    let src = open_coadd(dir.path(), coadd);
    let info = src.info();
    assert_eq!(info.format, Format::Coadd);
    assert_eq!(info.bands, ["g", "r"]);
    assert_eq!(info.shape, Some([2, 8, 8]));
    assert_eq!(info.meta_columns, ["ra", "dec", "tile"]);
    assert!(info.labelled);
    let recs: Vec<_> = src.records(0).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(recs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["1", "2", "3"]);
    assert_eq!(recs[1].label, Some(1));
    assert_eq!(recs[0].meta[2], "tile0");
    let mut recs = recs.into_iter();
    // g: x0 = ceil(20.3 − 4) = 17, y0 = ceil(15.7 − 4) = 12; r sees the
    // object 2 pixels right and 1 down: x0 = 19, y0 = 11.
    let a = recs.next().unwrap().pixels.load().unwrap();
    let v = a.data();
    assert_eq!(v[0], (12 * NX + 17) as f32);
    assert_eq!(v[8 * 8 - 1], (19 * NX + 24) as f32);
    assert_eq!(v[64], 10_000.0 + (11 * NX + 19) as f32);
    // x0 = ceil(1.2 − 4) = −2: the first two columns lie off the image.
    let b = recs.next().unwrap().pixels.load().unwrap();
    let g = &b.data()[..64];
    for row in g.chunks(8) {
        assert!(row[0].is_nan() && row[1].is_nan() && row[2].is_finite(), "{row:?}");
    }
    assert_eq!(g[2], (26 * NX) as f32);
    let e = recs.next().unwrap().pixels.load().unwrap_err().to_string();
    assert!(e.contains("objects.csv") && e.contains("line 4 (id 3)") && e.contains("off the coadd"), "{e}");
    assert!(e.contains("g.fits") && e.contains("60×50"), "{e}");
}

#[test]
fn objects_go_to_the_tile_they_lie_deepest_in_and_are_read_grouped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d, &[(5.0, 25.0), (40.0, 25.0), (57.0, 25.0), (30.0, 25.0)]);
    // Tile B: the same sky shifted 30 pixels, so g x = 30 … 90 of tile A.
    write_band(&d.join("gb.fits"), 50_000.0, Some(wcs_header(-30.0, 0.0)));
    write_band(&d.join("rb.fits"), 60_000.0, Some(wcs_header(-28.0, -1.0)));
    std::fs::write(
        d.join("tiles.csv"),
        "tile,band,file\n9813-A,g,g.fits\n9813-A,r,r.fits\n9813-B,g,gb.fits\n9813-B,r,rb.fits\n",
    )
    .unwrap();
    let coadd = CoaddOptions::parse(&[d.join("tiles.csv").display().to_string()], 8, "ra", "dec").unwrap();
    assert_eq!(coadd.tiles.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["9813-A", "9813-B"]);
    let src = open_coadd(d, coadd);
    let recs: Vec<_> = src.records(0).unwrap().map(|r| r.unwrap()).collect();
    let got: Vec<(String, String, usize)> = recs.iter().map(|r| (r.id.clone(), r.meta[2].clone(), r.index)).collect();
    // x = 40 lies 10 px inside B's left edge and 17.5 px inside A's right
    // one (in r): A. x = 57 is 0.5 px from A's edge (in r), 27 px inside B: B.
    assert_eq!(
        got,
        [
            ("1".into(), "9813-A".into(), 0),
            ("2".into(), "9813-A".into(), 1),
            ("4".into(), "9813-A".into(), 2),
            ("3".into(), "9813-B".into(), 3)
        ]
    );
    // Shards start mid-way and keep the order; labels follow it.
    let tail: Vec<String> = src.records(2).unwrap().map(|r| r.unwrap().id).collect();
    assert_eq!(tail, ["4", "3"]);
    assert_eq!(src.labels().unwrap(), [Some(0), Some(1), Some(1), Some(0)]);
    let b = recs.into_iter().nth(3).unwrap().pixels.load().unwrap();
    // In B, x = 57 − 30 = 27 → x0 = 23, y0 = ceil(25 − 4) = 21.
    assert_eq!(b.data()[0], 50_000.0 + (21 * NX + 23) as f32);
}

#[test]
fn bad_positions_and_bad_images_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let coadd = setup(d, &[(20.0, 20.0)]);
    std::fs::write(d.join("bad.csv"), "id,ra,dec\n7,abc,1.0\n8,10.0,95\n").unwrap();
    let src = open(&d.join("bad.csv"), &OpenOptions { coadd: Some(coadd.clone()), ..OpenOptions::default() }).unwrap();
    let errs: Vec<String> =
        src.records(0).unwrap().map(|r| r.unwrap().pixels.load().unwrap_err().to_string()).collect();
    assert!(errs[0].contains("line 2 (id 7)") && errs[0].contains("ra \"abc\" is not a number"), "{}", errs[0]);
    assert!(errs[1].contains("line 3 (id 8)") && errs[1].contains("outside"), "{}", errs[1]);

    // RA is an angle: read modulo 360, as astropy's Longitude reads it.
    let objects = std::fs::read_to_string(d.join("objects.csv")).unwrap();
    let f: Vec<&str> = objects.lines().nth(1).unwrap().split(',').collect();
    let ra: f64 = f[1].parse().unwrap();
    let wrapped = format!("id,ra,dec\n1,{ra:?},{}\n2,{:?},{}\n3,{:?},{}\n", f[2], ra + 360.0, f[2], ra - 360.0, f[2]);
    std::fs::write(d.join("wrapped.csv"), wrapped).unwrap();
    let src =
        open(&d.join("wrapped.csv"), &OpenOptions { coadd: Some(coadd.clone()), ..OpenOptions::default() }).unwrap();
    let cuts: Vec<Vec<f32>> =
        src.records(0).unwrap().map(|r| r.unwrap().pixels.load().unwrap().data().to_vec()).collect();
    assert!(cuts[0].iter().all(|v| v.is_finite()));
    assert_eq!(cuts[1], cuts[0], "RA + 360");
    assert_eq!(cuts[2], cuts[0], "RA − 360");

    std::fs::write(d.join("nora.csv"), "id,x,y\n1,2,3\n").unwrap();
    let e = open(&d.join("nora.csv"), &OpenOptions { coadd: Some(coadd.clone()), ..OpenOptions::default() })
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("nora.csv") && e.contains("missing column \"ra\""), "{e}");

    write_band(&d.join("nowcs.fits"), 0.0, None);
    let spec = format!("g={},r={}", d.join("nowcs.fits").display(), d.join("r.fits").display());
    let c = CoaddOptions::parse(&[spec], 8, "ra", "dec").unwrap();
    let e = open(&d.join("objects.csv"), &OpenOptions { coadd: Some(c), ..OpenOptions::default() })
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("nowcs.fits") && e.contains("CTYPE1"), "{e}");

    let g = d.join("g.fits").display().to_string();
    let e = CoaddOptions::parse(&[format!("g={g},r={g}"), format!("g={g}")], 8, "ra", "dec").unwrap_err().to_string();
    assert!(e.contains("same bands"), "{e}");
    let e = CoaddOptions::parse(&[format!("g={g},g={g}")], 8, "ra", "dec").unwrap_err().to_string();
    assert!(e.contains("repeated"), "{e}");
    let e = open(&d.join("objects.csv"), &OpenOptions { format: Some(Format::Coadd), ..OpenOptions::default() })
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--coadd"), "{e}");
}

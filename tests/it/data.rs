//! `tidalscope inspect` and `tidalscope convert`.

use crate::util::Dir;
use tidalscope_io::npy;

#[test]
fn npy_fits_tfdata_round_trip_keeps_every_pixel_label_and_id() {
    let d = Dir::new();
    d.ok(&["simulate", "--n", "6", "--size", "24", "--out", "sim", "--preview", "0", "--tidal-fraction", "0.5"]);
    d.ok(&["convert", "sim", "a.fits"]);
    d.ok(&["convert", "a.fits", "b", "--to", "tfdata"]);
    d.ok(&["convert", "b", "c.npy"]);
    d.ok(&["convert", "sim", "lab", "--to", "tfdata", "--compression", "gzip"]);
    d.ok(&["convert", "lab", "back", "--to", "npy"]);
    let (shape, orig) = npy::read_f32(&d.join("sim/images.npy")).unwrap();
    assert_eq!(shape, vec![6, 24, 24, 5]);
    for p in ["c.npy", "back/images.npy"] {
        let (s, v) = npy::read_f32(&d.join(p)).unwrap();
        assert_eq!(s, shape, "{p}");
        assert!(v == orig, "{p}: pixels changed in the round trip");
    }
    // labels and ids survive sim → tf.data → npy folder
    let sim = std::fs::read_to_string(d.join("sim/catalog.csv")).unwrap();
    let back = std::fs::read_to_string(d.join("back/catalog.csv")).unwrap();
    let first_two =
        |t: &str| t.lines().skip(1).map(|l| l.split(',').take(2).collect::<Vec<_>>().join(",")).collect::<Vec<_>>();
    assert_eq!(first_two(&sim), first_two(&back));
    let out = d.ok(&["inspect", "lab", "--limit", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("format      tfdata")
            && text.contains("objects     6")
            && text.contains("3 positive, 3 negative"),
        "{text}"
    );
    assert!(text.contains("5 bands × 24 × 24"), "{text}");
    // A FITS stack keeps the ids, labels and metadata (its OBJECTS table);
    // metadata a FITS table cannot hold leaves the table out, with a warning.
    let mut named = sim.replacen("survey", "σ_survey", 1);
    named.push('\n');
    std::fs::create_dir(d.join("wide")).unwrap();
    std::fs::copy(d.join("sim/images.npy"), d.join("wide/images.npy")).unwrap();
    std::fs::write(d.join("wide/catalog.csv"), named.trim_end()).unwrap();
    let out = d.ok(&["convert", "wide", "wide.fits"]);
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(warned.contains("no OBJECTS table") && warned.contains("printable ASCII"), "{warned}");
    d.ok(&["convert", "wide.fits", "wide_back", "--to", "npy"]);
    d.ok(&["convert", "a.fits", "a_back", "--to", "npy"]);
    let a_back = std::fs::read_to_string(d.join("a_back/catalog.csv")).unwrap();
    same_cells(&a_back, &sim);
    // An unlabelled object goes to tf.data as label -1 and comes back
    // unlabelled.
    std::fs::create_dir(d.join("part")).unwrap();
    std::fs::copy(d.join("sim/images.npy"), d.join("part/images.npy")).unwrap();
    let mut lines: Vec<String> = sim.lines().map(String::from).collect();
    let mut first: Vec<String> = lines[1].split(',').map(String::from).collect();
    first[1] = String::new();
    lines[1] = first.join(",");
    std::fs::write(d.join("part/catalog.csv"), lines.join("\n") + "\n").unwrap();
    d.ok(&["convert", "part", "part_tf", "--to", "tfdata"]);
    d.ok(&["convert", "part_tf", "part_back", "--to", "npy"]);
    let back = std::fs::read_to_string(d.join("part_back/catalog.csv")).unwrap();
    assert_eq!(first_two(&back), first_two(&lines.join("\n")), "{back}");
    assert!(text.contains("one value") && !text.contains("no data; see constant_bands"), "{text}");
    // Band i of object 1 filled with 0, as pipelines write no coverage.
    let (shape, mut px) = npy::read_f32(&d.join("sim/images.npy")).unwrap();
    let per = 24 * 24 * 5;
    px[per..2 * per].iter_mut().skip(2).step_by(5).for_each(|v| *v = 0.0);
    let mut w = npy::NpyWriter::create(&d.join("zero.npy"), &shape).unwrap();
    w.write(&px).unwrap();
    w.finish().unwrap();
    let text = String::from_utf8_lossy(&d.ok(&["inspect", "zero.npy"]).stdout).into_owned();
    let ones: Vec<&str> = text.lines().filter(|l| l.starts_with("  ") && !l.contains("band")).collect();
    let counts: Vec<&str> = ones.iter().filter_map(|l| l.split_whitespace().last()).collect();
    assert_eq!(counts[..5], ["0", "0", "1", "0", "0"], "{text}");
    assert!(text.contains("no data; see constant_bands"), "{text}");
}

#[test]
fn inspect_reads_the_published_tfdata_layout_and_names_bad_paths() {
    let d = Dir::new();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tensorflow/datasets/rand_mixed_none");
    let out = d.ok(&["inspect", fixture, "--limit", "3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // object_id and label are the records' id and label, not extra keys.
    assert!(text.contains("extra keys  dec, flags, mask, name, ra, tags"), "{text}");
    assert!(text.contains("over the first 3 images"), "{text}");
    let err = d.fails(&["inspect", "nowhere.npy"]);
    assert!(err.contains("nowhere.npy: no such file"), "{err}");
    std::fs::write(d.join("junk.bin"), [0u8, 1, 2, 3, 200, 201]).unwrap();
    let err = d.fails(&["inspect", "junk.bin"]);
    assert!(err.contains("junk.bin") && err.contains("unrecognised input"), "{err}");
    let err = d.fails(&["convert", fixture, "x.out"]);
    assert!(err.contains("--to"), "{err}");
    // A catalogue whose first object's file is missing: convert names it.
    std::fs::write(d.join("cat.csv"), "id,file\n7,gone.fits\n").unwrap();
    let err = d.fails(&["convert", "cat.csv", "x.npy"]);
    assert!(err.contains("cat.csv") && err.contains("id 7") && err.contains("gone.fits"), "{err}");
}

#[test]
fn a_crowded_copy_adds_other_cutouts_sources_away_from_the_target_and_repeats_for_a_seed() {
    let d = Dir::new();
    d.ok(&["simulate", "--n", "12", "--size", "96", "--out", "sim", "--preview", "0"]);
    let out = d.ok(&["convert", "sim", "a", "--to", "npy", "--crowd", "2", "--seed", "3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let pasted: usize = text
        .split("crowded: ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of pasted sources: {text}"));
    assert!(pasted >= 12, "{text}");
    d.ok(&["convert", "sim", "b.npy", "--crowd", "2", "--seed", "3"]);
    d.ok(&["convert", "sim", "c.npy", "--crowd", "2", "--seed", "4"]);
    let (shape, orig) = npy::read_f32(&d.join("sim/images.npy")).unwrap();
    let (_, a) = npy::read_f32(&d.join("a/images.npy")).unwrap();
    let (_, b) = npy::read_f32(&d.join("b.npy")).unwrap();
    let (_, c) = npy::read_f32(&d.join("c.npy")).unwrap();
    assert!(a == b, "the same seed gives the same pixels");
    assert!(a != c && a != orig);
    // [n, h, w, bands]: the centre of every cutout is the target's, untouched;
    // what was added is flux (the sources' sum is positive).
    let (h, w, bands) = (shape[1], shape[2], shape[3]);
    let mut added = 0f64;
    for (i, (x, y)) in a.iter().zip(&orig).enumerate() {
        let (py, px) = ((i / bands / w) % h, (i / bands) % w);
        if (py as f64 - 47.5).hypot(px as f64 - 47.5) <= 96.0 / 16.0 {
            assert_eq!(x, y, "pixel {i} near a target changed");
        }
        added += (x - y) as f64;
    }
    assert!(added > 0.0, "{added}");
    let ids_and_labels = |p: &str| {
        let text = std::fs::read_to_string(d.join(p)).unwrap();
        text.lines().skip(1).map(|l| l.split(',').take(2).collect::<Vec<_>>().join(",")).collect::<Vec<_>>()
    };
    assert_eq!(ids_and_labels("sim/catalog.csv"), ids_and_labels("a/catalog.csv"), "the originals' ids and labels");
    let record = std::fs::read_to_string(d.join("a/run.toml")).unwrap();
    assert!(record.contains("crowd = 2.0") && record.contains("seed = 3"), "{record}");
    assert!(d.join("b.run.toml").exists());
    let err = d.fails(&["convert", "sim", "x.npy", "--crowd=-1"]);
    assert!(err.contains("--crowd must lie in [0, 100]"), "{err}");
}

#[test]
fn inspect_and_convert_read_tile_compressed_fits_and_refuse_hcompress_by_name() {
    let d = Dir::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fits-compressed");
    let out = d.ok(&["inspect", &format!("{dir}/rice_cube.fits")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 bands × 20 × 26") && text.contains("BITPIX -32, tile-compressed RICE_1"), "{text}");
    // The cube astropy decompressed, and the command line's copy of the
    // compressed one: the same pixels.
    d.ok(&["convert", &format!("{dir}/rice_cube.expected.fits"), "want.npy"]);
    d.ok(&["convert", &format!("{dir}/rice_cube.fits"), "got.npy"]);
    let (ws, want) = npy::read_f32(&d.join("want.npy")).unwrap();
    let (gs, got) = npy::read_f32(&d.join("got.npy")).unwrap();
    assert_eq!(ws, gs);
    assert!(want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())));
    let err = d.fails(&["inspect", &format!("{dir}/hcompress.fits")]);
    assert!(err.contains("hcompress.fits") && err.contains("HCOMPRESS_1") && err.contains("funpack"), "{err}");
}

/// A reader that closes the pipe (`tidalscope inspect x | head -0`) ends
/// the program by SIGPIPE, quietly, as any Unix tool: no panic, no
/// backtrace on the terminal.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fits-compressed/rice_cube.fits");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidalscope"))
        .args(["inspect", fixture])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(13), "{:?}: {stderr}", out.status);
}

#[test]
fn a_parquet_catalogue_of_fits_files_reads_as_its_csv_does() {
    let d = Dir::new();
    d.ok(&["simulate", "--n", "3", "--size", "24", "--out", "f", "--format", "fits", "--preview", "0"]);
    let meta = tidalscope_io::fits_table::TableMeta::default();
    tidalscope_io::parquet_table::csv_to_parquet(&d.join("f/catalog.csv"), &d.join("f/objects.parquet"), &meta)
        .unwrap();
    let text = String::from_utf8_lossy(&d.ok(&["inspect", "f/objects.parquet"]).stdout).into_owned();
    assert!(text.contains("format      catalog") && text.contains("objects     3"), "{text}");
    // Files named relative to the Parquet file, as to a CSV.
    d.ok(&["convert", "f/catalog.csv", "from_csv", "--to", "npy"]);
    d.ok(&["convert", "f/objects.parquet", "from_parquet", "--to", "npy"]);
    let (s, a) = npy::read_f32(&d.join("from_csv/images.npy")).unwrap();
    let (t, b) = npy::read_f32(&d.join("from_parquet/images.npy")).unwrap();
    assert!(s == t && a == b, "the same pixels");
    let cells = |p: &str| std::fs::read_to_string(d.join(p)).unwrap();
    same_cells(&cells("from_parquet/catalog.csv"), &cells("from_csv/catalog.csv"));
}

/// Two CSV texts hold the same cells, numbers as numbers ("2.700" comes
/// back from a typed table as 2.7).
fn same_cells(got: &str, want: &str) {
    let same =
        |a: &str, b: &str| a == b || a.parse::<f64>().ok().zip(b.parse::<f64>().ok()).is_some_and(|(x, y)| x == y);
    assert_eq!(got.lines().count(), want.lines().count());
    for (x, y) in got.lines().zip(want.lines()) {
        assert!(x.split(',').count() == y.split(',').count(), "{x} / {y}");
        assert!(x.split(',').zip(y.split(',')).all(|(a, b)| same(a, b)), "{x} / {y}");
    }
}

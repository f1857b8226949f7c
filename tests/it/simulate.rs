//! `tidalscope simulate`.

use crate::util::{read_csv, Dir};
use tidalscope_io::fits;
use tidalscope_io::npy;

#[test]
fn same_seed_gives_identical_bytes_whatever_the_thread_count() {
    let d = Dir::new();
    let common = ["simulate", "--n", "10", "--size", "48", "--preview", "6"];
    d.ok(&[&common[..], &["--seed", "7", "--out", "a", "--jobs", "1"]].concat());
    d.ok(&[&common[..], &["--seed", "7", "--out", "b", "--jobs", "2"]].concat());
    for f in ["images.npy", "catalog.csv", "preview.png"] {
        let a = std::fs::read(d.join("a").join(f)).unwrap();
        let b = std::fs::read(d.join("b").join(f)).unwrap();
        assert!(a == b, "{f} differs between --jobs 1 and --jobs 2");
    }
    // A different seed gives different images.
    d.ok(&[&common[..], &["--out", "c", "--seed", "8"]].concat());
    assert_ne!(std::fs::read(d.join("a/images.npy")).unwrap(), std::fs::read(d.join("c/images.npy")).unwrap());
}

#[test]
fn outputs_have_the_documented_shapes_columns_and_label_fraction() {
    let d = Dir::new();
    d.ok(&["simulate", "--n", "20", "--size", "40", "--tidal-fraction", "0.25", "--out", "m", "--preview", "0"]);
    let (shape, data) = npy::read_f32(&d.join("m/images.npy")).unwrap();
    assert_eq!(shape, vec![20, 40, 40, 5]);
    assert!(data.iter().all(|v| v.is_finite()));
    let (header, rows) = read_csv(&d.join("m/catalog.csv"));
    for col in [
        "id",
        "label",
        "feature_types",
        "feature_sb",
        "host_mag_r",
        "r_half",
        "sersic_n",
        "bt",
        "ellipticity",
        "pa_deg",
        "n_neighbours",
        "n_companions",
        "seed",
        "survey",
    ] {
        assert!(header.iter().any(|h| h == col), "catalog.csv lacks {col}: {header:?}");
    }
    assert_eq!(rows.len(), 20);
    let label = header.iter().position(|h| h == "label").unwrap();
    let kind = header.iter().position(|h| h == "kind").unwrap();
    let sb = header.iter().position(|h| h == "feature_sb").unwrap();
    let positives: Vec<_> = rows.iter().filter(|r| r[label] == "1").collect();
    assert_eq!(positives.len(), 5, "25% of 20");
    for r in &positives {
        assert_eq!(r[kind], "tidal");
        assert!(!r[sb].is_empty(), "a positive has a feature surface brightness");
    }
    assert!(!d.join("m/preview.png").exists(), "--preview 0 writes no preview");
    let manifest = std::fs::read_to_string(d.join("m/run.toml")).unwrap();
    assert!(manifest.contains("seed = 1") && manifest.contains("version = ") && manifest.contains("git_commit"));
    // Relative paths of the record resolve against the folder it ran in.
    let table: toml::Table = manifest.parse().unwrap();
    let cwd = std::fs::canonicalize(table["working_directory"].as_str().unwrap()).unwrap();
    assert_eq!(cwd, std::fs::canonicalize(d.join(".")).unwrap());
}

#[test]
fn fits_output_holds_the_same_pixels_as_npy_in_the_hsc_layout() {
    let d = Dir::new();
    d.ok(&["simulate", "--n", "3", "--size", "32", "--out", "n", "--preview", "0"]);
    d.ok(&["simulate", "--n", "3", "--size", "32", "--out", "f", "--format", "fits", "--preview", "2"]);
    let (header, rows) = read_csv(&d.join("f/catalog.csv"));
    assert_eq!(&header[..7], &["id", "label", "file_g", "file_r", "file_i", "file_z", "file_y"]);
    let (_, cube) = npy::read_f32(&d.join("n/images.npy")).unwrap();
    for (obj, row) in rows.iter().enumerate() {
        for b in 0..5 {
            let hdus = fits::read(&d.join("f").join(&row[2 + b])).unwrap();
            let names: Vec<_> = hdus.iter().map(|h| h.name().unwrap_or("PRIMARY")).collect();
            assert_eq!(names, ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]);
            let img = &hdus[1];
            assert_eq!(img.header.get("CTYPE1").and_then(fits::Value::as_str), Some("RA---TAN"));
            let fluxmag0 = img.header.get("FLUXMAG0").and_then(fits::Value::as_f64).unwrap();
            assert!((fluxmag0 / 10f64.powf(0.4 * 27.0) - 1.0).abs() < 1e-12);
            for p in 0..32 * 32 {
                assert_eq!(img.data[p], cube[(obj * 32 * 32 + p) * 5 + b], "object {obj} band {b} pixel {p}");
            }
            assert!(hdus[3].data.iter().all(|&v| v > 0.0), "variance is positive");
        }
    }
    assert!(d.join("f/preview.png").exists());
}

#[test]
fn bad_settings_fail_with_one_clear_line() {
    let d = Dir::new();
    let err = d.fails(&["simulate", "--n", "2", "--out", "x", "--tidal-fraction", "1.5"]);
    assert!(err.contains("tidal fraction must lie in [0, 1], got 1.5"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let err = d.fails(&["simulate", "--n", "2", "--out", "x", "--size", "8"]);
    assert!(err.contains("too small"), "{err}");
    std::fs::write(d.join("file"), "not a folder").unwrap();
    let err = d.fails(&["simulate", "--n", "2", "--out", "file"]);
    assert!(err.contains("file"), "{err}");
    // clap's own usage errors exit with 2
    assert_eq!(d.run(&["simulate", "--n", "many", "--out", "x"]).status.code(), Some(2));
}

#[test]
fn every_subcommand_has_help() {
    let d = Dir::new();
    for args in [&["--help"][..], &["simulate", "--help"], &["bench", "--help"], &["bench", "simulate", "--help"]] {
        let out = d.ok(args);
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{args:?}");
    }
}

#[test]
fn bench_encoder_times_a_preset_at_its_own_size() {
    // The preset sets width, view size and input channels (its bands and
    // their two residuals); --batch still overrides its batch.
    let d = Dir::new();
    let out = d.ok(&["bench", "encoder", "--preset", "quick", "--batch", "2", "--steps", "1", "--kernels", "fast"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("preset quick") && text.contains("width 0.5") && text.contains("24×24 input"), "{text}");
    assert!(text.contains("15 bands"), "{text}");
    assert!(text.contains("batch 2,"), "{text}");
    for line in ["fast train:", "fast infer:"] {
        let rate = text.lines().find_map(|l| l.strip_prefix(line)).unwrap_or_else(|| panic!("{line} missing: {text}"));
        let images_per_s: f64 = rate.split_whitespace().next().unwrap().parse().unwrap();
        assert!(images_per_s > 0.0 && rate.contains("% of the GEMM peak"), "{text}");
        assert!(rate.contains("median of 1 timed step)"), "--steps 1 is what was timed: {text}");
    }
    assert!(text.contains("fast Winograd A/B: train "), "{text}");
    for flag in ["--batch", "--steps", "--bands"] {
        let err = d.fails(&["bench", "encoder", "--preset", "quick", flag, "0"]);
        assert!(err.contains(flag), "{err}");
    }
}

#[test]
fn bench_predict_prints_each_input_against_inference_and_the_ceiling_preparing_sets() {
    // An untrained quick classifier on a few objects: every line a user
    // reads is there with a rate, and the ceiling is a share of inference.
    let d = Dir::new();
    let tmp = d.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = d.ok(&["bench", "predict", "--n", "40", "--tmp", tmp.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let number = |line: &str, after: &str| -> f64 {
        let rest = line.split(after).nth(1).unwrap_or_else(|| panic!("{after:?} not in {line:?}"));
        rest.split_whitespace().next().unwrap().trim_end_matches('%').parse().unwrap()
    };
    let line = text.lines().find(|l| l.starts_with("pure inference of the same model: ")).unwrap();
    let pure = (number(line, "model: ") + number(line, "the runs, ")) / 2.0;
    assert!(pure > 0.0, "{text}");
    for input in ["npy", "FITS cutouts"] {
        let line = text.lines().find(|l| l.starts_with("predict: ") && l.contains(&format!("from {input} ("))).unwrap();
        assert!(number(line, "predict: ") > 0.0, "{text}");
        let line = text.lines().find(|l| l.starts_with(&format!("reading and preparing alone from {input}:"))).unwrap();
        let preparing = number(line, ": ");
        assert!(preparing > 0.0 && line.contains("(no network)"), "every object prepared: {text}");
        // The ceiling is the share p / (p + r) of the printed rates (each
        // rounded to 0.1 object/s, the share to 1%).
        let ceiling = number(line, "at most ");
        let want = 100.0 * preparing / (preparing + pure);
        assert!((ceiling - want).abs() <= 0.6, "{ceiling}% against {want:.2}%: {text}");
    }
}

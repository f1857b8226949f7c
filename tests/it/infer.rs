//! `predict`, `embed` and `search` through the binary.

use crate::util::{read_csv, Dir};

/// A tiny encoder and classifier trained on a tiny simulated set.
pub fn trained(d: &Dir) {
    d.ok(&["simulate", "--n", "40", "--size", "32", "--out", "sim", "--preview", "0", "--format", "fits"]);
    let mut args = vec!["pretrain", "--data", "sim", "--out", "enc"];
    args.extend(crate::pipeline::TINY);
    d.ok(&args);
    d.ok(&["finetune", "--encoder", "enc", "--data", "sim", "--out", "clf", "--epochs", "2"]);
}

#[test]
fn sharded_predictions_concatenate_to_the_whole_and_broken_entries_are_reported() {
    let d = Dir::new();
    trained(&d);
    d.ok(&["predict", "--model", "clf", "--data", "sim/catalog.csv", "--out", "all/scores.csv", "--chunk", "7"]);
    let (header, whole) = read_csv(&d.join("all/scores.csv"));
    assert_eq!(&header[..3], ["id", "label", "score"]);
    assert!(header.contains(&"host_mag_r".to_string()), "metadata columns carried");
    assert_eq!(whole.len(), 40);
    assert_eq!(
        whole.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        (0..40).map(|i| i.to_string()).collect::<Vec<_>>(),
        "input order"
    );
    let mut parts = Vec::new();
    for k in 0..3 {
        d.ok(&[
            "predict",
            "--model",
            "clf",
            "--data",
            "sim/catalog.csv",
            "--out",
            &format!("s{k}/scores.csv"),
            "--shard",
            &format!("{k}/3"),
        ]);
        parts.extend(read_csv(&d.join(&format!("s{k}/scores.csv"))).1);
    }
    assert_eq!(parts, whole, "shards 0/3, 1/3, 2/3 concatenate to the unsharded output");
    // A broken entry: one band file missing.
    let (_, rows) = read_csv(&d.join("sim/catalog.csv"));
    std::fs::remove_file(d.join("sim").join(&rows[5][3])).unwrap();
    let out = d.run(&["predict", "--model", "clf", "--data", "sim/catalog.csv", "--out", "broken/scores.csv"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 40 objects could not be processed"));
    let (eh, errors) = read_csv(&d.join("broken/scores.errors.csv"));
    assert_eq!(eh, ["id", "file", "reason"]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0][0], "5");
    assert!(errors[0].join(",").contains(&rows[5][3]), "{errors:?}");
    let (_, scored) = read_csv(&d.join("broken/scores.csv"));
    assert_eq!(scored.len(), 39);
    assert!(scored.iter().all(|r| r[0] != "5"));
    // A second output in the same folder keeps its own errors and record.
    d.ok(&["simulate", "--n", "4", "--size", "32", "--out", "more", "--preview", "0"]);
    d.ok(&["predict", "--model", "clf", "--data", "more", "--out", "broken/more.parquet"]);
    assert_eq!(read_csv(&d.join("broken/scores.errors.csv")).1.len(), 1);
    assert_eq!(read_csv(&d.join("broken/more.errors.csv")).1.len(), 0);
    for (record, out) in [("scores.run.toml", "scores.csv"), ("more.run.toml", "more.parquet")] {
        let run = std::fs::read_to_string(d.join("broken").join(record)).unwrap();
        assert!(run.contains(&format!("out = \"{out}\"")), "{record}: {run}");
    }
    // evaluate scores the rest and leaves the broken one out of its metrics.
    let out = d.run(&["evaluate", "--model", "clf", "--data", "sim/catalog.csv", "--split", "all", "--out", "ev"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("ev/metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["failed"], 1, "{metrics}");
    assert_eq!(metrics["summary"]["n"], 39, "{metrics}");
    assert_eq!(read_csv(&d.join("ev/errors.csv")).1.len(), 1);
    // Option values are checked when the command line is parsed, before any work.
    let err =
        d.refused(&["predict", "--model", "clf", "--data", "sim/catalog.csv", "--out", "x.csv", "--shard", "3/3"]);
    assert!(err.contains("K must run from 0 to N−1"), "{err}");
    let err = d.refused(&["embed", "--encoder", "enc", "--data", "sim", "--out", "e", "--layout", "hcw"]);
    assert!(err.contains("unknown layout \"hcw\" (auto, hwc, chw)"), "{err}");
    let err = d.refused(&["predict", "--model", "clf", "--data", "sim", "--out", "x.csv", "--format", "fit"]);
    assert!(err.contains("unknown format \"fit\""), "{err}");
    let err = d.refused(&["predict", "--model", "clf", "--data", "sim", "--out", "x.csv", "--device", "tpu"]);
    assert!(err.contains("unknown device \"tpu\" (cpu, cuda, cuda:N)"), "{err}");
}

/// Every column of a written table is named once: a tf.data folder's id
/// and label keys are its id and label (not metadata again), and a
/// catalogue that was itself scored keeps its old score as `score_input`;
/// both could not be written as FITS before.
#[test]
fn every_output_column_is_named_once() {
    let d = Dir::new();
    trained(&d);
    d.ok(&["convert", "sim", "tf", "--to", "tfdata"]);
    d.ok(&["predict", "--model", "clf", "--data", "tf", "--out", "t/scores.fits"]);
    d.ok(&["predict", "--model", "clf", "--data", "tf", "--out", "t/scores.csv"]);
    let (header, rows) = read_csv(&d.join("t/scores.csv"));
    assert_eq!(header, ["id", "label", "score", "nonfinite_fraction", "constant_bands"]);
    assert_eq!(rows.len(), 40);
    d.ok(&["embed", "--encoder", "enc", "--data", "tf", "--out", "te", "--color-by", "none"]);
    assert_eq!(read_csv(&d.join("te/ids.csv")).0, ["index", "id", "label", "nonfinite_fraction", "constant_bands"]);
    // A scored catalogue (its score and flags beside the file columns) scored again.
    let (cat_header, cat) = read_csv(&d.join("sim/catalog.csv"));
    let mut text = format!("{},score,nonfinite_fraction\n", cat_header.join(","));
    for r in &cat {
        text += &format!("{},0.25,0\n", r.join(","));
    }
    std::fs::write(d.join("sim/scored.csv"), text).unwrap();
    d.ok(&["predict", "--model", "clf", "--data", "sim/scored.csv", "--out", "c/scores.fits"]);
    d.ok(&["predict", "--model", "clf", "--data", "sim/scored.csv", "--out", "c/scores.csv"]);
    let (header, rows) = read_csv(&d.join("c/scores.csv"));
    let at = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("{name} in {header:?}"));
    assert_eq!(header.iter().filter(|h| *h == "score").count(), 1, "{header:?}");
    assert_eq!((at("score"), &rows[0][at("score_input")]), (2, &"0.25".to_string()));
    assert_eq!(rows[0][at("nonfinite_fraction_input")], "0");
}

#[test]
fn non_finite_pixels_and_constant_bands_are_flagged_per_object_and_an_empty_band_is_an_error_row() {
    let d = Dir::new();
    trained(&d);
    d.ok(&["simulate", "--n", "6", "--size", "32", "--out", "few", "--preview", "0"]);
    let (shape, mut px) = tidalscope_io::npy::read_f32(&d.join("few/images.npy")).unwrap();
    let per = 32 * 32 * 5;
    // Object 0: band r (channel 1 of HWC) entirely NaN. Object 1: ten g pixels NaN.
    // Object 2: band i filled with 0 (no coverage, as some pipelines write it).
    px[..per].iter_mut().skip(1).step_by(5).for_each(|v| *v = f32::NAN);
    px[per..2 * per].iter_mut().step_by(5).take(10).for_each(|v| *v = f32::NAN);
    px[2 * per..3 * per].iter_mut().skip(2).step_by(5).for_each(|v| *v = 0.0);
    let mut w = tidalscope_io::npy::NpyWriter::create(&d.join("bad.npy"), &shape).unwrap();
    w.write(&px).unwrap();
    w.finish().unwrap();
    let out = d.run(&["predict", "--model", "clf", "--data", "bad.npy", "--out", "p/scores.csv"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 object had non-finite pixels"), "{stdout}");
    assert!(stdout.contains("1 object had a band of one value, no data (scored from the others"), "{stdout}");
    let (_, errors) = read_csv(&d.join("p/scores.errors.csv"));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0][0], "0");
    assert!(errors[0][2].contains("band r has no finite pixel"), "{errors:?}");
    let (header, rows) = read_csv(&d.join("p/scores.csv"));
    assert_eq!(&header[..4], ["id", "score", "nonfinite_fraction", "constant_bands"]);
    let fractions: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(fractions, ["0.001953", "0", "0", "0", "0"], "10 of 32×32×5 pixels in object 1");
    let constant: Vec<&str> = rows.iter().map(|r| r[3].as_str()).collect();
    assert_eq!(constant, ["", "i", "", "", ""]);
    let run = std::fs::read_to_string(d.join("p/scores.run.toml")).unwrap();
    assert!(run.contains("flagged = 1") && run.contains("failed = 1") && run.contains("constant_band = 1"), "{run}");
    let out = d.run(&["embed", "--encoder", "enc", "--data", "bad.npy", "--out", "e", "--color-by", "none"]);
    assert_eq!(out.status.code(), Some(3));
    let (header, ids) = read_csv(&d.join("e/ids.csv"));
    let col = header.iter().position(|h| h == "nonfinite_fraction").expect("column in ids.csv");
    assert_eq!(ids[0][col], "0.001953");
    assert_eq!(header[col + 1], "constant_bands");
    assert_eq!(ids[1][col + 1], "i");
    // `evaluate` follows the same rule as `predict`: the empty band is an
    // error row (exit 3), the rest are scored, with the same scores.
    let out = d.run(&["evaluate", "--model", "clf", "--data", "bad.npy", "--split", "all", "--out", "ev"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 6 objects could not be processed"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("scored 5 objects") && stdout.contains("1 object had non-finite pixels"), "{stdout}");
    assert!(stdout.contains("1 object had a band of one value"), "{stdout}");
    let run = std::fs::read_to_string(d.join("ev/run.toml")).unwrap();
    assert!(run.contains("scored = 5") && run.contains("failed = 1") && run.contains("flagged = 1"), "{run}");
    assert!(run.contains("constant_band = 1"), "{run}");
    let (_, errors) = read_csv(&d.join("ev/errors.csv"));
    assert_eq!(errors.len(), 1);
    assert!(errors[0][0] == "0" && errors[0][2].contains("band r has no finite pixel"), "{errors:?}");
    let (header, evaluated) = read_csv(&d.join("ev/scores.csv"));
    assert_eq!(&header[..5], ["id", "label", "score", "nonfinite_fraction", "constant_bands"]);
    let pick = |rows: &[Vec<String>], score: usize| -> Vec<(String, String, String, String)> {
        rows.iter().map(|r| (r[0].clone(), r[score].clone(), r[score + 1].clone(), r[score + 2].clone())).collect()
    };
    assert_eq!(pick(&evaluated, 2), pick(&rows, 1), "evaluate and predict agree object by object");
    // Object 3's bands as five named image extensions: in the model's order
    // it scores as from the array; in another order too (put back in the
    // model's order by name: it used to be scored with every plane in
    // another band's input); with a band the model lacks it is refused.
    use tidalscope_io::fits::{self, structural_header, Data, Value};
    let planes: Vec<Vec<f32>> =
        (0..5).map(|b| px[3 * per..4 * per].iter().skip(b).step_by(5).copied().collect()).collect();
    let mef = |name: &str, order: [usize; 5], names: [&str; 5]| {
        let mut hdus = vec![(structural_header(&Data::None, true), Data::None)];
        for b in order {
            let data = Data::F32 { axes: &[32, 32], data: &planes[b] };
            let mut h = structural_header(&data, false);
            h.push("EXTNAME", Value::Str(names[b].into()), "");
            hdus.push((h, data));
        }
        fits::write(&d.join(name), &hdus).unwrap();
    };
    mef("grizy.fits", [0, 1, 2, 3, 4], ["g", "r", "i", "z", "y"]);
    mef("yzirg.fits", [4, 3, 2, 1, 0], ["g", "r", "i", "z", "y"]);
    mef("ugriz.fits", [0, 1, 2, 3, 4], ["u", "g", "r", "i", "z"]);
    for (data, out) in [("grizy.fits", "m/scores.csv"), ("yzirg.fits", "n/scores.csv")] {
        d.ok(&["predict", "--model", "clf", "--data", data, "--out", out]);
        let (_, mef_rows) = read_csv(&d.join(out));
        assert_eq!(mef_rows[0][1], rows[2][1], "object 3 (row 2: object 0 failed) from {data}");
    }
    let err = d.fails(&["predict", "--model", "clf", "--data", "ugriz.fits", "--out", "u/scores.csv"]);
    assert!(err.contains("ugriz.fits") && err.contains("u,g,r,i,z, the model's g,r,i,z,y"), "{err}");
}

#[test]
fn embeddings_and_similarity_search_by_id_and_by_file() {
    let d = Dir::new();
    trained(&d);
    d.ok(&["embed", "--encoder", "enc", "--data", "sim/catalog.csv", "--out", "emb", "--color-by", "kind"]);
    let (shape, _) = tidalscope_io::npy::read_f32(&d.join("emb/embeddings.npy")).unwrap();
    assert_eq!(shape, vec![40, 128]);
    let (h, ids) = read_csv(&d.join("emb/ids.csv"));
    assert_eq!(&h[..3], ["index", "id", "label"]);
    assert_eq!(ids.len(), 40);
    assert!(d.join("emb/projection.png").is_file());
    // the classifier folder's encoder gives the same representations
    d.ok(&["embed", "--encoder", "clf", "--data", "sim/catalog.csv", "--out", "emb2", "--color-by", "none"]);
    d.ok(&["search", "--embeddings", "emb", "--query", "3", "--k", "5", "--out", "found"]);
    let (nh, rows) = read_csv(&d.join("found/neighbours.csv"));
    assert_eq!(&nh[..4], ["query", "rank", "id", "similarity"]);
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r[2] != "3"), "the query is not its own neighbour");
    let sims: Vec<f64> = rows.iter().map(|r| r[3].parse().unwrap()).collect();
    assert!(sims.windows(2).all(|w| w[0] >= w[1]) && sims[0] <= 1.0 + 1e-6, "{sims:?}");
    assert!(d.join("found/mosaic.png").is_file());
    // a query image file, embedded on the fly with the recorded encoder
    let (_, cat) = read_csv(&d.join("sim/catalog.csv"));
    let file = d.join("sim").join(&cat[3][2]);
    let file = file.to_str().unwrap();
    let err = d.fails(&["search", "--embeddings", "emb", "--query", file, "--k", "3", "--out", "found2"]);
    assert!(err.contains("1 bands") || err.contains("expects 5"), "a single-band file is refused: {err}");
    d.ok(&["simulate", "--n", "1", "--size", "32", "--seed", "77", "--out", "q", "--preview", "0"]);
    d.ok(&["search", "--embeddings", "emb", "--query", "q/images.npy", "3", "--k", "3", "--out", "found4"]);
    let (_, rows) = read_csv(&d.join("found4/neighbours.csv"));
    assert_eq!(rows.len(), 6, "two queries × 3 neighbours");
    assert_eq!(rows[0][0], "q/images.npy");
    let err = d.fails(&["search", "--embeddings", "emb", "--query", "nobody", "--out", "found3"]);
    assert!(err.contains("neither an id"), "{err}");
    // Every image of a query file is a query, named by its id; asking for
    // more neighbours than there are says how many were found.
    d.ok(&["simulate", "--n", "2", "--size", "32", "--seed", "78", "--out", "q2", "--preview", "0"]);
    let out = d.ok(&["search", "--embeddings", "emb", "--query", "q2/images.npy", "--k", "100", "--out", "found5"]);
    let (_, rows) = read_csv(&d.join("found5/neighbours.csv"));
    assert_eq!(rows.len(), 80, "two queries × all 40 embeddings");
    let names: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("q2/images.npy:")), "{names:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 queries × 40 neighbours among 40 embeddings"), "{text}");
    // The embedded catalogue itself as a query file (its 40 images prepared
    // and embedded together): each image finds itself first, as `embed`
    // placed it.
    d.ok(&["search", "--embeddings", "emb", "--query", "sim/catalog.csv", "--k", "1", "--out", "found7"]);
    let (_, rows) = read_csv(&d.join("found7/neighbours.csv"));
    assert_eq!(rows.len(), 40);
    for r in &rows {
        assert_eq!(r[0], format!("sim/catalog.csv:{}", r[2]), "{r:?}");
        assert!(r[3].parse::<f64>().unwrap() > 0.9999, "{r:?}");
    }
    // An encoder whose bands are recorded out of wavelength order (as
    // catalogue-trained ones were before catalogue bands were sorted) is
    // refused a catalogue as a query and as data to resume pretraining on,
    // rather than fed swapped channels.
    for file in ["enc/preprocess.json", "enc/checkpoint/preprocess.json"] {
        let text = std::fs::read_to_string(d.join(file)).unwrap();
        let (gr, rg) = ("\"g\",\n      \"r\",", "\"r\",\n      \"g\",");
        assert!(text.contains(gr), "{file}: {text}");
        std::fs::write(d.join(file), text.replace(gr, rg)).unwrap();
    }
    let err = d.fails(&["search", "--embeddings", "emb", "--query", "sim/catalog.csv", "--out", "found6"]);
    assert!(err.contains("query sim/catalog.csv") && err.contains("recorded in the order r,g,i,z,y"), "{err}");
    let err = d.fails(&["pretrain", "--data", "sim", "--out", "enc", "--resume"]);
    assert!(err.contains("recorded in the order r,g,i,z,y") && err.contains("the checkpoint in enc"), "{err}");
    let args = ["experiment", "labels", "--encoder", "enc", "--data", "q2", "--test", "sim", "--methods", "linear"];
    let err = d.fails(&[&args[..], &["--labels", "1", "--seeds", "1", "--out", "ex"]].concat());
    assert!(err.contains("sim/catalog.csv") && err.contains("recorded in the order r,g,i,z,y"), "{err}");
}

/// The keras-paper fixtures: TF 2.11 SavedModels shaped like the published
/// Trained_NNCLR_model and Trained_finetuned_classifier, with TensorFlow's
/// outputs on three already-normalised 128×128×5 inputs.
fn keras_paper() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras-paper")
}

/// Within 1e-4 relative of each value; for values below 1% of the vector's
/// largest, within 1e-4 of that 1% (a relative error of a value near zero
/// says nothing about the computation).
fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let floor = 1e-2 * want.iter().fold(0f32, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * w.abs().max(floor), "{what}[{i}]: {g} vs TensorFlow {w}");
    }
}

#[test]
fn imported_keras_models_reproduce_tensorflow_through_embed_and_predict() {
    let d = Dir::new();
    let fx = keras_paper();
    let input = fx.join("input_128.npy");
    let (enc, clf) = (fx.join("encoder"), fx.join("classifier"));
    let (input, enc, clf) = (input.to_str().unwrap(), enc.to_str().unwrap(), clf.to_str().unwrap());
    // Saying nothing about normalisation is an error that lists the choices.
    let err = d.fails(&["import-keras", enc, "--out", "enc"]);
    assert!(
        err.contains("--normalisation none") && err.contains("--sigma") && err.contains("--normalise-from"),
        "{err}"
    );
    d.ok(&["import-keras", enc, "--out", "enc", "--normalisation", "none"]);
    let run = std::fs::read_to_string(d.join("enc/run.toml")).unwrap();
    assert!(run.contains("kind = \"encoder\"") && run.contains("crop = 96"), "{run}");
    d.ok(&["embed", "--encoder", "enc", "--data", input, "--out", "emb", "--color-by", "none"]);
    let (shape, got) = tidalscope_io::npy::read_f32(&d.join("emb/embeddings.npy")).unwrap();
    let (_, want) = tidalscope_io::npy::read_f32(&fx.join("expected_encoder.npy")).unwrap();
    assert_eq!(shape, vec![3, 128]);
    assert_close(&got, &want, "embed with the imported encoder");

    d.ok(&["import-keras", clf, "--out", "clf", "--normalisation", "none"]);
    d.ok(&["predict", "--model", "clf", "--data", input, "--out", "scores.csv"]);
    let (header, rows) = read_csv(&d.join("scores.csv"));
    let col = header.iter().position(|h| h == "score").unwrap();
    let got: Vec<f32> = rows.iter().map(|r| r[col].parse().unwrap()).collect();
    let (_, want) = tidalscope_io::npy::read_f32(&fx.join("expected_classifier.npy")).unwrap();
    assert_close(&got, &want, "predict with the imported classifier");

    // Export and re-import: the same scores.
    d.ok(&["export-keras", "--model", "clf", "--out", "clf.keras"]);
    d.ok(&["import-keras", "clf.keras", "--out", "clf2"]); // preprocessing from clf.keras.preprocess.json
    d.ok(&["predict", "--model", "clf2", "--data", input, "--out", "scores2.csv"]);
    assert_eq!(read_csv(&d.join("scores.csv")).1, read_csv(&d.join("scores2.csv")).1);
    // σ_b given by hand is recorded and used: asinh(x / 3σ_b) differs from none.
    d.ok(&["import-keras", "clf.keras", "--out", "clf3", "--sigma", "0.5,0.5,0.5,0.5,0.5"]);
    let pre = std::fs::read_to_string(d.join("clf3/preprocess.json")).unwrap();
    assert!(pre.contains("0.5"), "{pre}");
    let err = d.fails(&["import-keras", "clf.keras", "--out", "clf4", "--sigma", "1,2"]);
    assert!(err.contains("2 values") && err.contains("5 bands"), "{err}");

    // A Keras model unlike ours: the error lists what differs.
    let tiny = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tensorflow/models/tiny_encoder_savedmodel");
    let err = d.fails(&["import-keras", tiny.to_str().unwrap(), "--out", "tiny", "--normalisation", "none"]);
    assert!(err.contains("do not match") && err.contains("expected BatchNormalization"), "{err}");
    assert!(!d.join("tiny").exists());
}

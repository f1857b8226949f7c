//! `pretrain` → `finetune` → `evaluate` through the binary, on a tiny
//! simulated set (seconds, not science).

use crate::util::{read_csv, Dir};

pub const TINY: [&str; 14] = [
    "--preset",
    "quick",
    "--bin",
    "1",
    "--crop",
    "24",
    "--width",
    "0.25",
    "--batch",
    "8",
    "--queue-size",
    "64",
    "--epochs",
    "1",
];

#[test]
fn pretrain_finetune_evaluate_write_every_promised_file() {
    let d = Dir::new();
    d.ok(&["simulate", "--n", "40", "--size", "32", "--out", "sim", "--preview", "0", "--seed", "3"]);
    // pretraining interrupted after 2 steps, then resumed
    let mut args = vec!["pretrain", "--data", "sim", "--out", "enc", "--stop-after", "2"];
    args.extend(TINY);
    let out = d.ok(&args);
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped early"));
    let out = d.ok(&["pretrain", "--data", "sim", "--out", "enc", "--resume"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pretrained 5 steps"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for f in [
        "encoder.json",
        "encoder.bpk",
        "preprocess.json",
        "representation.json",
        "config.toml",
        "run.toml",
        "metrics.csv",
        "loss.png",
        "log.txt",
    ] {
        assert!(d.join("enc").join(f).is_file(), "pretrain: {f} missing");
    }
    // The quick preset's input, the bands and their rotational and mirror
    // residuals, is stored with the encoder (and so repeated by every
    // command reading it); a resumed run keeps it.
    let pre: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("enc/preprocess.json")).unwrap()).unwrap();
    assert_eq!((&pre["channels"], &pre["centring"]), (&"all".into(), &"half_pixel".into()), "{pre}");
    assert_eq!(pre["normalisation"]["sigma"].as_array().unwrap().len(), 15, "{pre}");
    assert_eq!(pre["normalisation"]["bands"][5], "g_residual", "{pre}");
    assert_eq!(pre["normalisation"]["bands"][10], "g_mirror", "{pre}");
    let err = d.fails(&["pretrain", "--data", "sim", "--out", "enc", "--resume", "--channels", "image"]);
    assert!(err.contains("--channels"), "{err}");
    let err = d.fails(&["pretrain", "--data", "sim", "--out", "enc", "--resume", "--centring", "subpixel"]);
    assert!(err.contains("--centring"), "{err}");
    // Through Keras and back the residual channels stay: --bands names the
    // five bands, and flags that would import the model without its
    // residuals are refused.
    let out = d.ok(&["export-keras", "--model", "enc", "--out", "enc.keras"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("rotational residuals"));
    d.ok(&["import-keras", "enc.keras", "--out", "enc-back", "--bands", "g,r,i,z,y"]);
    let back: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("enc-back/preprocess.json")).unwrap()).unwrap();
    for key in ["channels", "centring", "normalisation"] {
        assert_eq!(back[key], pre[key], "{key}");
    }
    let err = d.fails(&["import-keras", "enc.keras", "--out", "enc-bad", "--sigma", "1,1,1,1,1"]);
    assert!(err.contains("rotational residuals") && err.contains("--sigma"), "{err}");
    let (header, rows) = read_csv(&d.join("enc/metrics.csv"));
    assert_eq!(header, ["epoch", "step", "loss", "contrastive_acc", "correlation_acc", "views_per_s", "lr"]);
    assert_eq!(rows.len(), 5);
    let manifest = std::fs::read_to_string(d.join("enc/run.toml")).unwrap();
    assert!(
        manifest.contains("resumed = true") && manifest.contains("seed = 1") && manifest.contains("git_commit"),
        "{manifest}"
    );

    d.ok(&["finetune", "--encoder", "enc", "--data", "sim", "--out", "clf", "--epochs", "3"]);
    for f in [
        "classifier.json",
        "classifier.bpk",
        "preprocess.json",
        "split.json",
        "Train_loss.npy",
        "Val_loss.npy",
        "loss.png",
        "run.toml",
    ] {
        assert!(d.join("clf").join(f).is_file(), "finetune: {f} missing");
    }
    // The probe whitens with the spread pretraining measured; without it,
    // the spread is measured on the training images; a damaged one is refused.
    let log = std::fs::read_to_string(d.join("clf/log.txt")).unwrap();
    assert!(log.contains("probe whitening:") && log.contains("representation.json in the encoder folder"), "{log}");
    // Each line once: the command's reporter writes the log, not the library as well.
    assert_eq!(log.matches("probe whitening:").count(), 1, "{log}");
    let probe: Vec<&str> = log.lines().filter(|l| l.starts_with("linear probe")).collect();
    assert_eq!(probe.len(), 1, "{log}");
    // Both inputs were fitted and the line says how they compared.
    assert!(probe[0].contains("whitened") && probe[0].contains("standardised"), "{log}");
    assert!(std::fs::read_to_string(d.join("clf/config.toml")).unwrap().contains("probe_variance = 0.95"));
    let spectrum = std::fs::read(d.join("enc/representation.json")).unwrap();
    std::fs::write(d.join("enc/representation.json"), &spectrum[..spectrum.len() / 2]).unwrap();
    let err = d.fails(&["finetune", "--encoder", "enc", "--data", "sim", "--out", "clf-bad"]);
    assert!(err.contains("representation.json"), "{err}");
    let err =
        d.fails(&["finetune", "--encoder", "enc", "--data", "sim", "--out", "clf-bad", "--probe-variance", "1.5"]);
    assert!(err.contains("probe_variance 1.5"), "{err}");
    std::fs::remove_file(d.join("enc/representation.json")).unwrap();
    // The engine is an option; it and fine-tuning's learning-rate schedule
    // (cosine unless told otherwise; the probe is fitted, not stepped) are recorded with the run.
    d.ok(&[
        "finetune",
        "--encoder",
        "enc",
        "--data",
        "sim",
        "--out",
        "clf-burn",
        "--epochs",
        "1",
        "--kernels",
        "burn",
        "--mode",
        "finetune",
        "--min-steps",
        "2",
    ]);
    let log = std::fs::read_to_string(d.join("clf-burn/log.txt")).unwrap();
    assert!(log.contains("probe whitening:") && log.contains("outside the validation and test splits"), "{log}");
    for (dir, kernels, schedule) in [("clf", "fast", "constant"), ("clf-burn", "burn", "cosine")] {
        let config = std::fs::read_to_string(d.join(dir).join("config.toml")).unwrap();
        assert!(config.contains(&format!("kernels = \"{kernels}\"")), "{dir}: {config}");
        assert!(config.contains(&format!("lr_schedule = \"{schedule}\"")), "{dir}: {config}");
    }
    let out = d.ok(&["evaluate", "--model", "clf", "--out", "ev"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("AUC"), "{}", String::from_utf8_lossy(&out.stdout));
    for f in ["scores.csv", "FPR.npy", "TPR.npy", "Thresholds.npy", "ROC_curve.png", "metrics.json", "run.toml"] {
        assert!(d.join("ev").join(f).is_file(), "evaluate: {f} missing");
    }
    let (header, rows) = read_csv(&d.join("ev/scores.csv"));
    assert_eq!(&header[..3], ["id", "label", "score"]);
    assert!(header.contains(&"feature_sb".to_string()), "catalogue metadata carried to scores.csv");
    assert_eq!(rows.len(), 8, "20% of 40 held out for testing");
    let metrics = std::fs::read_to_string(d.join("ev/metrics.json")).unwrap();
    assert!(
        metrics.contains("completeness_at_22pct_fpr")
            && metrics.contains("confusion")
            && metrics.contains("precision_recall"),
        "{metrics}"
    );
    // scoring twice gives the same numbers: inference is deterministic
    d.ok(&["evaluate", "--model", "clf", "--out", "ev2"]);
    assert_eq!(std::fs::read(d.join("ev/scores.csv")).unwrap(), std::fs::read(d.join("ev2/scores.csv")).unwrap());
    // every object of another source
    d.ok(&[
        "simulate",
        "--n",
        "10",
        "--size",
        "32",
        "--out",
        "other",
        "--preview",
        "0",
        "--seed",
        "9",
        "--tidal-fraction",
        "0.5",
    ]);
    d.ok(&["evaluate", "--model", "clf", "--data", "other", "--split", "all", "--out", "ev3"]);
    assert_eq!(read_csv(&d.join("ev3/scores.csv")).1.len(), 10);
    // A classifier trained with no test split has nothing to evaluate by default: said, not "scored 0".
    d.ok(&["finetune", "--encoder", "enc", "--data", "sim", "--out", "clf-all", "--test-fraction", "0"]);
    let err = d.fails(&["evaluate", "--model", "clf-all", "--out", "ev5"]);
    assert!(err.contains("nothing to evaluate"), "{err}");
    // A test-split object whose band r has no finite pixel: an error row,
    // the rest of the split scored with the split's labels.
    let first: usize = rows[0][0].parse().unwrap();
    let (shape, mut px) = tidalscope_io::npy::read_f32(&d.join("sim/images.npy")).unwrap();
    let per = 32 * 32 * 5;
    px[first * per..(first + 1) * per].iter_mut().skip(1).step_by(5).for_each(|v| *v = f32::NAN);
    let mut w = tidalscope_io::npy::NpyWriter::create(&d.join("sim/images.npy"), &shape).unwrap();
    w.write(&px).unwrap();
    w.finish().unwrap();
    let out = d.run(&["evaluate", "--model", "clf", "--out", "ev6"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, errors) = read_csv(&d.join("ev6/errors.csv"));
    assert_eq!(errors.len(), 1);
    assert!(errors[0][0] == rows[0][0] && errors[0][2].contains("band r has no finite pixel"), "{errors:?}");
    let (_, scored) = read_csv(&d.join("ev6/scores.csv"));
    assert_eq!(scored, rows[1..], "the other test objects, as before, with their labels");
    // The data moved away from the path training recorded: the error says
    // where that path came from and what to do.
    std::fs::rename(d.join("sim"), d.join("moved")).unwrap();
    let err = d.fails(&["evaluate", "--model", "clf", "--out", "ev4"]);
    assert!(err.contains("split.json records it") && err.contains("--data") && err.contains("sim"), "{err}");
}

#[test]
fn training_commands_explain_bad_input() {
    let d = Dir::new();
    d.ok(&["simulate", "--n", "12", "--size", "32", "--out", "sim", "--preview", "0"]);
    let err = d.fails(&["finetune", "--encoder", "sim", "--data", "sim", "--out", "x"]);
    assert!(err.contains("is not an encoder folder"), "{err}");
    // Options are typed: a typo fails at once, listing the valid values.
    let err = d.refused(&["pretrain", "--data", "sim", "--out", "x", "--preset", "huge"]);
    assert!(err.contains("invalid value 'huge'") && err.contains("paper") && err.contains("quick"), "{err}");
    let err = d.refused(&["finetune", "--encoder", "e", "--data", "sim", "--out", "x", "--mode", "linaer"]);
    assert!(err.contains("invalid value 'linaer'") && err.contains("scratch"), "{err}");
    let err = d.fails(&["finetune", "--encoder", "e", "--data", "sim", "--out", "x", "--lr-schedule", "cosine"]);
    assert!(err.contains("--lr-schedule") && err.contains("linear probe"), "{err}");
    let err = d.refused(&["experiment", "labels", "--methods", "linear,morphologi"]);
    assert!(err.contains("invalid value 'morphologi'"), "{err}");
    assert!(!d.join("runs").exists(), "nothing is simulated before the options are checked");
    let mut args = vec!["pretrain", "--data", "sim", "--out", "x", "--batch", "64"];
    args.extend(&TINY[..8]);
    let err = d.fails(&args);
    assert!(err.contains("fewer than one batch of 64"), "{err}");
    let err = d.fails(&["pretrain", "--data", "sim", "--out", "y", "--resume"]);
    assert!(err.contains("config.toml"), "{err}");
    let resume = ["--resume", "--epochs", "3", "--lr-schedule", "cosine", "--jitter", "strong"];
    let err = d.fails(&[&["pretrain", "--data", "sim", "--out", "y"][..], &resume].concat());
    assert!(err.contains("would ignore --epochs, --lr-schedule, --jitter"), "{err}");
    let err = d.fails(&["evaluate", "--model", "nowhere", "--out", "z"]);
    assert!(err.contains("nowhere is not a classifier folder"), "{err}");
    for bad in ["2", "NaN", "-0.1"] {
        let err = d.refused(&["evaluate", "--model", "nowhere", "--out", "z", "--threshold", bad]);
        assert!(err.contains(&format!("{bad} is not a score: give a number from 0 to 1")), "{err}");
    }
    let err = d.fails(&["pretrain", "--data", "sim", "--out", "w", "--device", "cuda"]);
    assert!(err.contains("without CUDA support"), "{err}");
    // A negative number reaches the range check, which says what to give.
    for (flag, want) in [
        ("--core-mask", "give a fraction"),
        ("--blur", "give a Gaussian σ"),
        ("--neighbour-mask", "give a probability"),
        ("--zoom", "give Z"),
        ("--temperature", "give a positive τ"),
        ("--decorrelation", "give a weight of 0 or more"),
        ("--lr", "give a learning rate above 0"),
    ] {
        let err = d.fails(&["pretrain", "--data", "sim", "--out", "w", flag, "-0.5"]);
        assert!(err.contains(&format!("{flag} -0.5: {want}")), "{err}");
    }
    // `finetune` on a missing encoder, refused for its options before it looks.
    let finetune_fails = |extra: &[&str]| {
        let mut args = vec!["finetune", "--encoder", "e", "--data", "sim", "--out", "x"];
        args.extend_from_slice(extra);
        d.fails(&args)
    };
    let err = finetune_fails(&["--mode", "finetune", "--lr", "0"]);
    assert!(err.contains("--lr 0: give a learning rate above 0"), "{err}");
    let err = finetune_fails(&["--interpolation", "0.5"]);
    assert!(err.contains("--interpolation") && err.contains("--mode finetune"), "{err}");
    for mode in ["linear", "scratch"] {
        let err = finetune_fails(&["--mode", mode, "--distill", "100"]);
        assert!(err.contains("--distill") && err.contains("--mode finetune"), "{mode}: {err}");
        let err = finetune_fails(&["--mode", mode, "--cv-folds", "3"]);
        assert!(err.contains("--cv-folds 3: only fine-tuning"), "{mode}: {err}");
    }
    for mode in ["linear", "scratch"] {
        let err = finetune_fails(&["--mode", mode, "--path-average", "on"]);
        assert!(err.contains("--path-average on: only fine-tuning"), "{mode}: {err}");
    }
    let err = finetune_fails(&["--mode", "finetune", "--cv-folds", "2", "--path-average", "on"]);
    assert!(err.contains("--path-average on with --cv-folds 2") && err.contains("ask for one"), "{err}");
    let err = finetune_fails(&["--mode", "finetune", "--cv-folds", "1"]);
    assert!(err.contains("--cv-folds 1: cross-validation needs at least 2 folds"), "{err}");
    let err = finetune_fails(&["--mode", "finetune", "--interpolation", "-0.5"]);
    assert!(err.contains("--interpolation -0.5") && err.contains("must be in [0, 1]"), "{err}");
    let err = d.fails(&["pretrain", "--data", "sim", "--out", "w", "--preset", "quick", "--average-epochs", "13"]);
    assert!(err.contains("--average-epochs 13: give at most the run's 12 epochs"), "{err}");
    let err = d.fails(&["pretrain", "--data", "sim", "--out", "y", "--resume", "--average-epochs", "2"]);
    assert!(err.contains("would ignore --average-epochs"), "{err}");
    let err = d.fails(&["pretrain", "--data", "sim", "--out", "w", "--local-crop", "12"]);
    assert!(err.contains("it needs --local-views 1 or more"), "{err}");
    // The quick preset's local views follow --crop; too small a view says how to go on.
    let err = d.fails(&["pretrain", "--data", "sim", "--out", "w", "--preset", "quick", "--crop", "12"]);
    assert!(
        err.contains("--crop 12: 4 local views of half the view would be 6 px") && err.contains("--local-views 0"),
        "{err}"
    );
    // Local views default to half the view, and their settings are the run's.
    let mut args = vec!["pretrain", "--data", "sim", "--out", "lv", "--local-views", "2"];
    args.extend(TINY);
    d.ok(&args);
    let config = std::fs::read_to_string(d.join("lv/config.toml")).unwrap();
    assert!(config.contains("local_views = 2") && config.contains("local_crop = 12"), "{config}");
    let err = d.fails(&["pretrain", "--data", "sim", "--out", "lv", "--resume", "--local-views", "4"]);
    assert!(err.contains("would ignore --local-views"), "{err}");
}

//! `experiment labels` and `experiment recovery` through the binary, with
//! tiny settings (the science numbers come from `--quick` runs, see the
//! README).

use crate::util::{read_csv, Dir};

const TINY_LABELS: [&str; 18] = [
    "experiment",
    "labels",
    "--n",
    "240",
    "--n-test",
    "120",
    "--labels",
    "20,40,5000",
    "--seeds",
    "2",
    "--pretrain-epochs",
    "1",
    "--epochs",
    "1",
    "--methods",
    "linear,finetune,morphology,backbone",
    "--min-steps",
    "4",
];

/// Every column but the wall time.
fn without_seconds(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|mut r| {
            r.pop();
            r
        })
        .collect()
}

#[test]
fn label_experiment_writes_results_for_every_method_count_and_seed_reproducibly() {
    let d = Dir::new();
    let mut a = TINY_LABELS.to_vec();
    a.extend(["--out", "one", "--pretrain-lr", "3e-3", "--sky-jitter", "0.25", "--feature-contrast", "-0.5"]);
    d.ok(&a);
    let (header, rows) = read_csv(&d.join("one/results.csv"));
    assert_eq!(header[..4], ["method", "labels", "seed", "auc"].map(String::from));
    // 5000 labels exceed the data and are dropped; 2 counts × 2 seeds × 4 methods.
    assert_eq!(rows.len(), 16, "{rows:?}");
    let methods: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(methods, ["backbone", "finetune", "linear", "morphology"].into());
    for r in &rows {
        let auc: f64 = r[3].parse().unwrap();
        assert!((0.0..=1.0).contains(&auc));
    }
    for f in [
        "report.md",
        "auc_vs_labels.png",
        "completeness_vs_labels.png",
        "run.toml",
        "runs/finetune-40-seed2/classifier.bpk",
    ] {
        assert!(d.join("one").join(f).is_file(), "{f}");
    }
    let report = std::fs::read_to_string(d.join("one/report.md")).unwrap();
    assert!(report.contains("morphology + logistic regression") && report.contains("| 20 | 40 |"), "{report}");
    assert!(report.contains("| NNCLR backbone + linear probe |"), "{report}");
    // Each self-supervised method against the baseline, draw by draw.
    assert!(report.contains("## AUC draw by draw"), "{report}");
    for a in ["NNCLR + linear probe", "NNCLR + fine-tuning", "NNCLR backbone + linear probe"] {
        let row = format!("| {a} − morphology + logistic regression |");
        let row = report.lines().find(|l| l.starts_with(&row)).unwrap_or_else(|| panic!("{row}: {report}"));
        assert!(row.contains(" of 2) |"), "{row}");
    }
    // The same seed on the same data gives the same numbers.
    let mut b = TINY_LABELS.to_vec();
    b.extend(["--out", "two", "--data", "one/train", "--test", "one/test", "--encoder", "one/encoder"]);
    // A method named twice runs once.
    let mut twice = b.clone();
    let i = twice.iter().position(|a| *a == "linear,finetune,morphology,backbone").unwrap();
    twice[i] = "linear,finetune,morphology,backbone,linear";
    d.ok(&twice);
    assert_eq!(without_seconds(rows), without_seconds(read_csv(&d.join("two/results.csv")).1));
    // The quick preset's local views are the pretraining's, recorded with it.
    let run = std::fs::read_to_string(d.join("one/run.toml")).unwrap();
    assert!(run.contains("pretrain_local_views = 4") && run.contains("pretrain_epochs = 1"), "{run}");
    assert!(run.contains("pretrain_decorrelation = 1.0") && run.contains("pretrain_lr = 0.003"), "{run}");
    assert!(run.contains("pretrain_sky_jitter = 0.25"), "{run}");
    // The mocks were made with the features on brighter host light, and say so.
    assert!(run.contains("feature_contrast = -0.5"), "{run}");
    for set in ["train", "test"] {
        let sim = std::fs::read_to_string(d.join(&format!("one/{set}/run.toml"))).unwrap();
        assert!(sim.contains("feature_contrast = -0.5"), "{set}: {sim}");
    }
    let report = std::fs::read_to_string(d.join("one/report.md")).unwrap();
    assert!(report.contains("adds 63% to the host's light (`--feature-contrast -0.5`"), "{report}");
    // Given data, nothing is simulated: the option is refused, not ignored.
    let mut given = TINY_LABELS.to_vec();
    given.extend(["--out", "no", "--data", "one/train", "--test", "one/test", "--feature-contrast", "0"]);
    let err = d.fails(&given);
    assert!(err.contains("--feature-contrast") && err.contains("without --data"), "{err}");
    // With --encoder nothing is pretrained, and run.toml says no pretraining settings.
    let run = std::fs::read_to_string(d.join("two/run.toml")).unwrap();
    assert!(!run.contains("pretrain_") && !run.contains("feature_contrast"), "{run}");
    assert!(run.contains("one/encoder") && run.contains("finetune_lr_schedule = \"cosine\""), "{run}");
    let config =
        |run: &str, m: &str| std::fs::read_to_string(d.join(&format!("{run}/runs/{m}-40-seed1/config.toml"))).unwrap();
    assert!(config("two", "finetune").contains("lr_schedule = \"cosine\""), "{}", config("two", "finetune"));
    let report = std::fs::read_to_string(d.join("two/report.md")).unwrap();
    assert!(report.contains("with a cosine-decayed learning rate"), "{report}");
    // With few labels fine-tuning keeps the mean of its path unless told
    // otherwise, and cross-validates no stop.
    let ft = config("two", "finetune");
    assert!(ft.contains("path_average = true") && ft.contains("cv_folds = 0"), "{ft}");
    assert!(run.contains("finetune_path_averaged = [\n    20,\n    40,\n]"), "{run}");
    assert!(run.contains("finetune_cross_validated = []"), "{run}");
    // ... and keeps its BatchNorm statistics; no scratch ran, so the report
    // says nothing of fresh ones.
    assert!(ft.contains("batchnorm_images = 0"), "{ft}");
    assert!(run.contains("finetune_fresh_batchnorm = []"), "{run}");
    assert!(!report.contains("BatchNorm statistics afresh"), "{report}");
    assert!(run.contains("finetune_cv_folds = 0\n"), "no count cross-validates: {run}");
    assert!(report.contains("with 20, 40 labels fine-tuning keeps the mean of its weights at six points"), "{report}");
    assert!(!report.contains("cross-validation on the draw's own labels"), "{report}");
    // Fine-tuning's schedule is an option, in each run's config.toml (the probe, unstepped, says constant).
    let swap = |args: &mut Vec<&str>, from: &str, to: &'static str| {
        let i = args.iter().position(|a| *a == from).unwrap();
        args[i] = to;
    };
    let mut cst = b.clone();
    swap(&mut cst, "linear,finetune,morphology,backbone", "linear,finetune");
    swap(&mut cst, "20,40,5000", "40");
    swap(&mut cst, "two", "const");
    cst.extend(["--trained-seeds", "1", "--lr-schedule", "constant", "--finetune-lr", "3e-5"]);
    cst.extend(["--finetune-interpolation", "0.5", "--finetune-distill", "30", "--finetune-cv-folds", "2"]);
    d.ok(&cst);
    let run = std::fs::read_to_string(d.join("const/run.toml")).unwrap();
    assert!(run.contains("finetune_lr_schedule = \"constant\""), "{run}");
    assert!(config("const", "finetune").contains("lr_schedule = \"constant\""), "{}", config("const", "finetune"));
    // Fine-tuning's rate is an option too, in run.toml and each fine-tuning run's config.toml.
    let lr = |toml: &str, key: &str| -> f64 {
        let line =
            toml.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("{key}: {toml}"));
        line.split(" = ").nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(lr(&run, "finetune_lr"), 3e-5);
    assert_eq!(lr(&config("const", "finetune"), "lr"), 3e-5);
    // So is how far fine-tuning's weights go from the pretrained ones.
    assert_eq!(lr(&run, "finetune_interpolation"), 0.5);
    assert_eq!(lr(&config("const", "finetune"), "interpolation"), 0.5);
    assert_eq!(lr(&std::fs::read_to_string(d.join("two/run.toml")).unwrap(), "finetune_lr"), 1e-4);
    let report = std::fs::read_to_string(d.join("const/report.md")).unwrap();
    assert!(report.contains("from 3e-5 and 1e-3") && report.contains("weights 0.5 of the way"), "{report}");
    // And the unlabelled images it distils from.
    assert_eq!(lr(&run, "finetune_distill"), 30.0);
    assert_eq!(lr(&config("const", "finetune"), "distill"), 30.0);
    assert!(report.contains("up to 30 unlabelled training images"), "{report}");
    let log = std::fs::read_to_string(d.join("const/runs/finetune-40-seed1/log.txt")).unwrap();
    assert!(log.contains("self-distillation: 30 unlabelled images"), "{log}");
    // And how far it goes, chosen by cross-validation on the draw's labels
    // (asked for, it replaces the path average).
    assert_eq!(lr(&run, "finetune_cv_folds"), 2.0);
    assert!(run.contains("finetune_cross_validated = [40]"), "given folds apply to every count: {run}");
    assert!(run.contains("finetune_path_averaged = []"), "{run}");
    assert_eq!(lr(&config("const", "finetune"), "cv_folds"), 2.0);
    assert!(config("const", "finetune").contains("path_average = false"), "{}", config("const", "finetune"));
    assert!(report.contains("as 2-fold cross-validation on the draw's own labels finds best"), "{report}");
    assert!(log.contains("fine-tuning's stop by 2-fold cross-validation on the 40 training labels"), "{log}");
    assert!(log.contains("pooled held-out AUC: the probe ") && log.contains(", 1/16 of the schedule "), "{log}");
    for (value, methods, why) in [
        ("0", "linear,finetune", "give a learning rate above 0"),
        ("1e-5", "linear,scratch", "add finetune to --methods"),
    ] {
        let mut c = cst.clone();
        swap(&mut c, "3e-5", value);
        swap(&mut c, "linear,finetune", methods);
        let err = d.fails(&c);
        assert!(err.contains("--finetune-lr") && err.contains(why), "{value} {methods}: {err}");
    }
    for (value, methods, why) in
        [("-0.5", "linear,finetune", "must be in [0, 1]"), ("0.5", "linear,scratch", "add finetune to --methods")]
    {
        let mut c = cst.clone();
        let lr = c.iter().position(|a| *a == "--finetune-lr").unwrap();
        c.drain(lr..lr + 2);
        swap(&mut c, "0.5", value);
        swap(&mut c, "linear,finetune", methods);
        let err = d.fails(&c);
        assert!(err.contains("--finetune-interpolation") && err.contains(why), "{value} {methods}: {err}");
    }
    let mut c = cst.clone();
    for flag in ["--finetune-lr", "--finetune-interpolation"] {
        let i = c.iter().position(|a| *a == flag).unwrap();
        c.drain(i..i + 2);
    }
    swap(&mut c, "linear,finetune", "linear,scratch");
    let err = d.fails(&c);
    assert!(err.contains("--finetune-distill") && err.contains("add finetune to --methods"), "{err}");
    let i = c.iter().position(|a| *a == "--finetune-distill").unwrap();
    c.drain(i..i + 2);
    let err = d.fails(&c);
    assert!(err.contains("--finetune-cv-folds") && err.contains("add finetune to --methods"), "{err}");
    swap(&mut c, "linear,scratch", "linear,finetune");
    let i = c.iter().position(|a| *a == "--finetune-cv-folds").unwrap();
    c[i + 1] = "1";
    let err = d.fails(&c);
    assert!(err.contains("--finetune-cv-folds 1") && err.contains("at least 2 folds"), "{err}");
    // The path average and a cross-validated stop both say where fine-tuning ends.
    c[i + 1] = "2";
    c.extend(["--finetune-path-average", "on"]);
    let err = d.fails(&c);
    assert!(
        err.contains("--finetune-path-average on with --finetune-cv-folds 2") && err.contains("ask for one"),
        "{err}"
    );
    // The probe runs in memory, on features computed once per image, and
    // is `finetune --mode linear` on the same draw.
    assert!(!d.join("two/runs/linear-40-seed1").exists());
    d.ok(&[
        "finetune",
        "--mode",
        "linear",
        "--encoder",
        "one/encoder",
        "--data",
        "one/train",
        "--labels",
        "40",
        "--val-fraction",
        "0.1",
        "--test-fraction",
        "0",
        "--seed",
        "1",
        "--out",
        "lin",
    ]);
    d.ok(&["evaluate", "--model", "lin", "--data", "one/test", "--split", "all", "--out", "lin-ev"]);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("lin-ev/metrics.json")).unwrap()).unwrap();
    let (_, rows) = read_csv(&d.join("two/results.csv"));
    let row = rows.iter().find(|r| r[..3] == ["linear", "40", "1"]).expect("the probe's row");
    let auc: f64 = row[3].parse().unwrap();
    // Within 0.005: this barely pretrained probe's logits sit within 1e-5
    // of 0, where `evaluate`'s f32 probabilities tie (the experiment's f64
    // ones do not).
    assert!((metrics["summary"]["auc"].as_f64().unwrap() - auc).abs() < 5e-3, "{metrics} against {row:?}");
    // A run that trains no network records no fine-tuning settings.
    let mut probe = b.clone();
    swap(&mut probe, "linear,finetune,morphology,backbone", "linear,morphology");
    swap(&mut probe, "20,40,5000", "40");
    swap(&mut probe, "two", "probe");
    d.ok(&probe);
    let run = std::fs::read_to_string(d.join("probe/run.toml")).unwrap();
    assert!(run.contains("\"linear\"") && !run.contains("finetune_"), "{run}");
    let config = std::fs::read_to_string(d.join("one/encoder/config.toml")).unwrap();
    assert!(config.contains("local_views = 4") && config.contains("local_crop = 12"), "{config}");
    assert!(config.contains("decorrelation = 1.0"), "the quick preset's penalty: {config}");
    assert!(config.lines().any(|l| l == "lr = 0.003"), "--pretrain-lr reaches the pretraining: {config}");
    assert!(config.lines().any(|l| l == "sky = 0.25"), "--sky-jitter reaches the pretraining: {config}");
    let mut bad = TINY_LABELS.to_vec();
    bad.extend(["--out", "bad", "--pretrain-lr", "0"]);
    let err = d.fails(&bad);
    assert!(err.contains("--pretrain-lr 0: give a learning rate above 0"), "{err}");
    let mut bad = TINY_LABELS.to_vec();
    bad.extend(["--out", "bad", "--probe-variance", "1.5"]);
    let err = d.fails(&bad);
    assert!(err.contains("--probe-variance 1.5") && err.contains("(0, 1]"), "{err}");
    assert!(!d.join("bad/train").exists(), "simulated before refusing");
    for (flag, value) in
        [("--local-views", "0"), ("--decorrelation", "0"), ("--pretrain-lr", "1e-3"), ("--sky-jitter", "1")]
    {
        let mut c = b.clone();
        c.extend([flag, value]);
        let err = d.fails(&c);
        assert!(err.contains("--encoder is already pretrained"), "{flag}: {err}");
    }
}

#[test]
fn demo_checks_its_pretraining_overrides_before_simulating() {
    // The demo takes the experiments' overrides (to rerun older tables);
    // a bad one is refused by name before minutes of simulation.
    let d = Dir::new();
    for (flag, value, says) in [
        ("--pretrain-lr", "0", "--pretrain-lr 0: give a learning rate above 0"),
        ("--decorrelation", "-1", "decorrelation"),
        ("--sky-jitter", "11", "--sky-jitter 11: give an amplitude"),
    ] {
        let err = d.fails(&["demo", "--out", "demo", flag, value]);
        assert!(err.contains(says), "{flag}: {err}");
        assert!(!d.join("demo/train").exists(), "{flag}: simulated before refusing");
    }
}

#[test]
fn demo_reports_the_50_label_probe_over_draws_as_the_experiment_measures_it() {
    // One draw of 50 labels is a sample; the demo also gives the mean over
    // draws, which must be what `experiment labels` measures on the same
    // encoder, data and seeds.
    let d = Dir::new();
    let out = d.ok(&[
        "demo",
        "--out",
        "demo",
        "--n",
        "400",
        "--n-test",
        "300",
        "--epochs",
        "1",
        "--finetune-epochs",
        "1",
        "--finetune-all-epochs",
        "1",
        "--draws",
        "3",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = std::fs::read_to_string(d.join("demo/report.md")).unwrap();
    let row = report.lines().find(|l| l.contains("mean ± sd over 3 label draws")).expect("the draws' row");
    // The few-label fine-tuning keeps the mean of its path, and says so.
    assert!(report.contains("training labels it keeps the mean of its weights at six points"), "{report}");
    assert!(report.contains("sky jitter 0.5"), "the encoder line names the preset's sky jitter: {report}");
    let demo_mean: f64 = row.split('|').nth(3).unwrap().split('±').next().unwrap().trim().parse().unwrap();
    assert!(stdout.contains("linear-50, mean of 3 draws"), "{stdout}");
    assert!(std::fs::read_to_string(d.join("demo/run.toml")).unwrap().contains("probe_draws = 3"));
    // Each draw's numbers, and a plot of their spread that the report shows.
    let (header, draws) = read_csv(&d.join("demo/probe_draws.csv"));
    assert_eq!(header, ["draw", "seed", "auc", "completeness_at_22pct_fpr"]);
    let seeds: Vec<&str> = draws.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(seeds, ["1", "2", "3"], "draws are seeded from --seed on");
    let csv_mean = draws.iter().map(|r| r[2].parse::<f64>().unwrap()).sum::<f64>() / 3.0;
    assert!((csv_mean - demo_mean).abs() < 6e-4, "csv {csv_mean}, report {demo_mean}");
    assert_eq!(&std::fs::read(d.join("demo/probe_draws.png")).unwrap()[1..4], b"PNG");
    assert!(report.contains("![draws](probe_draws.png)"), "{report}");
    // Similarity search from every tidal test galaxy: the report's share of
    // tidal neighbours, counted again here by a full sort.
    let (_, e) = tidalscope_io::npy::read_f32(&d.join("demo/embed-test/embeddings.npy")).unwrap();
    let (header, ids) = read_csv(&d.join("demo/embed-test/ids.csv"));
    let label = header.iter().position(|h| h == "label").unwrap();
    let dim = e.len() / ids.len();
    let unit: Vec<Vec<f64>> = e
        .chunks(dim)
        .map(|r| {
            let n = r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            r.iter().map(|v| *v as f64 / n).collect()
        })
        .collect();
    let tidal: Vec<bool> = ids.iter().map(|r| r[label] == "1").collect();
    let mut shares = Vec::new();
    for q in (0..ids.len()).filter(|&q| tidal[q]) {
        let mut others: Vec<(f64, usize)> = (0..ids.len())
            .filter(|&i| i != q)
            .map(|i| (unit[q].iter().zip(&unit[i]).map(|(a, b)| a * b).sum(), i))
            .collect();
        others.sort_by(|a, b| b.0.total_cmp(&a.0));
        shares.push(others[..10].iter().filter(|(_, i)| tidal[*i]).count() as f64 / 10.0);
    }
    let precision = 100.0 * shares.iter().sum::<f64>() / shares.len() as f64;
    assert!(report.contains(&format!("**{precision:.1}%** are tidal")), "{precision:.1}: {report}");
    assert!(stdout.contains("similarity search:"), "{stdout}");
    assert_eq!(&std::fs::read(d.join("demo/search-example/mosaic.png")).unwrap()[1..4], b"PNG");
    assert!(report.contains("![search](search-example/mosaic.png)"), "{report}");
    d.ok(&[
        "experiment",
        "labels",
        "--encoder",
        "demo/encoder",
        "--data",
        "demo/train",
        "--test",
        "demo/test",
        "--methods",
        "linear",
        "--labels",
        "50",
        "--seeds",
        "3",
        "--out",
        "exp",
    ]);
    let (_, rows) = read_csv(&d.join("exp/results.csv"));
    assert_eq!(rows.len(), 3);
    // The same computation: only the report's 3 decimals and the CSV's 4 differ.
    let aucs: Vec<f64> = rows.iter().map(|r| r[3].parse().unwrap()).collect();
    let mean = aucs.iter().sum::<f64>() / 3.0;
    assert!((mean - demo_mean).abs() < 6e-4, "demo {demo_mean}, experiment {aucs:?}");
    // The first draw is the demo's own 50-label probe (scored by
    // `evaluate`, in single precision, where a barely trained probe's
    // scores can tie).
    let single =
        report.lines().find(|l| l.starts_with("| linear probe (frozen encoder) | 50 |")).expect("linear-50 row");
    let single: f64 = single.split('|').nth(3).unwrap().trim().parse().unwrap();
    assert!((single - aucs[0]).abs() < 5e-3, "demo's draw {single}, experiment's first {}", aucs[0]);
}

#[test]
fn recovery_experiment_bins_completeness_by_truth() {
    let d = Dir::new();
    d.ok(&[
        "experiment",
        "recovery",
        "--out",
        "rec",
        "--surveys",
        "hsc-ud",
        "--n",
        "240",
        "--n-train",
        "200",
        "--pretrain-epochs",
        "1",
        "--epochs",
        "1",
        "--min-steps",
        "4",
    ]);
    let (header, rows) = read_csv(&d.join("rec/hsc-ud/recovery.csv"));
    assert_eq!(header[0], "property");
    let props: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        props.into_iter().collect::<Vec<_>>(),
        ["feature_sb", "feature_type", "host_mag_r", "negative_kind_false_positive_rate"]
    );
    // The positives of every SB bin add up to the recovery set's positives (half of 240).
    let sb_total: usize = rows.iter().filter(|r| r[0] == "feature_sb").map(|r| r[2].parse::<usize>().unwrap()).sum();
    assert_eq!(sb_total, 120);
    let neg_total: usize = rows
        .iter()
        .filter(|r| r[0] == "negative_kind_false_positive_rate")
        .map(|r| r[2].parse::<usize>().unwrap())
        .sum();
    assert_eq!(neg_total, 120);
    // At the 22%-FPR threshold, the negatives' overall false-positive rate is at most 22%.
    let flagged: usize = rows
        .iter()
        .filter(|r| r[0] == "negative_kind_false_positive_rate")
        .map(|r| r[3].parse::<usize>().unwrap())
        .sum();
    assert!(flagged <= 26, "{flagged} of 120 negatives above the 22% threshold");
    for f in ["report.md", "completeness_vs_sb.png", "completeness_vs_host_mag.png", "run.toml"] {
        assert!(d.join("rec").join(f).is_file(), "{f}");
    }
    let run = std::fs::read_to_string(d.join("rec/run.toml")).unwrap();
    assert!(run.contains("train_objects = 200") && run.contains("finetune_lr_schedule = \"cosine\""), "{run}");
    assert!(run.contains("pretrain_lr = 0.004"), "the quick preset's rate: {run}");
    // A given model is scored as it is: nothing is simulated for training,
    // pretrained or fine-tuned, and run.toml names the model, not those settings.
    d.ok(&[
        "experiment",
        "recovery",
        "--out",
        "rec-model",
        "--surveys",
        "hsc-ud",
        "--n",
        "240",
        "--model",
        "rec/hsc-ud/classifier",
    ]);
    assert!(!d.join("rec-model/hsc-ud/train").exists() && !d.join("rec-model/hsc-ud/encoder").exists());
    // Scoring on the CPU is deterministic and the recovery set's seed is the same.
    let (_, again) = read_csv(&d.join("rec-model/hsc-ud/recovery.csv"));
    assert_eq!(again, rows, "the same model on the same recovery set gives the same table");
    let run = std::fs::read_to_string(d.join("rec-model/run.toml")).unwrap();
    // The resolved settings (after the command line, which names the model too).
    let config = &run[run.find("[config]").expect("a [config] table")..];
    assert!(config.contains("\"rec/hsc-ud/classifier\""), "{run}");
    for key in ["train_objects", "pretrain_epochs", "pretrain_local_views", "pretrain_lr", "pretrain_sky", "finetune_"]
    {
        assert!(!config.contains(key), "{key}: {run}");
    }
    let mut args = vec!["experiment", "recovery", "--out", "rec-lr", "--model", "rec/hsc-ud/classifier"];
    args.extend(["--pretrain-lr", "1e-3"]);
    let err = d.fails(&args);
    assert!(err.contains("--pretrain-lr") && err.contains("--model is already trained"), "{err}");
}

//! `tidalscope demo`: the whole pipeline on built-in simulated data, with a
//! one-page report — the README's main command.
//!
//! Stages: simulate a training set and an independent test set
//! (HSC-Ultradeep mocks); pretrain an NNCLR encoder with the `quick`
//! preset; train the classifier as a linear probe and by fine-tuning, with
//! every training label and with only 50; score the independent test set;
//! fit the 50-label probe again on many label draws (one draw is a
//! sample: its AUC moves by several hundredths between draws); embed the
//! test set and search from each of its tidal galaxies (how many of the
//! nearest neighbours are tidal too); write `report.md` with the numbers,
//! the timings and the plots.

use crate::cli::{DataArgs, DemoArgs, EmbedArgs, SearchArgs, SourceArgs, SplitArg, SurveyArg};
use crate::manifest::Manifest;
use crate::progress::BarReporter;
use anyhow::{ensure, Context};
use std::fmt::Write as _;
use std::path::Path;
use tidalscope_eval::search::{label_precision, normalise_rows, SearchPrecision};
use tidalscope_train::config::{FinetuneConfig, LrSchedule, Mode, PretrainConfig, SplitSpec};

struct Trial {
    name: String,
    mode: Mode,
    labels: usize,
    train_size: usize,
    /// Whether fine-tuning kept the mean of its path (`finetune --path-average`).
    path_averaged: bool,
    summary: tidalscope_eval::metrics::Summary,
}

/// Neighbours per query of the demo's similarity search.
const SEARCH_K: usize = 10;

/// Similarity search on the embedded test set: its precision from every
/// tidal galaxy, and the id of the first, the example the mosaic shows.
fn search_precision(dir: &Path) -> anyhow::Result<(SearchPrecision, String)> {
    let tidalscope_io::embeddings::Embeddings { dim, vectors: mut rows, ids, .. } =
        tidalscope_io::embeddings::Embeddings::read(dir)?;
    normalise_rows(&mut rows, dim);
    let (id, label) = (ids.require("id")?, ids.require("label")?);
    let labels: Vec<u8> = ids.rows.iter().map(|r| u8::from(r.fields[label] == "1")).collect();
    let precision = label_precision(&rows, dim, &labels, SEARCH_K).with_context(|| {
        format!("similarity search needs a tidal test galaxy and more than {SEARCH_K} test objects")
    })?;
    let first = ids.rows.iter().find(|r| r.fields[label] == "1").expect("a tidal galaxy, as precision found one");
    Ok((precision, first.fields[id].clone()))
}

/// The 50-label probe over many label draws: (mean, sd) of each measure.
struct Draws {
    count: usize,
    auc: (f64, f64),
    completeness: (f64, f64),
}

impl Draws {
    /// The mean and sd over draws, as `experiment labels` reports them.
    fn of(summaries: &[tidalscope_eval::metrics::Summary]) -> Self {
        let mean_sd = |v: Vec<f64>| super::experiment::mean_sd(&v);
        Self {
            count: summaries.len(),
            auc: mean_sd(summaries.iter().map(|s| s.auc).collect()),
            completeness: mean_sd(summaries.iter().map(|s| s.completeness_at_22pct_fpr).collect()),
        }
    }
}

/// Writes `probe_draws.csv` (each draw's seed, from `first` on, its AUC
/// and completeness) and `probe_draws.png`: the draws' AUCs sorted, so the
/// spread reads as a distribution, against their mean (`draws`, what the
/// report gives) and the all-label probe's AUC.
fn write_draws(
    out: &Path,
    first: u64,
    summaries: &[tidalscope_eval::metrics::Summary],
    draws: &Draws,
    all_labels: Option<f64>,
) -> anyhow::Result<()> {
    use tidalscope_eval::plot::{line_plot, Axes, Series, PALETTE};
    let path = out.join("probe_draws.csv");
    let mut csv = tidalscope_io::csv::CsvWriter::create(&path, &["draw", "seed", "auc", "completeness_at_22pct_fpr"])?;
    for (k, s) in summaries.iter().enumerate() {
        csv.row([
            (k + 1).to_string(),
            (first + k as u64).to_string(),
            format!("{:.6}", s.auc),
            format!("{:.6}", s.completeness_at_22pct_fpr),
        ])?;
    }
    csv.finish()?;
    let n = summaries.len();
    let mut aucs: Vec<f64> = summaries.iter().map(|s| s.auc).collect();
    aucs.sort_by(f64::total_cmp);
    // Each draw at the middle of its share of the distribution.
    let x: Vec<f64> = (0..n).map(|k| (k as f64 + 0.5) / n as f64).collect();
    let mean = draws.auc.0;
    let across = |y: f64| (vec![0.0, 1.0], vec![y, y]);
    let mut sorted = Series::line(format!("{n} draws of 50 labels, sorted"), x, aucs, PALETTE[0]);
    sorted.markers = true;
    let (mx, my) = across(mean);
    let mut series = vec![sorted, Series::line(format!("their mean, {mean:.3}"), mx, my, PALETTE[1])];
    if let Some(a) = all_labels {
        let (ax, ay) = across(a);
        series.push(Series::line(format!("all labels, {a:.3}"), ax, ay, PALETTE[2]));
    }
    let mut axes = Axes::new(
        "Linear probe with 50 labels: AUC over label draws",
        "fraction of draws (sorted by AUC)",
        "AUC on the test set",
    );
    axes.x_range = Some((0.0, 1.0));
    line_plot(&out.join("probe_draws.png"), &axes, &series)?;
    Ok(())
}

/// Runs `demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let t_all = std::time::Instant::now();
    // Checked before the minutes of simulation.
    let cfg = super::train::pretrain_config(PretrainConfig::quick(), &args.pretrain, args.epochs, args.seed)?;
    ensure!(args.n_test > SEARCH_K, "--n-test must be above {SEARCH_K}: the search finds {SEARCH_K} neighbours");
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let device = args.device.device()?;
    let mut timings: Vec<(String, f64)> = Vec::new();
    let stage = |name: &str| eprintln!("== {name}");

    stage("simulate");
    let t = std::time::Instant::now();
    let mocks = (0.3, tidalscope_sim::FEATURE_CONTRAST);
    super::simulate::mock_set(&out.join("train"), args.n, args.seed, SurveyArg::HscUd, mocks)?;
    super::simulate::mock_set(&out.join("test"), args.n_test, args.seed + 1_000_003, SurveyArg::HscUd, mocks)?;
    timings.push(("simulate".into(), t.elapsed().as_secs_f64()));

    stage("pretrain");
    let t = std::time::Instant::now();
    let train_src = super::open_source(&out.join("train"), &SourceArgs::auto(), None)?;
    let enc_dir = out.join("encoder");
    let reporter = BarReporter::new(Some(&enc_dir));
    std::fs::create_dir_all(&enc_dir)?;
    let pre = tidalscope_train::pretrain::pretrain(&cfg, &[train_src.as_ref()], &enc_dir, &device, false, &reporter)?;
    timings.push(("pretrain".into(), t.elapsed().as_secs_f64()));
    eprintln!("pretrained {} steps, final loss {:.3}, {:.0} views/s", pre.steps, pre.final_loss, pre.views_per_s);

    let test_data = DataArgs {
        data: vec![out.join("test")],
        unlabelled: None,
        tidal: None,
        label_file: None,
        source: SourceArgs::auto(),
    };
    let mut trials = Vec::new();
    for (mode, labels, epochs) in [
        (Mode::Linear, 0, args.finetune_epochs),
        (Mode::Linear, 50, args.finetune_epochs),
        (Mode::Finetune, 0, args.finetune_all_epochs),
        (Mode::Finetune, 50, args.finetune_epochs),
    ] {
        let name = format!(
            "{}-{}",
            if mode == Mode::Linear { "linear" } else { "finetune" },
            if labels == 0 { "all".to_string() } else { labels.to_string() }
        );
        stage(&format!("classifier {name}"));
        let t = std::time::Instant::now();
        let dir = out.join(format!("classifier-{name}"));
        std::fs::create_dir_all(&dir)?;
        let fcfg = FinetuneConfig {
            mode,
            labels,
            epochs,
            split: SplitSpec::Stratified { val: 0.1, test: 0.0 },
            seed: args.seed,
            lr_schedule: crate::cli::lr_schedule(args.lr_schedule, mode),
            ..FinetuneConfig::for_mode(mode)
        };
        let rep = BarReporter::new(Some(&dir));
        let fs = tidalscope_train::finetune::finetune(
            &fcfg,
            &enc_dir,
            &[train_src.as_ref()],
            &[out.join("train")],
            &dir,
            &device,
            &rep,
        )?;
        let eval_dir = out.join(format!("eval-{name}"));
        let evaluated = super::train::evaluate_into(
            &dir,
            &test_data,
            SplitArg::All,
            &eval_dir,
            0.5,
            &device,
            &BarReporter::quiet(Some(&eval_dir)),
        )?;
        ensure!(
            evaluated.failed == 0,
            "{} simulated test objects could not be scored; see {}",
            evaluated.failed,
            eval_dir.join("errors.csv").display()
        );
        let summary = evaluated.summary.context("the simulated test set lacks one class")?;
        let seconds = t.elapsed().as_secs_f64();
        eprintln!(
            "{name}: AUC {:.3}, completeness {:.1}% at 22% contamination ({seconds:.0} s)",
            summary.auc,
            100.0 * summary.completeness_at_22pct_fpr
        );
        timings.push((format!("classifier {name} (train + evaluate)"), seconds));
        trials.push(Trial {
            name,
            mode,
            labels,
            train_size: fs.sizes.0,
            path_averaged: fs.path_points.is_some(),
            summary,
        });
    }
    let draws = if args.draws == 0 {
        None
    } else {
        let name = format!("linear probe, 50 labels, {} draws", args.draws);
        stage(&name);
        let t = std::time::Instant::now();
        let seeds = args.seed..args.seed + args.draws as u64;
        let summaries =
            super::experiment::probe_draws(&enc_dir, &out.join("train"), &out.join("test"), 50, seeds, &device)?;
        let d = Draws::of(&summaries);
        let all = trials.iter().find(|t| t.mode == Mode::Linear && t.labels == 0).map(|t| t.summary.auc);
        write_draws(out, args.seed, &summaries, &d, all)?;
        eprintln!(
            "linear-50 over {} draws: AUC {:.3} ± {:.3}, completeness {:.1}% ± {:.1} at 22% contamination",
            d.count,
            d.auc.0,
            d.auc.1,
            100.0 * d.completeness.0,
            100.0 * d.completeness.1
        );
        timings.push((name, t.elapsed().as_secs_f64()));
        Some(d)
    };
    stage("similarity search");
    let t = std::time::Instant::now();
    let emb_dir = out.join("embed-test");
    super::infer::embed(EmbedArgs {
        encoder: enc_dir.clone(),
        data: out.join("test"),
        out: emb_dir.clone(),
        table: None,
        shard: None,
        color_by: "label".into(),
        chunk: 256,
        device: args.device,
        source: SourceArgs::auto(),
    })?;
    let (search, example) = search_precision(&emb_dir)?;
    super::infer::search(SearchArgs {
        embeddings: emb_dir,
        query: vec![example],
        k: SEARCH_K,
        out: out.join("search-example"),
        approximate: false,
        ef: 128,
        device: args.device,
    })?;
    eprintln!(
        "similarity search from each of {} tidal test galaxies: {:.0}% of the {} nearest neighbours tidal (at random: {:.0}%)",
        search.queries,
        100.0 * search.precision,
        search.k,
        100.0 * search.base_rate
    );
    timings.push(("similarity search (embed the test set, search)".into(), t.elapsed().as_secs_f64()));
    let total = t_all.elapsed().as_secs_f64();
    write_report(out, &args, &cfg, &pre, (&trials, draws.as_ref(), &search), &timings, total)?;
    #[derive(serde::Serialize)]
    struct Resolved<'a> {
        n: usize,
        n_test: usize,
        seed: u64,
        device: String,
        pretrain: &'a PretrainConfig,
        finetune_epochs: usize,
        finetune_all_epochs: usize,
        finetune_lr_schedule: LrSchedule,
        probe_draws: usize,
    }
    Manifest::new(
        "demo",
        Resolved {
            n: args.n,
            n_test: args.n_test,
            seed: args.seed,
            device: args.device.kind.to_string(),
            pretrain: &cfg,
            finetune_epochs: args.finetune_epochs,
            finetune_all_epochs: args.finetune_all_epochs,
            finetune_lr_schedule: crate::cli::lr_schedule(args.lr_schedule, Mode::Finetune),
            probe_draws: args.draws,
        },
        started,
        total,
    )
    .write(out)?;
    println!("demo finished in {:.1} min → {}", total / 60.0, out.join("report.md").display());
    for t in &trials {
        println!(
            "  {:<14} AUC {:.3}   completeness at 22% contamination {:.1}%",
            t.name,
            t.summary.auc,
            100.0 * t.summary.completeness_at_22pct_fpr
        );
    }
    if let Some(d) = &draws {
        println!(
            "  linear-50, mean of {} draws: AUC {:.3} ± {:.3}   completeness at 22% contamination {:.1}% ± {:.1}",
            d.count,
            d.auc.0,
            d.auc.1,
            100.0 * d.completeness.0,
            100.0 * d.completeness.1
        );
    }
    println!(
        "  similarity search: {:.1}% of the {} nearest neighbours of a tidal galaxy are tidal ({:.1}% at random)",
        100.0 * search.precision,
        search.k,
        100.0 * search.base_rate
    );
    Ok(())
}

fn write_report(
    out: &Path,
    args: &DemoArgs,
    cfg: &PretrainConfig,
    pre: &tidalscope_train::pretrain::PretrainSummary,
    (trials, draws, search): (&[Trial], Option<&Draws>, &SearchPrecision),
    timings: &[(String, f64)],
    total: f64,
) -> anyhow::Result<()> {
    let mut r = String::new();
    writeln!(r, "# tidalscope demo report\n")?;
    writeln!(
        r,
        "Simulated HSC-SSP Ultradeep cutouts (128×128, g r i z y; 30% with a visible tidal feature), an NNCLR encoder pretrained without labels, and a classifier trained on few labels — scored on an **independent** simulated test set the models never saw.\n"
    )?;
    writeln!(
        r,
        "* training set: {} cutouts (`train/`), test set: {} cutouts (`test/`, another seed)",
        args.n, args.n_test
    )?;
    writeln!(
        r,
        "* encoder: preset `{}` (width {}, input: {}, {}×{} binning, {} px views, {} local views of {} px{}{}), {} epochs × batch {}, Adam {:e}, queue {}, τ = {}: {} steps, final loss {:.3} ({}), {:.0} views/s",
        cfg.preset, cfg.width,
        cfg.channels.describe(),
        cfg.bin, cfg.bin, cfg.crop, cfg.local_views, cfg.local_crop,
        if cfg.jitter.sky > 0.0 { format!(", sky jitter {}", cfg.jitter.sky) } else { String::new() },
        if cfg.crowd > 0.0 { format!(", crowded with the sources of {} other images", cfg.crowd) } else { String::new() },
        cfg.epochs, cfg.batch, cfg.lr, cfg.queue_size, cfg.temperature, pre.steps, pre.final_loss,
        if cfg.decorrelation > 0.0 { format!("NNCLR + {} × decorrelation", cfg.decorrelation) } else { "NNCLR".into() },
        pre.views_per_s
    )?;
    writeln!(
        r,
        "* classifiers: linear probes fitted to convergence (L2 by cross-validation, on the standardised and on the whitened input: the one clearly better, else the mean of both); fine-tuning with Adam at {:e}, a {} learning rate over the steps{}",
        FinetuneConfig::default_lr(Mode::Finetune),
        crate::cli::lr_schedule(args.lr_schedule, Mode::Finetune).describe(),
        match trials.iter().filter(|t| t.path_averaged).map(|t| t.train_size.to_string()).collect::<Vec<_>>() {
            n if n.is_empty() => String::new(),
            n => format!(
                "; with {} training labels it keeps {}",
                n.join(", "),
                tidalscope_train::finetune::PATH_AVERAGE
            ),
        }
    )?;
    writeln!(r, "* seed {}, total wall time {:.1} min\n", args.seed, total / 60.0)?;
    writeln!(r, "## Results on the independent test set\n")?;
    writeln!(r, "| classifier | training labels | AUC | completeness at 22% contamination | at 10% | average precision | accuracy (score ≥ 0.5) |")?;
    writeln!(r, "|---|---|---|---|---|---|---|")?;
    for t in trials {
        let s = &t.summary;
        writeln!(
            r,
            "| {} | {} | {:.3} | {:.1}% | {:.1}% | {:.3} | {:.3} |",
            if t.mode == Mode::Linear { "linear probe (frozen encoder)" } else { "fine-tuned encoder" },
            if t.labels == 0 { format!("all ({})", t.train_size) } else { t.train_size.to_string() },
            s.auc,
            100.0 * s.completeness_at_22pct_fpr,
            100.0 * s.completeness_at_fpr[1].1,
            s.average_precision,
            s.accuracy
        )?;
    }
    if let Some(d) = draws {
        writeln!(
            r,
            "| linear probe (frozen encoder), mean ± sd over {} label draws | 50 each | {:.3} ± {:.3} | {:.1}% ± {:.1} | | | |",
            d.count,
            d.auc.0,
            d.auc.1,
            100.0 * d.completeness.0,
            100.0 * d.completeness.1
        )?;
        writeln!(
            r,
            "\nOne draw of 50 labels is a sample: the last row fits the probe again on {} draws (seeds {}–{}; the first is the 50-label probe above) and gives the mean and the spread to expect.",
            d.count,
            args.seed,
            args.seed + d.count as u64 - 1
        )?;
    }
    writeln!(
        r,
        "\nThe reference (Desmons et al. 2023, real HSC data) reports 96% completeness at 22% contamination.\n"
    )?;
    writeln!(r, "## Similarity search from one galaxy\n")?;
    writeln!(
        r,
        "Each of the {} tidal galaxies of the test set was a query: among its {} nearest neighbours in the encoder's representation (cosine similarity, no labels used; `embed-test/`), **{:.1}%** are tidal, against {:.1}% for neighbours drawn at random. The first query and its neighbours (`search-example/`; the PCA of the representations, coloured by label: `embed-test/projection.png`):\n\n![search](search-example/mosaic.png)\n",
        search.queries,
        search.k,
        100.0 * search.precision,
        100.0 * search.base_rate
    )?;
    writeln!(r, "## Wall time\n")?;
    writeln!(r, "| stage | seconds |")?;
    writeln!(r, "|---|---|")?;
    for (name, s) in timings {
        writeln!(r, "| {name} | {s:.1} |")?;
    }
    writeln!(r, "\n## Plots\n")?;
    writeln!(r, "Simulated cutouts (first 24 of the training set):\n\n![preview](train/preview.png)\n")?;
    writeln!(r, "Pretraining:\n\n![pretraining](encoder/loss.png)\n")?;
    if draws.is_some() {
        writeln!(
            r,
            "The 50-label probe over label draws (each draw's numbers in `probe_draws.csv`):\n\n![draws](probe_draws.png)\n"
        )?;
    }
    for t in trials {
        writeln!(
            r,
            "### {}\n\n![roc](eval-{}/ROC_curve.png) ![loss](classifier-{}/loss.png)\n",
            t.name, t.name, t.name
        )?;
    }
    writeln!(r, "Each folder holds its `run.toml`/`config.toml` (settings, seed, version, commit) and `log.txt`.")?;
    tidalscope_io::atomic::write(&out.join("report.md"), r.as_bytes())?;
    Ok(())
}

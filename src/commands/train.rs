//! `pretrain`, `finetune` and `evaluate`.

use crate::cli::{DataArgs, EvaluateArgs, FinetuneArgs, PresetArg, PretrainArgs, PretrainOverrides, SplitArg};
use crate::manifest::Manifest;
use crate::progress::BarReporter;
use anyhow::{bail, ensure, Context};
use std::path::{Path, PathBuf};
use tidalscope_io::source::Source;
use tidalscope_model::bundle::ClassifierBundle;
use tidalscope_train::config::{FinetuneConfig, Mode, PretrainConfig, SplitSpec};
use tidalscope_train::evaluate::{self, LabelsFrom};
use tidalscope_train::labelled::SplitRecord;

/// Opened data sources with their paths.
pub struct OpenedData {
    /// The sources: `--unlabelled` (label 0) and `--tidal` (label 1) first
    /// when given, then every `--data`.
    pub sources: Vec<Box<dyn Source>>,
    /// Their paths.
    pub paths: Vec<PathBuf>,
    /// True for the reference layout (`--unlabelled`/`--tidal`).
    pub reference: bool,
}

/// Opens the data a command line names.
pub fn open_data(args: &DataArgs) -> anyhow::Result<OpenedData> {
    let mut sources = Vec::new();
    let mut paths = Vec::new();
    let reference = args.unlabelled.is_some();
    if let (Some(u), Some(t)) = (&args.unlabelled, &args.tidal) {
        sources.push(super::open_source(u, &args.source, Some(0))?);
        paths.push(u.clone());
        sources.push(super::open_source(t, &args.source, Some(1))?);
        paths.push(t.clone());
    }
    for d in &args.data {
        sources.push(super::open_source(d, &args.source, None)?);
        paths.push(d.clone());
    }
    if let Some(file) = &args.label_file {
        let labels = crate::label::log::read_label_file(file)?;
        let known: usize = labels.values().filter(|l| l.is_some()).count();
        ensure!(known > 0, "{}: no tidal or not-tidal label", file.display());
        sources = sources.into_iter().map(|s| tidalscope_io::source::with_labels(s, labels.clone())).collect();
        eprintln!("labels from {}: {known} tidal or not tidal", file.display());
    }
    Ok(OpenedData { sources, paths, reference })
}

fn refs(sources: &[Box<dyn Source>]) -> Vec<&dyn Source> {
    sources.iter().map(|s| s.as_ref()).collect()
}

/// The pretraining an experiment or the demo runs: `preset` with their
/// epochs, seed and `overrides` (range-checked).
pub(crate) fn pretrain_config(
    preset: PretrainConfig,
    overrides: &PretrainOverrides,
    epochs: usize,
    seed: u64,
) -> anyhow::Result<PretrainConfig> {
    let mut cfg = PretrainConfig { epochs, seed, ..preset };
    if let Some(k) = overrides.local_views {
        cfg.set_local_views(k);
    }
    if let Some(w) = overrides.decorrelation {
        cfg.decorrelation = decorrelation_weight(w)?;
    }
    if let Some(lr) = overrides.pretrain_lr {
        cfg.lr = learning_rate("--pretrain-lr", lr)?;
    }
    if let Some(c) = overrides.channels {
        cfg.channels = c.into();
    }
    if let Some(c) = overrides.centring {
        cfg.centring = c.into();
    }
    if let Some(n) = overrides.crowd {
        cfg.crowd = crowd_factor(n)?;
    }
    if let Some(a) = overrides.sky_jitter {
        cfg.jitter.sky = sky_jitter_amplitude(a)?;
    }
    Ok(cfg)
}

/// A `--crowd` factor, refused unless in [0, 100] (`pretrain`, the
/// experiments that pretrain, and `convert`).
pub(crate) fn crowd_factor(n: f64) -> anyhow::Result<f64> {
    tidalscope_data::crowd::check_factor(n).map_err(|e| anyhow::anyhow!("--crowd {e}, got {n}"))?;
    Ok(n)
}

/// A `--sky-jitter` amplitude, refused unless in [0, 10] (`pretrain` and
/// the experiments that pretrain).
pub(crate) fn sky_jitter_amplitude(a: f64) -> anyhow::Result<f64> {
    ensure!((0.0..=10.0).contains(&a), "--sky-jitter {a}: give an amplitude in units of 3σ_b from 0 to 10");
    Ok(a)
}

/// A `--decorrelation` weight, refused unless finite and not negative
/// (`pretrain` and the experiments that pretrain).
pub(crate) fn decorrelation_weight(w: f64) -> anyhow::Result<f64> {
    ensure!(w.is_finite() && w >= 0.0, "--decorrelation {w}: give a weight of 0 or more");
    Ok(w)
}

/// A learning rate given as `flag`, refused unless finite and above 0:
/// every learning-rate option calls it.
pub(crate) fn learning_rate(flag: &str, lr: f64) -> anyhow::Result<f64> {
    ensure!(lr.is_finite() && lr > 0.0, "{flag} {lr}: give a learning rate above 0");
    Ok(lr)
}

/// Runs `pretrain`.
pub fn pretrain(args: PretrainArgs) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let cfg = if args.resume {
        // Settings come from the run's config.toml: refuse any that would be ignored.
        let given: Vec<&str> = [
            ("--epochs", args.epochs.is_some()),
            ("--batch", args.batch.is_some()),
            ("--lr", args.lr.is_some()),
            ("--lr-schedule", args.lr_schedule.is_some()),
            ("--queue-size", args.queue_size.is_some()),
            ("--temperature", args.temperature.is_some()),
            ("--decorrelation", args.decorrelation.is_some()),
            ("--average-epochs", args.average_epochs.is_some()),
            ("--crowd", args.crowd.is_some()),
            ("--width", args.width.is_some()),
            ("--bin", args.bin.is_some()),
            ("--crop", args.crop.is_some()),
            ("--channels", args.channels.is_some()),
            ("--centring", args.centring.is_some()),
            ("--noise", args.noise.is_some()),
            ("--init", args.init.is_some()),
            ("--sigma", args.sigma.is_some()),
            ("--jitter", args.jitter.is_some()),
            ("--core-mask", args.core_mask.is_some()),
            ("--blur", args.blur.is_some()),
            ("--neighbour-mask", args.neighbour_mask.is_some()),
            ("--zoom", args.zoom.is_some()),
            ("--sky-jitter", args.sky_jitter.is_some()),
            ("--local-views", args.local_views.is_some()),
            ("--local-crop", args.local_crop.is_some()),
            ("--kernels", args.kernels.is_some()),
            ("--max-images", args.max_images.is_some()),
            ("--checkpoint-every", args.checkpoint_every.is_some()),
            ("--preset", args.preset != PresetArg::Paper),
            ("--seed", args.seed != 1),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        ensure!(
            given.is_empty(),
            "--resume continues with the settings in {}; it would ignore {}",
            args.out.join("config.toml").display(),
            given.join(", ")
        );
        let text = std::fs::read_to_string(args.out.join("config.toml"))
            .with_context(|| format!("--resume: reading {}", args.out.join("config.toml").display()))?;
        let mut c: PretrainConfig =
            toml::from_str(&text).with_context(|| format!("{}", args.out.join("config.toml").display()))?;
        c.stop_after = args.stop_after;
        c
    } else {
        let mut c = args.preset.config();
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = args.$f { c.$f = v; } )* };
        }
        set!(epochs, batch, queue_size, width, bin, crop, max_images, checkpoint_every, average_epochs, crowd);
        if let Some(lr) = args.lr {
            c.lr = learning_rate("--lr", lr)?;
        }
        // Typed options map onto the config's own types.
        macro_rules! set_into {
            ($($f:ident),*) => { $( if let Some(v) = args.$f { c.$f = v.into(); } )* };
        }
        set_into!(noise, init, sigma, jitter, kernels, lr_schedule, channels, centring);
        if let Some(t) = args.temperature {
            ensure!(t.is_finite() && t > 0.0, "--temperature {t}: give a positive τ");
            c.temperature = t;
        }
        if let Some(w) = args.decorrelation {
            c.decorrelation = decorrelation_weight(w)?;
        }
        if let Some(m) = args.core_mask {
            ensure!((0.0..=1.0).contains(&m), "--core-mask {m}: give a fraction of the crop from 0 to 1");
            c.jitter.core_mask = m;
        }
        if let Some(b) = args.blur {
            let most = c.crop as f64 / 4.0;
            ensure!(
                (0.0..=most).contains(&b),
                "--blur {b}: give a Gaussian σ in view pixels from 0 to {most} (a quarter of the {}-px view)",
                c.crop
            );
            c.jitter.blur = b;
        }
        if let Some(p) = args.neighbour_mask {
            ensure!((0.0..=1.0).contains(&p), "--neighbour-mask {p}: give a probability from 0 to 1");
            c.jitter.neighbours = p;
        }
        if let Some(z) = args.zoom {
            ensure!((0.0..=1.0).contains(&z), "--zoom {z}: give Z from 0 to 1 (scales 1/(1+Z) to 1+Z)");
            c.jitter.zoom = z;
        }
        if let Some(a) = args.sky_jitter {
            c.jitter.sky = sky_jitter_amplitude(a)?;
        }
        // Re-set after --crop, so that a preset's local views follow it.
        c.set_local_views(args.local_views.unwrap_or(c.local_views));
        if let Some(p) = args.local_crop {
            c.local_crop = p; // with no local views, refused just below
        }
        ensure!(
            args.local_crop.is_some() || c.local_views == 0 || c.crop / 2 >= 8,
            "--crop {}: {} local views of half the view would be {} px, under the 8-px minimum; \
             give --local-views 0{} or a --crop of 16 or more",
            c.crop,
            c.local_views,
            c.crop / 2,
            if c.crop > 8 { format!(", a --local-crop from 8 to {}", c.crop - 1) } else { String::new() }
        );
        ensure!(
            args.local_crop.is_none() || c.local_views > 0,
            "--local-crop sets the size of local views: it needs --local-views 1 or more"
        );
        c.seed = args.seed;
        c.stop_after = args.stop_after;
        c
    };
    ensure!(args.data.label_file.is_none(), "--label-file: pretraining uses no labels");
    ensure!(
        cfg.batch >= 2 && cfg.epochs >= 1 && cfg.bin >= 1 && cfg.crop >= 8,
        "--batch ≥ 2, --epochs ≥ 1, --bin ≥ 1 and --crop ≥ 8 are needed"
    );
    crowd_factor(cfg.crowd)?;
    ensure!(
        cfg.average_epochs <= cfg.epochs,
        "--average-epochs {}: give at most the run's {} epochs",
        cfg.average_epochs,
        cfg.epochs
    );
    ensure!(
        !args.data.data.is_empty() || args.data.unlabelled.is_some(),
        "give training data with --data or --unlabelled/--tidal"
    );
    let OpenedData { sources, paths, .. } = open_data(&args.data)?;
    let device = args.device.device()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let reporter = BarReporter::new(Some(&args.out));
    let t0 = std::time::Instant::now();
    let summary =
        tidalscope_train::pretrain::pretrain(&cfg, &refs(&sources), &args.out, &device, args.resume, &reporter)?;
    #[derive(serde::Serialize)]
    struct Resolved<'a> {
        data: Vec<String>,
        device: String,
        resumed: bool,
        pretrain: &'a PretrainConfig,
    }
    let resolved = Resolved {
        data: paths.iter().map(|p| p.display().to_string()).collect(),
        device: args.device.kind.to_string(),
        resumed: args.resume,
        pretrain: &cfg,
    };
    Manifest::new("pretrain", resolved, started, t0.elapsed().as_secs_f64()).write(&args.out)?;
    println!(
        "pretrained {} steps{} in {:.1} s ({:.1} views/s), final loss {:.3} → {}",
        summary.steps,
        if summary.interrupted { " (stopped early; continue with --resume)" } else { "" },
        summary.seconds,
        summary.views_per_s,
        summary.final_loss,
        args.out.display()
    );
    Ok(())
}

fn parse_sizes(s: &str) -> anyhow::Result<(usize, usize, usize)> {
    let parts: Vec<usize> = s
        .split('/')
        .map(|p| p.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--split-sizes {s:?}: expected TRAIN/VAL/TEST, e.g. 300/30/50"))?;
    match parts.as_slice() {
        [a, b, c] => Ok((*a, *b, *c)),
        _ => bail!("--split-sizes {s:?}: expected TRAIN/VAL/TEST, e.g. 300/30/50"),
    }
}

/// The weight interpolation of fine-tuning given as `flag` (`value`), or
/// the default; `finetunes` says whether a fine-tuning will read it, and
/// `needs` how to ask for one.
pub(crate) fn interpolation(flag: &str, value: Option<f64>, finetunes: bool, needs: &str) -> anyhow::Result<f64> {
    match value {
        Some(v) => {
            ensure!(finetunes, "{flag} mixes pretrained and fine-tuned weights: {needs}");
            FinetuneConfig::check_interpolation(v).map_err(|e| anyhow::anyhow!("{flag} {v}: {e}"))?;
            Ok(v)
        }
        None if finetunes => Ok(FinetuneConfig::INTERPOLATION),
        None => Ok(1.0),
    }
}

/// Runs `finetune`.
pub fn finetune(args: FinetuneArgs) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let mode: Mode = args.mode.into();
    ensure!(
        mode != Mode::Linear || args.lr_schedule.is_none(),
        "--lr-schedule sets the steps of fine-tuning and scratch; the linear probe is fitted, not stepped"
    );
    ensure!(
        !args.data.data.is_empty() || args.data.unlabelled.is_some(),
        "give labelled data with --data or --unlabelled/--tidal"
    );
    let OpenedData { sources, paths, reference } = open_data(&args.data)?;
    ensure!(!reference || args.data.data.is_empty(), "use either --unlabelled/--tidal or --data, not both");
    let split = if reference {
        let (train, val, test) = parse_sizes(&args.split_sizes)?;
        SplitSpec::Reference { train, val, test }
    } else {
        SplitSpec::Stratified { val: args.val_fraction, test: args.test_fraction }
    };
    if let Some(k) = args.cv_folds {
        FinetuneConfig::check_cv_folds(k, mode).map_err(|e| anyhow::anyhow!("--cv-folds {k}: {e}"))?;
    }
    let cfg = FinetuneConfig {
        mode,
        epochs: args.epochs,
        min_steps: args.min_steps,
        batch: args.batch,
        lr: match args.lr {
            Some(lr) => learning_rate("--lr", lr)?,
            None => FinetuneConfig::default_lr(mode),
        },
        lr_schedule: crate::cli::lr_schedule(args.lr_schedule, mode),
        labels: args.labels,
        split,
        noise: args.noise.into(),
        jitter: crate::cli::finetune_jitter(args.jitter),
        kernels: args.kernels.into(),
        seed: args.seed,
        probe_variance: args.probe_variance,
        interpolation: interpolation(
            "--interpolation",
            args.interpolation,
            mode == Mode::Finetune,
            "use --mode finetune",
        )?,
        distill: args.distill,
        cv_folds: args.cv_folds,
        path_average: crate::cli::Switch::resolve(args.path_average),
        batchnorm_images: args.batchnorm_images,
        ..FinetuneConfig::for_mode(mode)
    };
    cfg.check_path_average().map_err(|e| match cfg.cv_folds {
        Some(k) if k > 0 => anyhow::anyhow!("--path-average on with --cv-folds {k}: {e}"),
        _ => anyhow::anyhow!("--path-average on: {e}"),
    })?;
    ensure!(
        mode != Mode::Linear || args.batchnorm_images.is_none(),
        "--batchnorm-images measures the statistics of a trained encoder: the linear probe trains none (use --mode finetune or scratch)"
    );
    ensure!(
        args.distill == 0 || mode == Mode::Finetune,
        "--distill trains fine-tuning on unlabelled images: use --mode finetune"
    );
    ensure!(cfg.epochs >= 1 && cfg.batch >= 1, "--epochs and --batch must be at least 1");
    let device = args.device.device()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let reporter = BarReporter::new(Some(&args.out));
    let t0 = std::time::Instant::now();
    let s = tidalscope_train::finetune::finetune(
        &cfg,
        &args.encoder,
        &refs(&sources),
        &paths,
        &args.out,
        &device,
        &reporter,
    )?;
    #[derive(serde::Serialize)]
    struct Resolved<'a> {
        encoder: String,
        data: Vec<String>,
        device: String,
        finetune: &'a FinetuneConfig,
    }
    let resolved = Resolved {
        encoder: args.encoder.display().to_string(),
        data: paths.iter().map(|p| p.display().to_string()).collect(),
        device: args.device.kind.to_string(),
        finetune: &cfg,
    };
    Manifest::new("finetune", resolved, started, t0.elapsed().as_secs_f64()).write(&args.out)?;
    let kept = match s.kept_val_loss {
        Some(v) => {
            let mut how = Vec::new();
            if let Some(n) = s.path_points {
                how.push(format!("the mean of the weights at {n} points along fine-tuning"));
            }
            if s.batchnorm_images > 0 {
                how.push("BatchNorm statistics measured afresh".to_string());
            }
            if cfg.interpolation < 1.0 {
                how.push(format!("{} of the way from the pretrained weights", cfg.interpolation));
            }
            format!(" (as trained); kept ({}): validation loss {v:.3}", how.join(", "))
        }
        None => String::new(),
    };
    let stopped = match &s.cv {
        Some(cv) => format!(
            "; {} of its schedule, chosen by {}-fold cross-validation on the training labels (see log.txt)",
            tidalscope_train::finetune::stop_in_words(tidalscope_train::finetune::STOPS[cv.chosen]),
            cv.folds
        ),
        None => String::new(),
    };
    println!(
        "trained the classifier ({}) on {} objects ({} validation, {} test held out) in {:.1} s{stopped}: final train loss {:.3}, validation loss {:.3}{kept} → {}",
        format!("{mode:?}").to_lowercase(),
        s.sizes.0,
        s.sizes.1,
        s.sizes.2,
        s.seconds,
        s.train_loss.last().copied().unwrap_or(f32::NAN),
        s.val_loss.last().copied().unwrap_or(f32::NAN),
        args.out.display()
    );
    Ok(())
}

/// Scores `split` of a classifier's data (or all of `--data`) into `out`;
/// returns what was scored, with the summary when both classes are present.
pub fn evaluate_into(
    model: &Path,
    data: &DataArgs,
    split: SplitArg,
    out: &Path,
    threshold: f64,
    device: &burn::prelude::Device,
    reporter: &BarReporter,
) -> anyhow::Result<evaluate::Evaluated> {
    let bundle = ClassifierBundle::load(model, device)?;
    let record_path = model.join("split.json");
    let (sources, _paths, selection) = if split == SplitArg::All {
        ensure!(!data.data.is_empty() || data.unlabelled.is_some(), "--split all needs --data");
        let OpenedData { sources, paths, .. } = open_data(data)?;
        let sel = tidalscope_data::split::ObjectRef::every(sources.iter().map(|s| s.info().len));
        (sources, paths, sel)
    } else {
        let record = SplitRecord::load(&record_path)
            .with_context(|| format!("{} has no split to evaluate (use --split all with --data)", model.display()))?;
        let (sources, paths) = if data.data.is_empty() && data.unlabelled.is_none() {
            let mut sources = Vec::new();
            let reference = matches!(record.spec, SplitSpec::Reference { .. });
            for (i, p) in record.sources.iter().enumerate() {
                let label = if reference { Some(i as u8) } else { None };
                // The paths are as training was given them, so a relative
                // one may not resolve from here: say where it came from.
                let hint =
                    if p.is_relative() { "run from where it was trained, or give --data" } else { "give --data" };
                sources.push(super::open_source(p, &data.source, label).with_context(|| {
                    format!("the classifier's data as {} records it; {hint}", record_path.display())
                })?);
            }
            (sources, record.sources.clone())
        } else {
            let o = open_data(data)?;
            (o.sources, o.paths)
        };
        record.check(&refs(&sources))?;
        let sel = match split {
            SplitArg::Test => record.splits.test.clone(),
            SplitArg::Val => record.splits.val.clone(),
            SplitArg::Train => record.splits.train.clone(),
            SplitArg::All => unreachable!("handled above"),
        };
        (sources, paths, sel)
    };
    let labels = if split == SplitArg::All { LabelsFrom::Sources } else { LabelsFrom::Selection };
    let title = format!("ROC: {} ({} split)", model.display(), format!("{split:?}").to_lowercase());
    Ok(evaluate::evaluate(&bundle, &refs(&sources), &selection, labels, out, threshold, &title, device, reporter)?)
}

/// Runs `evaluate`.
pub fn evaluate(args: EvaluateArgs) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let t0 = std::time::Instant::now();
    let device = args.device.device()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let reporter = BarReporter::new(Some(&args.out));
    let evaluate::Evaluated { summary, scored, failed, flagged, constant } =
        evaluate_into(&args.model, &args.data, args.split, &args.out, args.threshold, &device, &reporter)?;
    #[derive(serde::Serialize)]
    struct Resolved {
        model: String,
        split: String,
        threshold: f64,
        data: Vec<String>,
        /// Objects scored, those that could not be (errors.csv), those
        /// scored with non-finite pixels and those with a band of one value.
        scored: usize,
        failed: usize,
        flagged: usize,
        constant_band: usize,
    }
    let resolved = Resolved {
        model: args.model.display().to_string(),
        split: format!("{:?}", args.split).to_lowercase(),
        threshold: args.threshold,
        data: args.data.data.iter().map(|p| p.display().to_string()).collect(),
        scored,
        failed,
        flagged,
        constant_band: constant,
    };
    Manifest::new("evaluate", resolved, started, t0.elapsed().as_secs_f64()).write(&args.out)?;
    match summary {
        Some(s) => println!(
            "AUC {:.3}; completeness {:.1}% at 22% contamination (5%: {:.1}%, 10%: {:.1}%, 20%: {:.1}%); {} objects, {} tidal → {}{}",
            s.auc,
            100.0 * s.completeness_at_22pct_fpr,
            100.0 * s.completeness_at_fpr[0].1,
            100.0 * s.completeness_at_fpr[1].1,
            100.0 * s.completeness_at_fpr[2].1,
            s.n,
            s.positives,
            args.out.display(),
            super::flagged_note(flagged, constant)
        ),
        None => println!(
            "scored {scored} objects → {} (no ROC: both classes are needed){}",
            args.out.join("scores.csv").display(),
            super::flagged_note(flagged, constant)
        ),
    }
    super::partial_failure(failed, scored + failed, &args.out.join("errors.csv"))
}

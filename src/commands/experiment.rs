//! `tidalscope experiment labels` and `experiment recovery`: the science
//! questions of the reference paper, one command each, with a report.
//!
//! * **labels** — how performance grows with the number of labels, for the
//!   NNCLR encoder (linear probe and fine-tuning), the same architecture
//!   trained supervised from scratch, and a classical baseline (logistic
//!   regression on non-parametric morphology), over several seeds.
//! * **recovery** — injection–recovery on simulated data with known truth:
//!   completeness by feature surface brightness, feature type and host
//!   magnitude; false positives by kind of negative; per survey preset.

use crate::cli::{ExperimentLabelsArgs, ExperimentRecoveryArgs, MethodArg, PretrainOverrides, SourceArgs, SurveyArg};
use crate::manifest::Manifest;
use crate::progress::BarReporter;
use anyhow::{ensure, Context};
use burn::prelude::Device;
use rayon::prelude::*;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tidalscope_core::Cutout;
use tidalscope_data::preprocess::Preprocess;
use tidalscope_data::split::ObjectRef;
use tidalscope_eval::metrics::Summary;
use tidalscope_eval::plot::{line_plot, Axes, Series, PALETTE};
use tidalscope_eval::recovery::{binned, by_category, edges, threshold_at_fpr, Bin};
use tidalscope_eval::whiten::Whitening;
use tidalscope_io::source::Source;
use tidalscope_model::bundle::{ClassifierBundle, EncoderBundle};
use tidalscope_model::infer::{head_logits, Layer, Predictor};
use tidalscope_sim::FEATURE_CONTRAST;
use tidalscope_train::config::{Centring, Channels, FinetuneConfig, LrSchedule, Mode, PretrainConfig, SplitSpec};
use tidalscope_train::representation;

/// Refuses pretraining overrides beside a model that is already trained
/// (`given`: the option giving it and what it is, e.g. "--model is
/// already trained").
fn no_overrides_with(o: &PretrainOverrides, given: &str) -> anyhow::Result<()> {
    ensure!(
        !o.any(),
        "--local-views, --decorrelation, --pretrain-lr, --channels, --centring, --crowd and --sky-jitter set the pretraining; {given}"
    );
    Ok(())
}

fn pretrain(train: &Path, out: &Path, cfg: &PretrainConfig, device: &Device) -> anyhow::Result<()> {
    let src = super::open_source(train, &SourceArgs::auto(), None)?;
    std::fs::create_dir_all(out)?;
    let s =
        tidalscope_train::pretrain::pretrain(cfg, &[src.as_ref()], out, device, false, &BarReporter::new(Some(out)))?;
    eprintln!("pretrained {} steps, final loss {:.3}", s.steps, s.final_loss);
    Ok(())
}

/// A labelled evaluation set held in memory: raw images, labels and the
/// catalogue metadata of every object.
struct EvalSet {
    /// The source it was read from (for the model's band-order check).
    info: tidalscope_io::source::SourceInfo,
    raw: Vec<Cutout>,
    labels: Vec<u8>,
    columns: Vec<String>,
    meta: Vec<Vec<String>>,
}

fn load_set(path: &Path) -> anyhow::Result<EvalSet> {
    let src = super::open_source(path, &SourceArgs::auto(), None)?;
    let columns = src.info().meta_columns.clone();
    let info = src.info().clone();
    let mut set = EvalSet { info, raw: Vec::new(), labels: Vec::new(), columns, meta: Vec::new() };
    for rec in src.records(0)? {
        let rec = rec?;
        let label = rec.label.with_context(|| format!("{}: object {} has no label", path.display(), rec.id))?;
        set.raw.push(rec.pixels.load()?);
        set.labels.push(label);
        set.meta.push(rec.meta);
    }
    ensure!(set.labels.contains(&0) && set.labels.contains(&1), "{}: needs both classes", path.display());
    Ok(set)
}

impl EvalSet {
    /// Its images as a model with `preprocess` sees them.
    fn preprocessed(&self, preprocess: &Preprocess) -> anyhow::Result<Vec<Cutout>> {
        // Bands named in another order than the model's reach their inputs.
        let order = preprocess.band_order(&self.info)?;
        let prepare = |c: &Cutout| match &order {
            Some(o) if c.bands() == o.len() => preprocess.apply(&c.reordered(o)),
            _ => preprocess.apply(c),
        };
        Ok(self.raw.par_iter().map(|c| prepare(c).map(|(img, _)| img)).collect::<Result<_, _>>()?)
    }
}

/// Scores of a classifier folder on a set (deterministic inference).
fn score(model: &Path, set: &EvalSet, device: &Device) -> anyhow::Result<Vec<f64>> {
    let b = ClassifierBundle::load(model, device)?;
    let pre = set.preprocessed(&b.preprocess)?;
    let refs: Vec<&Cutout> = pre.iter().collect();
    let predictor = tidalscope_model::infer::Predictor::classifier(&b.classifier, b.preprocess.crop, device);
    Ok(predictor.scores(&refs)?.into_iter().map(f64::from).collect())
}

/// The g+r+i image (or all bands, when fewer) that morphology is measured on.
fn detection_image(c: &Cutout) -> Vec<f32> {
    let n = c.bands().min(3);
    let mut img = c.band(0).to_vec();
    for b in 1..n {
        img.iter_mut().zip(c.band(b)).for_each(|(a, v)| *a += v);
    }
    img
}

fn morphology(images: &[&Cutout]) -> Vec<f64> {
    images
        .par_iter()
        .flat_map_iter(|c| tidalscope_eval::morphology::features(&detection_image(c), c.width(), c.height()))
        .collect()
}

struct LabelsResult {
    method: MethodArg,
    labels: usize,
    /// The draw: every method given this seed trains on the same labels.
    seed: u64,
    auc: f64,
    completeness_22: f64,
    completeness_10: f64,
    average_precision: f64,
    seconds: f64,
}

/// Frozen-encoder features (the representation, or the pooled backbone) of
/// the test set and of every training object a label draw picks, each
/// computed once, when first drawn: the encoder does not change between
/// draws, so the many probe fits of the experiment share one pass over
/// each image.
struct FrozenFeatures {
    /// The frozen encoder, ready for inference.
    predictor: Predictor,
    /// What the encoder expects of raw images.
    preprocess: Preprocess,
    /// The layer read.
    layer: Layer,
    /// The whitened input the probe may choose (the representation only).
    whitening: Option<Whitening>,
    /// Features per image.
    dim: usize,
    /// Feature row of each training object computed so far, by record index.
    rows: HashMap<usize, usize>,
    /// Those rows, `[rows, dim]` row-major.
    train: Vec<f32>,
    /// The test set's features, `[objects, dim]` row-major.
    test: Vec<f32>,
}

/// How many training images are held in memory at once while their
/// features are computed.
const FEATURE_PART: usize = 4096;

impl FrozenFeatures {
    /// The test set's features of `layer`; the probe on the representation
    /// also tries the whitened leading components holding `probe_variance`
    /// of its variance (the encoder folder's spectrum; 0: none).
    fn new(encoder: &Path, layer: Layer, probe_variance: f64, test: &EvalSet, device: &Device) -> anyhow::Result<Self> {
        let b = EncoderBundle::load(encoder, device)?;
        let whitening = match layer {
            Layer::Representation if probe_variance > 0.0 => {
                let spectrum = representation::load(encoder, b.config.repr_dim)?.with_context(|| {
                    format!("{}: no {} to whiten the probe's input with", encoder.display(), representation::FILE)
                })?;
                Some(spectrum.whitening(probe_variance).with_context(|| format!("--probe-variance {probe_variance}"))?)
            }
            _ => None,
        };
        let predictor = Predictor::encoder(&b.encoder, b.preprocess.crop, device);
        let pre = test.preprocessed(&b.preprocess)?;
        let test = predictor.features(&pre.iter().collect::<Vec<_>>(), layer)?;
        let dim = test.len() / pre.len().max(1);
        Ok(Self {
            predictor,
            preprocess: b.preprocess,
            layer,
            whitening,
            dim,
            rows: HashMap::new(),
            train: Vec::new(),
            test,
        })
    }

    /// Test-set scores of the linear probe fitted on `objects` of `train`
    /// (as `finetune --mode linear` fits it: the same features, folds and
    /// inputs).
    fn probe(&mut self, train: &dyn Source, objects: &[ObjectRef], seed: u64) -> anyhow::Result<Vec<f64>> {
        let mut missing: Vec<ObjectRef> =
            objects.iter().filter(|o| !self.rows.contains_key(&o.index)).copied().collect();
        missing.sort_unstable_by_key(|o| o.index);
        missing.dedup_by_key(|o| o.index);
        for part in missing.chunks(FEATURE_PART) {
            let loaded = tidalscope_train::labelled::load(&[train], part, &self.preprocess)?;
            let images: Vec<&Cutout> = part.iter().map(|o| &loaded[o].image).collect();
            self.train.extend(self.predictor.features(&images, self.layer)?);
            for o in part {
                self.rows.insert(o.index, self.rows.len());
            }
        }
        let d = self.dim;
        let mut x = Vec::with_capacity(objects.len() * d);
        for o in objects {
            let row = self.rows[&o.index];
            x.extend_from_slice(&self.train[row * d..(row + 1) * d]);
        }
        let y: Vec<f32> = objects.iter().map(|o| o.label as f32).collect();
        let p = tidalscope_train::finetune::linear_probe(&x, d, &y, seed, self.whitening.as_ref());
        Ok(head_logits(&self.test, &p.weights, p.bias)
            .into_iter()
            .map(|l| 1.0 / (1.0 + (-f64::from(l)).exp()))
            .collect())
    }
}

/// Morphology measures of every training object a label draw picks, each
/// measured once, when first drawn.
#[derive(Default)]
struct MorphologyFeatures {
    /// Feature row of each object measured so far, by record index.
    rows: HashMap<usize, usize>,
    /// Those rows, `[rows, FEATURE_NAMES.len()]` row-major.
    x: Vec<f64>,
}

impl MorphologyFeatures {
    /// The measures of `objects` of `train`, row by row.
    fn of(&mut self, train: &dyn Source, objects: &[ObjectRef]) -> anyhow::Result<Vec<f64>> {
        let mut missing: Vec<usize> = objects.iter().map(|o| o.index).filter(|i| !self.rows.contains_key(i)).collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let wanted: HashMap<usize, usize> = missing.iter().enumerate().map(|(k, &i)| (i, k)).collect();
            let mut images: Vec<Option<Cutout>> = vec![None; missing.len()];
            for rec in train.records(0)? {
                let rec = rec?;
                if let Some(&k) = wanted.get(&rec.index) {
                    images[k] = Some(rec.pixels.load()?);
                }
            }
            let images: Vec<Cutout> = images
                .into_iter()
                .map(|c| c.context("object missing from the training set"))
                .collect::<anyhow::Result<_>>()?;
            self.x.extend(morphology(&images.iter().collect::<Vec<_>>()));
            for index in missing {
                self.rows.insert(index, self.rows.len());
            }
        }
        let d = tidalscope_eval::morphology::FEATURE_NAMES.len();
        Ok(objects.iter().flat_map(|o| self.x[self.rows[&o.index] * d..][..d].iter().copied()).collect())
    }
}

/// How a label draw splits the training set: the seed's 10% of the pool
/// only feeds the networks' validation logs; every method trains on the
/// same draw from the rest.
const DRAW_SPLIT: SplitSpec = SplitSpec::Stratified { val: 0.1, test: 0.0 };

/// Draw `seed` of `n` balanced training labels, the one every method of
/// `experiment labels` (and the demo's probe over draws) trains on.
fn label_draw(train: &dyn Source, n: usize, seed: u64) -> anyhow::Result<Vec<ObjectRef>> {
    Ok(tidalscope_train::labelled::make_split(&[train], &DRAW_SPLIT, n, seed)?.train)
}

/// The linear probe on `labels` balanced labels of `train_dir`, fitted
/// once per seed of `seeds` (each its own draw, as `experiment labels`
/// draws them) and scored on `test_dir`: one summary per draw. For `demo`,
/// whose one draw of 50 moves by several hundredths from draw to draw.
pub(crate) fn probe_draws(
    encoder: &Path,
    train_dir: &Path,
    test_dir: &Path,
    labels: usize,
    seeds: std::ops::Range<u64>,
    device: &Device,
) -> anyhow::Result<Vec<Summary>> {
    let test = load_set(test_dir)?;
    let train = super::open_source(train_dir, &SourceArgs::auto(), None)?;
    let mut features =
        FrozenFeatures::new(encoder, Layer::Representation, FinetuneConfig::PROBE_VARIANCE, &test, device)?;
    seeds
        .map(|seed| {
            let draw = label_draw(train.as_ref(), labels, seed)?;
            let scores = features.probe(train.as_ref(), &draw, seed)?;
            Ok(Summary::compute(&scores, &test.labels, 0.5)?.0)
        })
        .collect()
}

/// An encoder folder with the spectrum the probe whitens with
/// (`representation.json`): `encoder` itself when it has one (`pretrain`
/// writes it), else a copy in `out/encoder` with the spectrum measured on
/// the training set's images, so the many probe runs do not each measure it.
fn with_spectrum(encoder: &Path, train: &dyn Source, out: &Path, device: &Device) -> anyhow::Result<PathBuf> {
    let b = EncoderBundle::load(encoder, device)?;
    if representation::load(encoder, b.config.repr_dim)?.is_some() {
        return Ok(encoder.to_path_buf());
    }
    let t = std::time::Instant::now();
    let dest = out.join("encoder");
    let same = dest.canonicalize().ok() == encoder.canonicalize().ok();
    if !same {
        std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
        for f in EncoderBundle::FILES {
            let bytes =
                std::fs::read(encoder.join(f)).with_context(|| format!("reading {}", encoder.join(f).display()))?;
            tidalscope_io::atomic::write(&dest.join(f), &bytes)?;
        }
    }
    let objects = ObjectRef::every([train.info().len]);
    let spectrum = representation::measure(&b.encoder, &b.preprocess, &[train], &objects, device)?;
    representation::save(&dest, &spectrum)?;
    eprintln!(
        "== {} has no {}: measured on {} training images ({:.1} s){}",
        encoder.display(),
        representation::FILE,
        spectrum.objects,
        t.elapsed().as_secs_f64(),
        if same { String::new() } else { format!("; the probes use the copy in {}", dest.display()) }
    );
    Ok(dest)
}

/// Runs `experiment labels`.
pub fn labels(mut args: ExperimentLabelsArgs) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let t_all = std::time::Instant::now();
    // A method named twice would run twice on each draw and be counted
    // twice in every mean and comparison.
    let mut seen = Vec::new();
    args.methods.retain(|m| {
        !seen.contains(m) && {
            seen.push(*m);
            true
        }
    });
    ensure!(args.data.is_some() == args.test.is_some(), "give both --data and --test, or neither (simulated data)");
    ensure!(
        args.data.is_none() || args.feature_contrast.is_none(),
        "--feature-contrast sets how the simulated mocks are made: give it without --data and --test"
    );
    let feature_contrast = args.feature_contrast.unwrap_or(FEATURE_CONTRAST);
    if args.encoder.is_some() {
        no_overrides_with(&args.pretrain, "--encoder is already pretrained")?;
    }
    FinetuneConfig::check_probe_variance(args.probe_variance)
        .map_err(|e| anyhow::anyhow!("--probe-variance {}: {e}", args.probe_variance))?;
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let device = args.device.device()?;
    let q = args.quick;
    // The CPU protocol: thousands of mocks and thousands of pretraining
    // steps (40 epochs: on the validation split the 50-label probe still
    // rose from 12 to 24 to 40) with a queue (2048) well below the data
    // set; many label draws for the cheap methods, fewer for the ones that
    // train a network.
    let n_train = args.n.unwrap_or(if q { 4000 } else { 8000 });
    let n_test = args.n_test.unwrap_or(if q { 1000 } else { 2000 });
    let seeds = args.seeds.unwrap_or(if q { 5 } else { 20 });
    let trained_seeds = args.trained_seeds.unwrap_or(if q { 1 } else { 3 }).min(seeds);
    // --quick: 8 epochs with local views (4 in the quick preset) cost what
    // 12 without them did, keeping the run within 10 minutes.
    let mut pre_cfg = super::train::pretrain_config(args.preset.config(), &args.pretrain, 0, args.seed)?;
    let quick_epochs = if pre_cfg.local_views > 0 { 8 } else { 12 };
    let pre_epochs = args.pretrain_epochs.unwrap_or(if q { quick_epochs } else { 40 });
    pre_cfg.epochs = pre_epochs;
    let ft_epochs = args.epochs.unwrap_or(if q { 8 } else { 15 });
    // The networks' schedule, for run.toml and the report (fine-tuning and
    // scratch share a default; each run resolves its own below).
    let lr_schedule = crate::cli::lr_schedule(args.lr_schedule, Mode::Finetune);
    let finetunes = args.methods.contains(&MethodArg::Finetune);
    let finetune_lr = match args.finetune_lr {
        Some(lr) => {
            ensure!(finetunes, "--finetune-lr sets fine-tuning's rate: add finetune to --methods");
            super::train::learning_rate("--finetune-lr", lr)?
        }
        None => FinetuneConfig::default_lr(Mode::Finetune),
    };
    let finetune_interpolation = super::train::interpolation(
        "--finetune-interpolation",
        args.finetune_interpolation,
        finetunes,
        "add finetune to --methods",
    )?;
    let scratches = args.methods.contains(&MethodArg::Scratch);
    ensure!(
        finetunes || args.finetune_distill == 0,
        "--finetune-distill gives fine-tuning unlabelled images: add finetune to --methods"
    );
    if let Some(k) = args.finetune_cv_folds {
        ensure!(finetunes, "--finetune-cv-folds chooses how far fine-tuning goes: add finetune to --methods");
        FinetuneConfig::check_cv_folds(k, Mode::Finetune)
            .map_err(|e| anyhow::anyhow!("--finetune-cv-folds {k}: {e}"))?;
    }
    // How each count's fine-tuning ends: the folds and the path average as
    // asked for, resolved per count by the fine-tuning settings' own rules.
    let ending = finetune_ending(&args);
    if args.finetune_path_average.is_some() {
        ensure!(finetunes, "--finetune-path-average is how fine-tuning ends: add finetune to --methods");
    }
    ending.check_path_average().map_err(|e| match ending.cv_folds {
        Some(k) if k > 0 => anyhow::anyhow!("--finetune-path-average on with --finetune-cv-folds {k}: {e}"),
        _ => anyhow::anyhow!("--finetune-path-average on: {e}"),
    })?;
    let (train_dir, test_dir) = match (&args.data, &args.test) {
        (Some(d), Some(t)) => (d.clone(), t.clone()),
        // Neither (both or neither was checked above).
        _ => {
            eprintln!("== simulate {n_train} training and {n_test} test cutouts (HSC-SSP Ultradeep)");
            let mocks = (0.3, feature_contrast);
            super::simulate::mock_set(&out.join("train"), n_train, args.seed, SurveyArg::HscUd, mocks)?;
            super::simulate::mock_set(&out.join("test"), n_test, args.seed + 1_000_003, SurveyArg::HscUd, mocks)?;
            (out.join("train"), out.join("test"))
        }
    };
    let encoder = match &args.encoder {
        Some(e) => e.clone(),
        None => {
            eprintln!("== pretrain ({} preset, {pre_epochs} epochs)", format!("{:?}", args.preset).to_lowercase());
            pretrain(&train_dir, &out.join("encoder"), &pre_cfg, &device)?;
            out.join("encoder")
        }
    };
    let test = load_set(&test_dir)?;
    let train_src = super::open_source(&train_dir, &SourceArgs::auto(), None)?;
    let probes = args.methods.iter().any(|m| matches!(m, MethodArg::Linear | MethodArg::Finetune));
    let encoder = if probes && args.probe_variance > 0.0 {
        with_spectrum(&encoder, train_src.as_ref(), out, &device)?
    } else {
        encoder
    };
    let available = {
        let l = train_src.labels()?;
        let pos = l.iter().filter(|v| **v == Some(1)).count();
        let neg = l.iter().filter(|v| **v == Some(0)).count();
        2 * pos.min(neg)
    };
    ensure!(seeds >= 1, "--seeds must be at least 1");
    let limit = (available as f64 * 0.9) as usize;
    let (counts, dropped): (Vec<usize>, Vec<usize>) = args.labels.iter().copied().partition(|&n| n <= limit);
    if !dropped.is_empty() {
        eprintln!("note: label counts {dropped:?} dropped: the training data offers {available} balanced labels (90%: {limit})");
    }
    ensure!(
        !counts.is_empty(),
        "{}: only {available} balanced labels, fewer than every requested count",
        train_dir.display()
    );
    let test_morph = if args.methods.contains(&MethodArg::Morphology) {
        morphology(&test.raw.iter().collect::<Vec<_>>())
    } else {
        vec![]
    };
    let mut results: Vec<LabelsResult> = Vec::new();
    let mut csv = tidalscope_io::csv::CsvWriter::create(
        &out.join("results.csv"),
        &[
            "method",
            "labels",
            "seed",
            "auc",
            "completeness_at_22pct_fpr",
            "completeness_at_10pct_fpr",
            "average_precision",
            "seconds",
        ]
        .map(String::from),
    )?;
    let runs = out.join("runs");
    // The frozen encoder's features and the morphology measures are
    // computed once per object and shared by every draw.
    let frozen = |layer| FrozenFeatures::new(&encoder, layer, args.probe_variance, &test, &device);
    let mut representation =
        if args.methods.contains(&MethodArg::Linear) { Some(frozen(Layer::Representation)?) } else { None };
    let mut backbone = if args.methods.contains(&MethodArg::Backbone) { Some(frozen(Layer::Pooled)?) } else { None };
    let mut morphology_features = MorphologyFeatures::default();
    for &n in &counts {
        for seed in args.seed..args.seed + seeds as u64 {
            for &m in &args.methods {
                if m.trains_network() && seed >= args.seed + trained_seeds as u64 {
                    continue;
                }
                let t = std::time::Instant::now();
                let draw = || label_draw(train_src.as_ref(), n, seed);
                let scores = match m {
                    MethodArg::Morphology => {
                        let sel = draw()?;
                        let x = morphology_features.of(train_src.as_ref(), &sel)?;
                        let y: Vec<u8> = sel.iter().map(|o| o.label).collect();
                        let model = tidalscope_eval::logistic::Logistic::fit(
                            &x,
                            tidalscope_eval::morphology::FEATURE_NAMES.len(),
                            &y,
                            1.0,
                        );
                        model.predict(&test_morph)
                    }
                    MethodArg::Linear | MethodArg::Backbone => {
                        let f = if m == MethodArg::Linear { &mut representation } else { &mut backbone };
                        let f = f.as_mut().expect("computed when the method is asked for");
                        f.probe(train_src.as_ref(), &draw()?, seed)?
                    }
                    MethodArg::Finetune | MethodArg::Scratch => {
                        let mode = if m == MethodArg::Finetune { Mode::Finetune } else { Mode::Scratch };
                        let dir = runs.join(format!("{}-{n}-seed{seed}", m.name()));
                        let cfg = FinetuneConfig {
                            mode,
                            labels: n,
                            epochs: ft_epochs,
                            min_steps: args.min_steps,
                            split: DRAW_SPLIT,
                            jitter: crate::cli::finetune_jitter(args.finetune_jitter),
                            lr: if mode == Mode::Finetune { finetune_lr } else { FinetuneConfig::default_lr(mode) },
                            lr_schedule: crate::cli::lr_schedule(args.lr_schedule, mode),
                            probe_variance: args.probe_variance,
                            interpolation: if mode == Mode::Finetune { finetune_interpolation } else { 1.0 },
                            distill: if mode == Mode::Finetune { args.finetune_distill } else { 0 },
                            cv_folds: if mode == Mode::Finetune { ending.cv_folds } else { Some(0) },
                            path_average: if mode == Mode::Finetune { ending.path_average } else { Some(false) },
                            batchnorm_images: args.batchnorm_images,
                            seed,
                            ..FinetuneConfig::for_mode(mode)
                        };
                        eprintln!("== {}, {n} labels, seed {seed}", m.name());
                        tidalscope_train::finetune::finetune(
                            &cfg,
                            &encoder,
                            &[train_src.as_ref()],
                            std::slice::from_ref(&train_dir),
                            &dir,
                            &device,
                            &BarReporter::quiet(Some(&dir)),
                        )?;
                        score(&dir, &test, &device)?
                    }
                };
                let (s, _, _) = Summary::compute(&scores, &test.labels, 0.5)?;
                let r = LabelsResult {
                    method: m,
                    labels: n,
                    seed,
                    auc: s.auc,
                    completeness_22: s.completeness_at_22pct_fpr,
                    completeness_10: s
                        .completeness_at_fpr
                        .iter()
                        .find(|(f, _)| (*f - 0.10).abs() < 1e-9)
                        .map_or(f64::NAN, |c| c.1),
                    average_precision: s.average_precision,
                    seconds: t.elapsed().as_secs_f64(),
                };
                eprintln!(
                    "   {:<10} {n:>4} labels seed {seed}: AUC {:.3}, completeness {:.1}% at 22% FPR",
                    m.name(),
                    r.auc,
                    100.0 * r.completeness_22
                );
                csv.row(&[
                    r.method.name().to_string(),
                    n.to_string(),
                    seed.to_string(),
                    format!("{:.4}", r.auc),
                    format!("{:.4}", r.completeness_22),
                    format!("{:.4}", r.completeness_10),
                    format!("{:.4}", r.average_precision),
                    format!("{:.1}", r.seconds),
                ])?;
                results.push(r);
            }
        }
    }
    csv.finish()?;
    let total = t_all.elapsed().as_secs_f64();
    // A set given with --test may be a validation split: the plots name it
    // rather than call it independent.
    let scored = match &args.test {
        Some(t) => format!("on {}", t.file_name().unwrap_or(t.as_os_str()).to_string_lossy()),
        None => "independent test set".to_string(),
    };
    plot_labels(out, &args.methods, &counts, &results, &scored)?;
    let endings = FinetuneEndings::of(&args, &counts);
    write_labels_report(
        out,
        &args,
        (&counts, &endings),
        &dropped,
        (seeds, trained_seeds),
        (lr_schedule, finetune_lr, finetune_interpolation),
        &results,
        total,
        n_train,
        n_test,
    )?;
    #[derive(serde::Serialize)]
    struct Resolved<'a> {
        quick: bool,
        data: String,
        test: String,
        feature_contrast: Option<f64>,
        encoder: String,
        labels: &'a [usize],
        seeds: usize,
        trained_seeds: usize,
        first_seed: u64,
        methods: Vec<&'static str>,
        pretrain_epochs: Option<usize>,
        pretrain_local_views: Option<usize>,
        pretrain_decorrelation: Option<f64>,
        pretrain_lr: Option<f64>,
        pretrain_channels: Option<Channels>,
        pretrain_centring: Option<Centring>,
        pretrain_crowd: Option<f64>,
        pretrain_sky_jitter: Option<f64>,
        finetune_epochs: Option<usize>,
        finetune_min_steps: Option<usize>,
        finetune_jitter: Option<String>,
        finetune_lr_schedule: Option<LrSchedule>,
        finetune_lr: Option<f64>,
        finetune_interpolation: Option<f64>,
        finetune_distill: Option<usize>,
        finetune_cv_folds: Option<usize>,
        finetune_cross_validated: Option<Vec<usize>>,
        finetune_path_averaged: Option<Vec<usize>>,
        finetune_fresh_batchnorm: Option<Vec<usize>>,
        finetune_batchnorm_images: Option<usize>,
        scratch_batchnorm_images: Option<usize>,
        probe_variance: Option<f64>,
    }
    // Fine-tuning's settings only where a network was trained (a probe or
    // morphology fit has none).
    let trains = args.methods.iter().any(|m| m.trains_network());
    let resolved = Resolved {
        quick: q,
        data: train_dir.display().to_string(),
        test: test_dir.display().to_string(),
        feature_contrast: args.data.is_none().then_some(feature_contrast),
        encoder: encoder.display().to_string(),
        labels: &counts,
        seeds,
        trained_seeds,
        first_seed: args.seed,
        methods: args.methods.iter().map(|m| m.name()).collect(),
        pretrain_epochs: args.encoder.is_none().then_some(pre_epochs),
        pretrain_local_views: args.encoder.is_none().then_some(pre_cfg.local_views),
        pretrain_decorrelation: args.encoder.is_none().then_some(pre_cfg.decorrelation),
        pretrain_lr: args.encoder.is_none().then_some(pre_cfg.lr),
        pretrain_channels: args.encoder.is_none().then_some(pre_cfg.channels),
        pretrain_centring: args.encoder.is_none().then_some(pre_cfg.centring),
        pretrain_crowd: args.encoder.is_none().then_some(pre_cfg.crowd),
        pretrain_sky_jitter: args.encoder.is_none().then_some(pre_cfg.jitter.sky),
        finetune_epochs: trains.then_some(ft_epochs),
        finetune_min_steps: trains.then_some(args.min_steps),
        finetune_jitter: trains
            .then(|| clap::ValueEnum::to_possible_value(&args.finetune_jitter).map(|v| v.get_name().to_string()))
            .flatten(),
        finetune_lr_schedule: trains.then_some(lr_schedule),
        finetune_lr: finetunes.then_some(finetune_lr),
        finetune_interpolation: finetunes.then_some(finetune_interpolation),
        finetune_distill: finetunes.then_some(args.finetune_distill),
        // The folds of the counts that cross-validate their stop (0: none does).
        finetune_cv_folds: finetunes.then(|| {
            let k = args.finetune_cv_folds.unwrap_or(FinetuneConfig::CV_FOLDS);
            if endings.cross_validated.is_empty() {
                0
            } else {
                k
            }
        }),
        finetune_cross_validated: finetunes.then(|| endings.cross_validated.clone()),
        finetune_path_averaged: finetunes.then(|| endings.path_averaged.clone()),
        // The counts whose fine-tuning measures fresh statistics, and on how many images.
        finetune_fresh_batchnorm: finetunes.then(|| endings.fresh_batchnorm.clone()),
        finetune_batchnorm_images: finetunes.then(|| {
            if endings.fresh_batchnorm.is_empty() {
                0
            } else {
                fresh_batchnorm_images(&args)
            }
        }),
        scratch_batchnorm_images: scratches.then(|| fresh_batchnorm_images(&args)),
        probe_variance: probes.then_some(args.probe_variance),
    };
    Manifest::new("experiment labels", resolved, started, total).write(out)?;
    println!("experiment labels finished in {:.1} min → {}", total / 60.0, out.join("report.md").display());
    Ok(())
}

/// Mean and sample standard deviation (n − 1; 0 for one value).
pub(crate) fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n.max(1.0);
    let sd = if v.len() > 1 { (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, sd)
}

/// One method's AUC minus another's over the label draws both ran.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Paired {
    /// Mean of the per-draw differences.
    mean: f64,
    /// Their sample standard deviation (0 for one draw).
    sd: f64,
    /// Draws on which `a` scored higher.
    wins: usize,
    /// Draws both methods ran.
    draws: usize,
}

/// Method `a`'s AUC minus method `b`'s, draw by draw at `n` labels; `None`
/// when no draw ran both.
///
/// Every method given a seed trains on the same labels, so the difference
/// taken per draw discounts how easy that draw was, which dominates the
/// spread of each method's own AUC with few labels. A tie counts as a loss
/// for `a`; a NaN AUC makes the mean and spread NaN.
fn paired(results: &[LabelsResult], a: MethodArg, b: MethodArg, n: usize) -> Option<Paired> {
    let of = |m: MethodArg| results.iter().filter(move |r| r.method == m && r.labels == n);
    let d: Vec<f64> = of(a).filter_map(|ra| of(b).find(|rb| rb.seed == ra.seed).map(|rb| ra.auc - rb.auc)).collect();
    (!d.is_empty()).then(|| {
        let (mean, sd) = mean_sd(&d);
        Paired { mean, sd, wins: d.iter().filter(|&&x| x > 0.0).count(), draws: d.len() }
    })
}

fn stats(results: &[LabelsResult], m: MethodArg, n: usize, f: fn(&LabelsResult) -> f64) -> Option<(f64, f64, usize)> {
    let v: Vec<f64> = results.iter().filter(|r| r.method == m && r.labels == n).map(f).collect();
    (!v.is_empty()).then(|| {
        let (a, b) = mean_sd(&v);
        (a, b, v.len())
    })
}

/// The AUC and completeness curves; `scored` says in the y label which set
/// the classifiers were scored on.
fn plot_labels(
    out: &Path,
    methods: &[MethodArg],
    counts: &[usize],
    results: &[LabelsResult],
    scored: &str,
) -> anyhow::Result<()> {
    for (file, title, ylabel, f) in [
        (
            "auc_vs_labels.png",
            "AUC vs number of labels",
            format!("ROC AUC ({scored})"),
            (|r: &LabelsResult| r.auc) as fn(&LabelsResult) -> f64,
        ),
        (
            "completeness_vs_labels.png",
            "completeness at 22% contamination vs labels",
            format!("completeness at 22% FPR ({scored})"),
            |r: &LabelsResult| r.completeness_22,
        ),
    ] {
        let series: Vec<Series> = methods
            .iter()
            .enumerate()
            .map(|(k, m)| {
                let pts: Vec<(f64, f64, f64)> =
                    counts.iter().filter_map(|&n| stats(results, *m, n, f).map(|(a, s, _)| (n as f64, a, s))).collect();
                let mut s = Series::line(
                    m.title(),
                    pts.iter().map(|p| p.0).collect(),
                    pts.iter().map(|p| p.1).collect(),
                    PALETTE[k % PALETTE.len()],
                );
                s.band = Some((pts.iter().map(|p| p.1 - p.2).collect(), pts.iter().map(|p| p.1 + p.2).collect()));
                s.markers = true;
                s
            })
            .collect();
        let mut axes = Axes::new(title, "number of training labels", &ylabel);
        axes.x_log = true;
        axes.y_range = Some((if file.starts_with("auc") { 0.4 } else { 0.0 }, 1.0));
        line_plot(&out.join(file), &axes, &series)?;
    }
    Ok(())
}

/// Fine-tuning's settings for how it ends (the folds of a cross-validated
/// stop, the path average and fresh BatchNorm statistics) as asked for;
/// each count resolves them by [`FinetuneConfig::resolved_cv_folds`],
/// [`FinetuneConfig::resolved_path_average`] and
/// [`FinetuneConfig::resolved_batchnorm_images`].
fn finetune_ending(args: &ExperimentLabelsArgs) -> FinetuneConfig {
    FinetuneConfig {
        cv_folds: args.finetune_cv_folds,
        path_average: crate::cli::Switch::resolve(args.finetune_path_average),
        batchnorm_images: args.batchnorm_images,
        ..FinetuneConfig::for_mode(Mode::Finetune)
    }
}

/// How fine-tuning ends at each label count, resolved once for run.toml
/// and the report.
struct FinetuneEndings {
    /// The counts that keep the path average.
    path_averaged: Vec<usize>,
    /// The counts that cross-validate their stop.
    cross_validated: Vec<usize>,
    /// The counts that measure fresh BatchNorm statistics.
    fresh_batchnorm: Vec<usize>,
}

impl FinetuneEndings {
    fn of(args: &ExperimentLabelsArgs, counts: &[usize]) -> Self {
        let ending = finetune_ending(args);
        let at = |on: &dyn Fn(usize) -> bool| counts.iter().copied().filter(|&n| on(n)).collect();
        Self {
            path_averaged: at(&|n| ending.resolved_path_average(n)),
            cross_validated: at(&|n| ending.resolved_cv_folds(n) > 0),
            // Not a rule per count: every count or none.
            fresh_batchnorm: if ending.resolved_batchnorm_images() > 0 { counts.to_vec() } else { Vec::new() },
        }
    }
}

/// The images on which scratch, and fine-tuning where it does
/// ([`FinetuneEndings::fresh_batchnorm`]), measure fresh BatchNorm
/// statistics: `--batchnorm-images`, or the default.
fn fresh_batchnorm_images(args: &ExperimentLabelsArgs) -> usize {
    args.batchnorm_images.unwrap_or(FinetuneConfig::BATCHNORM_IMAGES)
}

/// The report's clause on fresh BatchNorm statistics: what scratch and
/// fine-tuning, where they ran, did after training (`n` images; `fresh`:
/// fine-tuning measured at its counts, which is every count or none).
fn batchnorm_sentence(n: usize, methods: &[MethodArg], fresh: bool) -> String {
    let views = "BatchNorm statistics afresh on the clean inference views of up to";
    let which = "training images (the draw, then unlabelled images outside it and the validation set)";
    let scratch = n > 0 && methods.contains(&MethodArg::Scratch);
    let finetune = methods.contains(&MethodArg::Finetune);
    match (scratch, fresh && finetune, finetune) {
        (true, true, _) => format!("; after training, fine-tuning and scratch measure their {views} {n} {which}"),
        (true, false, true) => {
            format!("; after training, scratch measures its {views} {n} {which}; fine-tuning keeps training's")
        }
        (true, false, false) => format!("; after training, scratch measures its {views} {n} {which}"),
        (false, true, _) => format!("; after training, fine-tuning measures its {views} {n} {which}"),
        (false, false, _) => String::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn write_labels_report(
    out: &Path,
    args: &ExperimentLabelsArgs,
    (counts, endings): (&[usize], &FinetuneEndings),
    dropped: &[usize],
    (seeds, trained_seeds): (usize, usize),
    (lr_schedule, finetune_lr, interpolation): (LrSchedule, f64, f64),
    results: &[LabelsResult],
    total: f64,
    n_train: usize,
    n_test: usize,
) -> anyhow::Result<()> {
    let mut r = String::new();
    writeln!(r, "# Label efficiency: tidal-feature classification vs number of labels\n")?;
    match (&args.data, &args.test) {
        (Some(d), Some(t)) => writeln!(r, "Data: training `{}`, test `{}`.", d.display(), t.display())?,
        _ => writeln!(
            r,
            "Data: simulated HSC-SSP Ultradeep cutouts, {n_train} for training (30% tidal) and an independent test set of {n_test} (another seed){}.",
            match args.feature_contrast {
                // The feature's light as a share of the host's where it
                // starts: 10^(0.4 m).
                Some(m) if m != FEATURE_CONTRAST => format!(
                    ", each feature starting where it adds {:.0}% to the host's light (`--feature-contrast {m}`; by default {:.0}%)",
                    100.0 * 10f64.powf(0.4 * m),
                    100.0 * 10f64.powf(0.4 * FEATURE_CONTRAST)
                ),
                _ => String::new(),
            }
        )?,
    }
    writeln!(
        r,
        "For each seed, a stratified 10% of the labelled training set (drawn by that seed, the same for every count and method) is set aside: only the networks' validation-loss logs read it, and nothing is selected on it. Each count is drawn from the other 90%, balanced between the classes, {} for the linear probe and the morphology baseline and {} for fine-tuning and training from scratch; every method trains on the same draw, and a count of N is N training labels. The probe chooses its L2 strength by cross-validation on its training labels{}; fine-tuning and scratch run at least {} optimisation steps with a {} learning rate (Adam, from {:e} and {:e}){}{}{}{}. Mean ± standard deviation over seeds; {} in total.\n",
        match seeds {
            1 => format!("once (seed {})", args.seed),
            n => format!("{n} times (seeds {}–{})", args.seed, args.seed + n as u64 - 1),
        },
        match trained_seeds {
            0 => "never".to_string(),
            1 => "once (the first seed)".to_string(),
            n => format!("{n} times (the first {n} seeds)"),
        },
        if args.probe_variance > 0.0 {
            format!(
                ", and the same for its leading principal components holding {:.0}% of its variance over unlabelled images, whitened; by the same folds it keeps the input whose held-out log-loss is lower by more than two standard errors, else averages the two heads",
                100.0 * args.probe_variance
            )
        } else {
            String::new()
        },
        args.min_steps,
        lr_schedule.describe(),
        finetune_lr,
        FinetuneConfig::default_lr(Mode::Scratch),
        if interpolation < 1.0 {
            format!(
                "; fine-tuning keeps its weights {interpolation} of the way from where it started (the pretrained encoder with the probe's head) to where it ended"
            )
        } else {
            String::new()
        },
        {
            let words =
                |ns: &[usize]| ns.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
            let mut t = String::new();
            if !endings.path_averaged.is_empty() {
                t += &format!(
                    "; with {} labels fine-tuning keeps {}",
                    words(&endings.path_averaged),
                    tidalscope_train::finetune::PATH_AVERAGE
                );
            }
            if !endings.cross_validated.is_empty() {
                let k = args.finetune_cv_folds.unwrap_or(FinetuneConfig::CV_FOLDS);
                t += &format!("; with {} labels fine-tuning goes as far along its schedule (none of it: the probe, 1/16, 1/8, 1/4, 1/2 or all) as {k}-fold cross-validation on the draw's own labels finds best", words(&endings.cross_validated));
            }
            t
        },
        if args.finetune_distill > 0 {
            format!(
                "; fine-tuning also trains on up to {} unlabelled training images (outside the draw and the validation set), each with the probe's probability as a soft target (self-distillation)",
                args.finetune_distill
            )
        } else {
            String::new()
        },
        {
            let fresh = !endings.fresh_batchnorm.is_empty();
            batchnorm_sentence(fresh_batchnorm_images(args), &args.methods, fresh)
        },
        if total > 120.0 { format!("{:.1} min", total / 60.0) } else { format!("{total:.0} s") }
    )?;
    if !dropped.is_empty() {
        writeln!(
            r,
            "Requested label counts {dropped:?} were left out: the training data has too few labels of one class.\n"
        )?;
    }
    writeln!(r, "Methods: NNCLR encoder + linear probe (frozen, on the 128-number representation); NNCLR encoder + fine-tuning; the same architecture trained supervised from random weights; logistic regression on eight non-parametric morphology measures (asymmetry, outer asymmetry, shape asymmetry, concentration, Gini, M20, smoothness, outer flux fraction) of the g+r+i image; and, when asked for, a linear probe on the encoder's pooled backbone features (before its dense layers).\n")?;
    for (title, f) in [
        ("AUC", (|x: &LabelsResult| x.auc) as fn(&LabelsResult) -> f64),
        ("Completeness at 22% contamination (FPR)", |x: &LabelsResult| x.completeness_22),
    ] {
        writeln!(r, "## {title}\n")?;
        write!(r, "| method |")?;
        for n in counts {
            write!(r, " {n} |")?;
        }
        writeln!(r)?;
        writeln!(r, "|---|{}", "---|".repeat(counts.len()))?;
        for &m in &args.methods {
            write!(r, "| {} |", m.title())?;
            for &n in counts {
                match stats(results, m, n, f) {
                    Some((a, s, k)) if k > 1 => write!(r, " {a:.3} ± {s:.3} |")?,
                    // One draw has no spread to show.
                    Some((a, _, _)) => write!(r, " {a:.3} (1 draw) |")?,
                    None => write!(r, " – |")?,
                }
            }
            writeln!(r)?;
        }
        writeln!(r)?;
    }
    let fewer_network_draws = trained_seeds < seeds && args.methods.iter().any(|m| m.trains_network());
    write_paired(&mut r, &args.methods, counts, results, fewer_network_draws)?;
    writeln!(r, "![AUC vs labels](auc_vs_labels.png)\n\n![completeness vs labels](completeness_vs_labels.png)\n")?;
    writeln!(r, "Every run: `results.csv` (one row per method, label count and seed) and `runs/<method>-<labels>-seed<seed>/` for each network trained (the classifier, its split and training log; the probes and the morphology fits run in memory on features computed once per image). Settings, seeds and version: `run.toml`.")?;
    tidalscope_io::atomic::write(&out.join("report.md"), r.as_bytes())?;
    Ok(())
}

/// The report's draw-by-draw table: each self-supervised method against
/// each baseline that ran; `fewer_network_draws` says that fine-tuning and
/// scratch ran on fewer draws than the rest.
fn write_paired(
    r: &mut String,
    methods: &[MethodArg],
    counts: &[usize],
    results: &[LabelsResult],
    fewer_network_draws: bool,
) -> std::fmt::Result {
    let has = |m| methods.contains(&m);
    let pairs: Vec<(MethodArg, MethodArg)> = [MethodArg::Linear, MethodArg::Finetune, MethodArg::Backbone]
        .into_iter()
        .filter(|&a| has(a))
        .flat_map(|a| [MethodArg::Scratch, MethodArg::Morphology].into_iter().filter(|&b| has(b)).map(move |b| (a, b)))
        .collect();
    if pairs.is_empty() {
        return Ok(());
    }
    writeln!(r, "## AUC draw by draw: self-supervised minus baseline\n")?;
    writeln!(r, "Every method given a seed trains on the same labels, so two methods are compared on each draw both ran: the mean ± standard deviation of the differences in AUC, and on how many draws the self-supervised method scored higher. **Bold**: the mean difference exceeds its standard deviation over the draws, a lead larger than the draw-to-draw spread.{}\n",
        if fewer_network_draws {
            " Fine-tuning and scratch ran on fewer draws than the probes and morphology; a comparison with one of them covers only its draws."
        } else {
            ""
        }
    )?;
    write!(r, "| comparison |")?;
    for n in counts {
        write!(r, " {n} |")?;
    }
    writeln!(r)?;
    writeln!(r, "|---|{}", "---|".repeat(counts.len()))?;
    for (a, b) in pairs {
        write!(r, "| {} − {} |", a.title(), b.title())?;
        for &n in counts {
            match paired(results, a, b, n) {
                Some(p) if p.draws > 1 => {
                    let cell = format!("{:+.3} ± {:.3}", p.mean, p.sd);
                    let cell = if p.mean > p.sd { format!("**{cell}**") } else { cell };
                    write!(r, " {cell} ({} of {}) |", p.wins, p.draws)?
                }
                // One draw has no spread to show.
                Some(p) => write!(r, " {:+.3} (1 draw) |", p.mean)?,
                None => write!(r, " – |")?,
            }
        }
        writeln!(r)?;
    }
    writeln!(r)
}

// ---------------------------------------------------------------- recovery

/// Detections of one survey's recovery set.
struct Recovery {
    survey: String,
    threshold_22: f64,
    sb: Vec<f64>,
    host: Vec<f64>,
    types: Vec<Vec<String>>,
    det_22: Vec<bool>,
    det_50: Vec<bool>,
    negatives: Vec<(String, bool, bool)>,
    auc: f64,
}

fn column(set: &EvalSet, name: &str) -> anyhow::Result<usize> {
    set.columns
        .iter()
        .position(|c| c == name)
        .with_context(|| format!("the recovery set has no {name:?} column (simulated data carries it)"))
}

fn recover(survey: &str, set: &EvalSet, scores: &[f64]) -> anyhow::Result<Recovery> {
    let (c_sb, c_host, c_types, c_kind) =
        (column(set, "feature_sb")?, column(set, "host_mag_r")?, column(set, "feature_types")?, column(set, "kind")?);
    let neg: Vec<f64> = scores.iter().zip(&set.labels).filter(|(_, l)| **l == 0).map(|(s, _)| *s).collect();
    let t22 = threshold_at_fpr(&neg, 0.22);
    let mut r = Recovery {
        survey: survey.into(),
        threshold_22: t22,
        sb: vec![],
        host: vec![],
        types: vec![],
        det_22: vec![],
        det_50: vec![],
        negatives: vec![],
        auc: Summary::compute(scores, &set.labels, 0.5)?.0.auc,
    };
    for ((s, l), m) in scores.iter().zip(&set.labels).zip(&set.meta) {
        if *l == 1 {
            r.sb.push(m[c_sb].parse().unwrap_or(f64::NAN));
            r.host.push(m[c_host].parse().unwrap_or(f64::NAN));
            r.types.push(m[c_types].split(';').filter(|t| !t.is_empty()).map(String::from).collect());
            r.det_22.push(*s > t22);
            r.det_50.push(*s >= 0.5);
        } else {
            r.negatives.push((m[c_kind].clone(), *s > t22, *s >= 0.5));
        }
    }
    Ok(r)
}

fn bins_table(r: &mut String, title: &str, b22: &[Bin], b50: &[Bin]) -> std::fmt::Result {
    writeln!(r, "| {title} | objects | completeness (22% FPR threshold) | completeness (score ≥ 0.5) |")?;
    writeln!(r, "|---|---|---|---|")?;
    for (a, b) in b22.iter().zip(b50) {
        if a.n == 0 {
            continue;
        }
        writeln!(
            r,
            "| {} | {} | {:.0}% ({:.0}–{:.0}) | {:.0}% |",
            a.label,
            a.n,
            100.0 * a.fraction,
            100.0 * a.ci_lo,
            100.0 * a.ci_hi,
            100.0 * b.fraction
        )?;
    }
    writeln!(r)
}

/// Runs `experiment recovery`.
pub fn recovery(args: ExperimentRecoveryArgs) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let t_all = std::time::Instant::now();
    if args.model.is_some() {
        no_overrides_with(&args.pretrain, "--model is already trained")?;
    }
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let device = args.device.device()?;
    let q = args.quick;
    let n = args.n.unwrap_or(if q { 2000 } else { 10_000 });
    let n_train = args.n_train.unwrap_or(if q { 1200 } else { 6000 });
    let pre_epochs = args.pretrain_epochs.unwrap_or(if q { 8 } else { 50 });
    let pre_cfg = super::train::pretrain_config(args.preset.config(), &args.pretrain, pre_epochs, args.seed)?;
    let ft_epochs = args.epochs.unwrap_or(if q { 12 } else { 30 });
    let mut results = Vec::new();
    let mut models: Vec<(String, PathBuf)> = Vec::new();
    for (k, survey) in args.surveys.iter().enumerate() {
        let name = match survey {
            SurveyArg::HscUd => "hsc-ud",
            SurveyArg::LsstY10 => "lsst-y10",
        };
        let dir = out.join(name);
        let model = match &args.model {
            Some(m) => m.clone(),
            None => {
                // A model per survey, trained on that survey's mocks: depth
                // changes both what is visible and what the model learns.
                eprintln!(
                    "== {name}: simulate {n_train}, pretrain ({} epochs), fine-tune ({ft_epochs} epochs)",
                    pre_epochs
                );
                super::simulate::mock_set(
                    &dir.join("train"),
                    n_train,
                    args.seed + 17 * k as u64,
                    *survey,
                    (0.3, FEATURE_CONTRAST),
                )?;
                pretrain(&dir.join("train"), &dir.join("encoder"), &pre_cfg, &device)?;
                let src = super::open_source(&dir.join("train"), &SourceArgs::auto(), None)?;
                let cfg = FinetuneConfig {
                    mode: Mode::Finetune,
                    epochs: ft_epochs,
                    min_steps: args.min_steps,
                    split: SplitSpec::Stratified { val: 0.1, test: 0.0 },
                    seed: args.seed,
                    ..FinetuneConfig::for_mode(Mode::Finetune)
                };
                let m = dir.join("classifier");
                tidalscope_train::finetune::finetune(
                    &cfg,
                    &dir.join("encoder"),
                    &[src.as_ref()],
                    &[dir.join("train")],
                    &m,
                    &device,
                    &BarReporter::new(Some(&m)),
                )?;
                m
            }
        };
        eprintln!("== {name}: recovery set of {n} cutouts (half with features)");
        super::simulate::mock_set(
            &dir.join("recovery"),
            n,
            args.seed + 1_000_003 + k as u64,
            *survey,
            (0.5, FEATURE_CONTRAST),
        )?;
        let set = load_set(&dir.join("recovery"))?;
        let scores = score(&model, &set, &device)?;
        let rec = recover(name, &set, &scores)?;
        eprintln!("   AUC {:.3}; threshold at 22% FPR {:.3}", rec.auc, rec.threshold_22);
        write_recovery_csv(&dir, &rec)?;
        models.push((name.to_string(), model));
        results.push(rec);
    }
    plot_recovery(out, &results)?;
    let total = t_all.elapsed().as_secs_f64();
    write_recovery_report(out, &args, &results, &models, n, total)?;
    #[derive(serde::Serialize)]
    struct Resolved {
        quick: bool,
        surveys: Vec<String>,
        recovery_objects: usize,
        train_objects: Option<usize>,
        pretrain_epochs: Option<usize>,
        pretrain_local_views: Option<usize>,
        pretrain_decorrelation: Option<f64>,
        pretrain_lr: Option<f64>,
        pretrain_channels: Option<Channels>,
        pretrain_centring: Option<Centring>,
        pretrain_crowd: Option<f64>,
        pretrain_sky_jitter: Option<f64>,
        finetune_epochs: Option<usize>,
        finetune_lr_schedule: Option<LrSchedule>,
        seed: u64,
        models: Vec<(String, String)>,
    }
    let resolved = Resolved {
        quick: q,
        surveys: results.iter().map(|r| r.survey.clone()).collect(),
        recovery_objects: n,
        // With --model nothing is simulated for training, pretrained or fine-tuned.
        train_objects: args.model.is_none().then_some(n_train),
        pretrain_epochs: args.model.is_none().then_some(pre_epochs),
        pretrain_local_views: args.model.is_none().then_some(pre_cfg.local_views),
        pretrain_decorrelation: args.model.is_none().then_some(pre_cfg.decorrelation),
        pretrain_lr: args.model.is_none().then_some(pre_cfg.lr),
        pretrain_channels: args.model.is_none().then_some(pre_cfg.channels),
        pretrain_centring: args.model.is_none().then_some(pre_cfg.centring),
        pretrain_crowd: args.model.is_none().then_some(pre_cfg.crowd),
        pretrain_sky_jitter: args.model.is_none().then_some(pre_cfg.jitter.sky),
        finetune_epochs: args.model.is_none().then_some(ft_epochs),
        finetune_lr_schedule: args.model.is_none().then_some(LrSchedule::for_mode(Mode::Finetune)),
        seed: args.seed,
        models: models.iter().map(|(s, m)| (s.clone(), m.display().to_string())).collect(),
    };
    Manifest::new("experiment recovery", resolved, started, total).write(out)?;
    println!("experiment recovery finished in {:.1} min → {}", total / 60.0, out.join("report.md").display());
    Ok(())
}

fn write_recovery_csv(dir: &Path, r: &Recovery) -> anyhow::Result<()> {
    let mut csv = tidalscope_io::csv::CsvWriter::create(
        &dir.join("recovery.csv"),
        &[
            "property",
            "bin",
            "objects",
            "detected_22pct_fpr",
            "completeness_22pct_fpr",
            "ci_lo",
            "ci_hi",
            "completeness_score_0.5",
        ]
        .map(String::from),
    )?;
    let sb_e = edges(&r.sb, 0.5);
    let host_e = edges(&r.host, 0.5);
    for (prop, a, b) in [
        ("feature_sb", binned(&r.sb, &r.det_22, &sb_e), binned(&r.sb, &r.det_50, &sb_e)),
        ("feature_type", by_category(&r.types, &r.det_22), by_category(&r.types, &r.det_50)),
        ("host_mag_r", binned(&r.host, &r.det_22, &host_e), binned(&r.host, &r.det_50, &host_e)),
    ] {
        for (x, y) in a.iter().zip(&b) {
            csv.row(&[
                prop.into(),
                x.label.clone(),
                x.n.to_string(),
                x.detected.to_string(),
                format!("{:.4}", x.fraction),
                format!("{:.4}", x.ci_lo),
                format!("{:.4}", x.ci_hi),
                format!("{:.4}", y.fraction),
            ])?;
        }
    }
    for (kind, f22, f50) in negative_rates(r) {
        csv.row(&[
            "negative_kind_false_positive_rate".into(),
            kind.label.clone(),
            kind.n.to_string(),
            kind.detected.to_string(),
            format!("{f22:.4}"),
            format!("{:.4}", kind.ci_lo),
            format!("{:.4}", kind.ci_hi),
            format!("{f50:.4}"),
        ])?;
    }
    csv.finish()?;
    Ok(())
}

/// False-positive rate per negative kind: (bin at the 22% threshold, rate
/// at 22%, rate at score ≥ 0.5).
fn negative_rates(r: &Recovery) -> Vec<(Bin, f64, f64)> {
    let cats: Vec<Vec<String>> = r.negatives.iter().map(|n| vec![n.0.clone()]).collect();
    let d22: Vec<bool> = r.negatives.iter().map(|n| n.1).collect();
    let d50: Vec<bool> = r.negatives.iter().map(|n| n.2).collect();
    by_category(&cats, &d22)
        .into_iter()
        .zip(by_category(&cats, &d50))
        .map(|(a, b)| {
            let f = a.fraction;
            (a, f, b.fraction)
        })
        .collect()
}

fn plot_recovery(out: &Path, results: &[Recovery]) -> anyhow::Result<()> {
    let curve = |values: fn(&Recovery) -> &Vec<f64>, file: &str, title: &str, xlabel: &str| -> anyhow::Result<()> {
        let mut series = Vec::new();
        for (k, r) in results.iter().enumerate() {
            let e = edges(values(r), 0.5);
            let b: Vec<Bin> = binned(values(r), &r.det_22, &e).into_iter().filter(|b| b.n >= 3).collect();
            let mut s = Series::line(
                format!("{} (22% FPR threshold)", r.survey),
                b.iter().map(|b| 0.5 * (b.lo + b.hi)).collect(),
                b.iter().map(|b| b.fraction).collect(),
                PALETTE[k % PALETTE.len()],
            );
            s.band = Some((b.iter().map(|b| b.ci_lo).collect(), b.iter().map(|b| b.ci_hi).collect()));
            s.markers = true;
            series.push(s);
        }
        let mut axes = Axes::new(title, xlabel, "completeness");
        axes.y_range = Some((0.0, 1.05));
        line_plot(&out.join(file), &axes, &series)?;
        Ok(())
    };
    curve(
        |r| &r.sb,
        "completeness_vs_sb.png",
        "completeness vs feature surface brightness",
        "feature surface brightness (mag/arcsec², r)",
    )?;
    curve(|r| &r.host, "completeness_vs_host_mag.png", "completeness vs host magnitude", "host r magnitude")?;
    Ok(())
}

fn write_recovery_report(
    out: &Path,
    args: &ExperimentRecoveryArgs,
    results: &[Recovery],
    models: &[(String, PathBuf)],
    n: usize,
    total: f64,
) -> anyhow::Result<()> {
    let mut r = String::new();
    writeln!(r, "# Injection–recovery: what the classifier finds, by feature and depth\n")?;
    writeln!(r, "For each survey preset, {n} simulated cutouts (half with a tidal feature of known type and surface brightness) were scored by the classifier. An object is *detected* when its score is strictly above the threshold t at which at most 22% of the negatives of the same set score above t (22% contamination as FPR, the reference's operating point), or when its score is ≥ 0.5. Brackets: 68% Wilson intervals. Total time {:.1} min.\n", total / 60.0)?;
    for ((res, (_, model)), _) in results.iter().zip(models).zip(0..) {
        writeln!(r, "## {}\n", res.survey)?;
        writeln!(r, "Classifier `{}`; AUC {:.3}; detected when score > {:.4} (22% FPR); positives {}, of which {:.0}% detected at that threshold.\n", model.display(), res.auc, res.threshold_22, res.sb.len(), 100.0 * res.det_22.iter().filter(|d| **d).count() as f64 / res.det_22.len().max(1) as f64)?;
        let sb_e = edges(&res.sb, 0.5);
        bins_table(
            &mut r,
            "feature SB (mag/arcsec²)",
            &binned(&res.sb, &res.det_22, &sb_e),
            &binned(&res.sb, &res.det_50, &sb_e),
        )?;
        bins_table(
            &mut r,
            "feature type",
            &by_category(&res.types, &res.det_22),
            &by_category(&res.types, &res.det_50),
        )?;
        let host_e = edges(&res.host, 0.5);
        bins_table(
            &mut r,
            "host r mag",
            &binned(&res.host, &res.det_22, &host_e),
            &binned(&res.host, &res.det_50, &host_e),
        )?;
        writeln!(r, "| negative kind | objects | false-positive rate (22% threshold) | (score ≥ 0.5) |")?;
        writeln!(r, "|---|---|---|---|")?;
        for (b, f22, f50) in negative_rates(res) {
            writeln!(
                r,
                "| {} | {} | {:.0}% ({:.0}–{:.0}) | {:.0}% |",
                b.label,
                b.n,
                100.0 * f22,
                100.0 * b.ci_lo,
                100.0 * b.ci_hi,
                100.0 * f50
            )?;
        }
        writeln!(r, "\nPer-bin numbers: `{}/recovery.csv`.\n", res.survey)?;
    }
    writeln!(r, "![completeness vs SB](completeness_vs_sb.png)\n\n![completeness vs host magnitude](completeness_vs_host_mag.png)\n")?;
    writeln!(r, "The few objects in bins brighter than about 23 mag/arcsec² are mostly double nuclei, whose surface brightness is that of the second nucleus; read the faint end, and the per-type tables, for tidal structure.\n")?;
    if args.model.is_some() && results.len() > 1 {
        writeln!(r, "One classifier (`--model`) scored every survey's mocks: differences mix depth with the change of noise level the model was not trained on.\n")?;
    } else if results.len() > 1 {
        writeln!(r, "Each survey has its own model, trained the same way on that survey's mocks, so differences reflect depth.\n")?;
    }
    tidalscope_io::atomic::write(&out.join("report.md"), r.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_report_names_fresh_batchnorm_statistics_only_for_methods_that_ran() {
        use super::{batchnorm_sentence, MethodArg::*};
        let s = |methods: &[crate::cli::MethodArg], fresh| batchnorm_sentence(2000, methods, fresh);
        assert!(s(&[Linear, Finetune], false).is_empty());
        assert!(s(&[Linear], false).is_empty());
        let both = s(&[Finetune, Scratch], false);
        assert!(both.contains("scratch measures its") && both.contains("fine-tuning keeps training's"), "{both}");
        let alone = s(&[Scratch], false);
        assert!(alone.contains("scratch measures its") && !alone.contains("fine-tuning"), "{alone}");
        assert!(s(&[Finetune, Scratch], true).contains("fine-tuning and scratch measure their"));
        let ft = s(&[Finetune], true);
        assert!(ft.contains("fine-tuning measures its") && !ft.contains("scratch"), "{ft}");
        assert!(batchnorm_sentence(0, &[Finetune, Scratch], false).is_empty(), "0: none measured");
    }

    use super::*;

    /// A 25-label result of `method` on draw `seed`.
    fn result(method: MethodArg, seed: u64, auc: f64) -> LabelsResult {
        result_at(method, 25, seed, auc)
    }

    /// A result of `method` with `labels` labels on draw `seed`.
    fn result_at(method: MethodArg, labels: usize, seed: u64, auc: f64) -> LabelsResult {
        LabelsResult {
            method,
            labels,
            seed,
            auc,
            completeness_22: 0.0,
            completeness_10: 0.0,
            average_precision: 0.0,
            seconds: 0.0,
        }
    }

    #[test]
    fn paired_differences_match_draws_by_seed_not_by_order() {
        use MethodArg::{Linear, Morphology, Scratch};
        // The probe ran 4 draws, scratch 3, listed in another order.
        let results = [
            result(Linear, 1, 0.80),
            result(Linear, 2, 0.70),
            result(Linear, 3, 0.90),
            result(Linear, 4, 0.99),
            result(Scratch, 3, 0.85),
            result(Scratch, 1, 0.78),
            result(Scratch, 2, 0.72),
        ];
        let p = paired(&results, Linear, Scratch, 25).unwrap();
        // Differences +0.02, −0.02, +0.05; seed 4 has no partner.
        assert_eq!((p.wins, p.draws), (2, 3));
        assert!((p.mean - 0.05 / 3.0).abs() < 1e-12, "{p:?}");
        let sd =
            ((0.02f64 - 0.05 / 3.0).powi(2) + (-0.02f64 - 0.05 / 3.0).powi(2) + (0.05f64 - 0.05 / 3.0).powi(2)) / 2.0;
        assert!((p.sd - sd.sqrt()).abs() < 1e-12, "{p:?}");
        assert_eq!(paired(&results, Linear, Morphology, 25), None);
        assert_eq!(paired(&results, Linear, Scratch, 50), None);
    }

    #[test]
    fn the_paired_table_bolds_a_lead_larger_than_its_spread() {
        use MethodArg::{Backbone, Finetune, Linear, Morphology, Scratch};
        let results = [
            result(Linear, 1, 0.80),
            result(Linear, 2, 0.81),
            result(Finetune, 1, 0.90),
            result(Finetune, 2, 0.60),
            result(Backbone, 1, 0.60),
            result(Backbone, 2, 0.61),
            result(Scratch, 1, 0.70),
            result(Scratch, 2, 0.70),
            // At 50 labels: one draw of the probe and scratch, a tie.
            result_at(Linear, 50, 1, 0.75),
            result_at(Scratch, 50, 1, 0.75),
        ];
        let mut r = String::new();
        write_paired(&mut r, &[Linear, Finetune, Backbone, Scratch], &[25, 50], &results, false).unwrap();
        let rows: Vec<&str> = r.lines().filter(|l| l.starts_with("| NNCLR")).collect();
        assert_eq!(
            rows,
            [
                "| NNCLR + linear probe − supervised from scratch | **+0.105 ± 0.007** (2 of 2) | +0.000 (1 draw) |",
                "| NNCLR + fine-tuning − supervised from scratch | +0.050 ± 0.212 (1 of 2) | – |",
                // Behind by more than the spread: not bold.
                "| NNCLR backbone + linear probe − supervised from scratch | -0.095 ± 0.007 (0 of 2) | – |",
            ],
            "{r}"
        );
        assert!(!r.contains("fewer draws"), "{r}");
        // Against morphology too, when it ran; a method that did not run has no row.
        let mut r = String::new();
        let more = [result(Morphology, 1, 0.60), result(Morphology, 2, 0.62)];
        let all: Vec<_> = results.into_iter().chain(more).collect();
        write_paired(&mut r, &[Linear, Morphology, Scratch], &[25], &all, true).unwrap();
        let rows: Vec<&str> =
            r.lines().filter(|l| l.starts_with("| NNCLR")).map(|l| l.split(" |").next().unwrap()).collect();
        assert_eq!(
            rows,
            [
                "| NNCLR + linear probe − supervised from scratch",
                "| NNCLR + linear probe − morphology + logistic regression"
            ]
        );
        assert!(r.contains("covers only its draws"), "{r}");
        // Without a baseline there is nothing to compare.
        let mut r = String::new();
        write_paired(&mut r, &[Linear, Finetune], &[25], &all, false).unwrap();
        assert!(r.is_empty(), "{r}");
    }
}

//! The classifier: encoder + Dense(1, sigmoid) on a labelled split, as
//!
//! * a **linear probe**: the frozen encoder's representations computed once,
//!   and an L2-regularised logistic regression fitted to convergence
//!   (Newton/IRLS) with the L2 strength chosen by stratified
//!   cross-validation on the training labels alone — no labelled data
//!   beyond those given is used — on the standardised representation and
//!   on its leading principal components whitened over unlabelled images
//!   ([`FinetuneConfig::probe_variance`]): the input that cross-validates
//!   clearly better, else the mean of both heads ([`linear_probe`]); then
//!   folded into the Dense(1) head;
//! * **fine-tuning** everything (the reference's choice, with its
//!   augmentations, or with stronger views: [`FinetuneConfig::jitter`])
//!   with binary cross-entropy and Adam, starting the head
//!   from that probe (linear probing then fine-tuning, Kumar et al. 2022,
//!   so the encoder is not pulled around by a random head), optionally
//!   kept part of the way back towards that start in weight space
//!   ([`FinetuneConfig::interpolation`]), and optionally also learning
//!   from unlabelled images with the probe's probabilities as soft
//!   targets ([`FinetuneConfig::distill`]); with few labels it keeps the
//!   mean of its weights at six points along its path, from the probe it
//!   started from to the end ([`FinetuneConfig::path_average`], by default
//!   below [`FinetuneConfig::AVERAGE_BELOW`] labels), or stops part of the
//!   way along its schedule where cross-validation on the training labels
//!   says ([`FinetuneConfig::cv_folds`]: the probe itself, when no step
//!   helped);
//! * **scratch**: the same architecture from random weights.
//!
//! Fine-tuning and scratch run at least [`FinetuneConfig::min_steps`]
//! optimisation steps (more epochs when the labels are few), so 50 labels
//! do not mean 30 steps, at a constant learning rate or one that falls to
//! zero along half a cosine ([`FinetuneConfig::lr_schedule`]).
//!
//! A run folder holds the classifier folder (`classifier.json`,
//! `classifier.bpk`, `preprocess.json`), `split.json`, `config.toml`,
//! `Train_loss.npy` (per epoch, as the reference wrote it, over the
//! unlabelled images too when distilling; one value for the probe), `Val_loss.npy` (per epoch as well, up to [`VAL_LOGS`]
//! epochs; beyond, at [`VAL_LOGS`] evenly spread epochs ending with the
//! last) with `Val_epochs.npy` (the 1-based epoch of each; 1 for the
//! probe), `loss.png` (the probe, or fine-tuning that
//! [`FinetuneConfig::cv_folds`] kept at its probe: the probe's
//! cross-validation curve for each input it tried; `probe_cv.npy` holds
//! the kept input's as [λ, loss] rows, the standardised one's when both
//! are averaged; otherwise the training and validation curves, with the
//! kept classifier's validation loss as a level when it is not the last
//! step's) and `log.txt`.
//!
//! On the CPU the encoder runs on the fast kernels (`tidalscope_model::fast`)
//! in every mode; when it trains, the Dense(1) head and the loss stay in
//! burn and ∂L/∂h passes between the two.

use crate::config::{FinetuneConfig, Mode};
use crate::labelled::{self, SplitRecord};
use crate::representation;
use crate::{log_line, write_npy, write_toml, Reporter, Result};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use std::path::{Path, PathBuf};
use tidalscope_core::streams;
use tidalscope_core::{Cutout, Rng};
use tidalscope_data::augment::Augment;
use tidalscope_data::split::ObjectRef;
use tidalscope_eval::logistic::{default_grid, CvReport, Logistic};
use tidalscope_eval::plot::{line_plot, Axes, Series, PALETTE};
use tidalscope_eval::whiten::Whitening;
use tidalscope_io::source::Source;
use tidalscope_model::bundle::{ClassifierBundle, EncoderBundle};
use tidalscope_model::classifier::{Classifier, ClassifierConfig};
use tidalscope_model::params::RunningMean;
use tidalscope_model::trainable::{AdamSettings, TrainableEncoder};
use tidalscope_model::{batch, infer, loss};

/// What a fine-tuning run did.
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneSummary {
    /// Mean training loss of each epoch.
    pub train_loss: Vec<f32>,
    /// Validation loss after each of `val_epochs`.
    pub val_loss: Vec<f32>,
    /// The epochs (1-based) after which the validation loss was measured:
    /// every one, or [`VAL_LOGS`] evenly spread ones ending with the last
    /// (see [`measures_validation`]); `[1]` for the probe.
    pub val_epochs: Vec<usize>,
    /// Validation loss of the classifier kept when it is not the last
    /// step's as trained (the mean along the path,
    /// [`FinetuneConfig::path_average`], BatchNorm statistics measured
    /// afresh, [`FinetuneConfig::batchnorm_images`], or fine-tuning
    /// interpolated, [`FinetuneConfig::interpolation`] below 1): the losses
    /// above are the trained weights' with training's statistics.
    pub kept_val_loss: Option<f32>,
    /// The cross-validation that chose how far fine-tuning went
    /// ([`FinetuneConfig::cv_folds`]), when it ran.
    pub cv: Option<CvStop>,
    /// How many points along fine-tuning the kept weights are the mean of
    /// ([`FinetuneConfig::path_average`]), when they are.
    pub path_points: Option<usize>,
    /// The training images the kept encoder's BatchNorm statistics were
    /// measured afresh on, resolved
    /// ([`FinetuneConfig::resolved_batchnorm_images`]; the run may have
    /// fewer); 0 = training's kept.
    pub batchnorm_images: usize,
    /// (train, val, test) sizes.
    pub sizes: (usize, usize, usize),
    /// Wall time.
    pub seconds: f64,
}

/// The most validation passes in a run. With few labels a run needs
/// hundreds of one- or two-step epochs to reach its minimum steps, and a
/// pass over the validation set after each would cost several times the
/// training (in `experiment labels`, about a third of the protocol's time
/// after pretraining).
pub const VAL_LOGS: usize = 50;

/// Whether the validation loss is measured after epoch `epoch` (1-based)
/// of `epochs`: after each when there are at most [`VAL_LOGS`], else after
/// the epochs where `epoch × VAL_LOGS / epochs` steps to its next integer —
/// exactly [`VAL_LOGS`] of them, evenly spread, the last among them.
pub fn measures_validation(epoch: usize, epochs: usize) -> bool {
    epochs <= VAL_LOGS || (epoch > 0 && epoch * VAL_LOGS / epochs != (epoch - 1) * VAL_LOGS / epochs)
}

/// Mean binary cross-entropy of logits against labels (no gradient).
fn bce(logits: Vec<f32>, labels: &[f32], device: &Device) -> f32 {
    loss::bce_with_logits(batch::vector(logits, device), batch::vector(labels.to_vec(), device)).into_scalar::<f32>()
}

/// The input a [`Probe`] was fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeInput {
    /// The standardised representation.
    Standardised,
    /// This many leading principal components, whitened.
    Whitened(usize),
    /// The mean of the two heads, on the standardised representation and on
    /// this many whitened components: neither cross-validated clearly better
    /// (or the labels were too few to cross-validate).
    Both(usize),
}

impl std::fmt::Display for ProbeInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Standardised => write!(f, "the standardised representation"),
            Self::Whitened(k) => write!(f, "{k} whitened principal components"),
            Self::Both(k) => write!(
                f,
                "the mean of the heads on the standardised representation and on {k} whitened principal components"
            ),
        }
    }
}

/// How many standard errors of the paired per-label held-out log-loss
/// difference make one of the probe's two inputs clearly better: the usual
/// two-sided 95% level, not tuned.
pub const PROBE_PREFERENCE: f64 = 2.0;

/// The linear probe's fit.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Dense(1) weights on the raw representation.
    pub weights: Vec<f32>,
    /// Dense(1) bias.
    pub bias: f32,
    /// The input read.
    pub input: ProbeInput,
    /// The cross-validation that chose the standardised input's L2 strength.
    pub standardised_cv: CvReport,
    /// The whitened input's, when it was offered.
    pub whitened_cv: Option<CvReport>,
    /// The standardised input's held-out log-loss minus the whitened one's,
    /// label by label, averaged and divided by its standard error (positive:
    /// the whitened input did better); `None` when the two were not both
    /// cross-validated.
    pub preference: Option<f64>,
}

impl Probe {
    /// The cross-validation of the input kept (of the standardised one
    /// when both are averaged).
    pub fn cv(&self) -> &CvReport {
        match (self.input, &self.whitened_cv) {
            (ProbeInput::Whitened(_), Some(w)) => w,
            _ => &self.standardised_cv,
        }
    }

    /// One line for `log.txt`: the input read, each input's L2 strength
    /// and held-out log-loss, and how clearly one beat the other.
    pub fn describe(&self) -> String {
        let one = |cv: &CvReport| {
            let at = cv.grid.iter().position(|&g| g == cv.chosen).unwrap_or(0);
            format!("L2 λ = {:.3}, held-out log-loss {:.4}", cv.chosen, cv.loss[at])
        };
        let cv = &self.standardised_cv;
        let how =
            format!("{}-fold cross-validation over λ {:.0e}–{:.0e}", cv.folds, cv.grid[0], cv.grid[cv.grid.len() - 1]);
        let plain = one(cv);
        let z = match self.preference {
            None => "not compared: too few labels to cross-validate".to_string(),
            Some(z) if z >= 0.0 => format!("the whitened input ahead by {z:.1} standard errors"),
            Some(z) => format!("the standardised input ahead by {:.1} standard errors", -z),
        };
        match (self.input, &self.whitened_cv) {
            (_, None) => format!("linear probe on the standardised representation: {plain} ({how})"),
            (ProbeInput::Standardised, Some(w)) => format!(
                "linear probe on the standardised representation: {plain}; the whitened components: {} ({z}; {how})",
                one(w)
            ),
            (ProbeInput::Whitened(k), Some(w)) => format!(
                "linear probe on {k} whitened principal components: {}; the standardised representation: {plain} ({z}; {how})",
                one(w)
            ),
            (ProbeInput::Both(k), Some(w)) => format!(
                "linear probe: the mean of two heads, on the standardised representation ({plain}) and on {k} whitened principal components ({}); neither ahead by more than {PROBE_PREFERENCE} standard errors ({z}; {how})",
                one(w)
            ),
        }
    }
}

/// The mean of `a − b` over pairs divided by its standard error; `None`
/// with fewer than two pairs or any value not finite, and ±∞ when the
/// differences have no spread (0 when they are all 0).
fn paired_z(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 || !a.iter().chain(b).all(|v| v.is_finite()) {
        return None;
    }
    let n = a.len() as f64;
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let mean = d.iter().sum::<f64>() / n;
    let se = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
    Some(if se > 0.0 {
        mean / se
    } else if mean == 0.0 {
        0.0
    } else {
        mean.signum() * f64::INFINITY
    })
}

/// The converged linear probe on `n` representations `x` (`[n, d]`
/// row-major) with labels `y`. Given a `whitening`, the probe is fitted
/// both on the standardised representation and on its whitened leading
/// components, each with its own cross-validated L2 strength (the same
/// folds for both). One is kept when its held-out log-loss is lower by
/// more than [`PROBE_PREFERENCE`] standard errors (paired label by label):
/// with hundreds of labels the whole representation usually is. Otherwise
/// — the usual case with tens of labels, where a choice by the held-out
/// losses of so few labels is close to a coin toss — the two heads are
/// averaged, which on three validation splits beat the choice by the lower
/// loss by +0.010 AUC at 25 labels; so too when the labels are too few to
/// cross-validate (fewer than 2 of a class). Either way the result is one
/// Dense(1) head on the raw representation.
pub fn linear_probe(x: &[f32], d: usize, y: &[f32], seed: u64, whitening: Option<&Whitening>) -> Probe {
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let y8: Vec<u8> = y.iter().map(|&v| (v > 0.5) as u8).collect();
    let grid = default_grid();
    let (plain, plain_cv) = Logistic::fit_cv(&x64, d, &y8, &grid, 5, seed);
    let f32s = |w: Vec<f64>| w.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
    let (pw, pb) = plain.affine();
    let Some(wh) = whitening else {
        return Probe {
            weights: f32s(pw),
            bias: pb as f32,
            input: ProbeInput::Standardised,
            standardised_cv: plain_cv,
            whitened_cv: None,
            preference: None,
        };
    };
    let z = wh.apply(x);
    let k = wh.components();
    let (white, white_cv) = Logistic::fit_cv(&z, k, &y8, &grid, 5, seed);
    let (ww, wb) = white.affine();
    let (ww, wb) = wh.fold(&ww, wb);
    let preference = paired_z(&plain_cv.held_out, &white_cv.held_out);
    let (weights, bias, input) = match preference {
        Some(z) if z > PROBE_PREFERENCE => (ww, wb, ProbeInput::Whitened(k)),
        Some(z) if z < -PROBE_PREFERENCE => (pw, pb, ProbeInput::Standardised),
        _ => (pw.iter().zip(&ww).map(|(a, b)| (a + b) / 2.0).collect(), (pb + wb) / 2.0, ProbeInput::Both(k)),
    };
    Probe {
        weights: f32s(weights),
        bias: bias as f32,
        input,
        standardised_cv: plain_cv,
        whitened_cv: Some(white_cv),
        preference,
    }
}

/// Up to `max` of the sources' objects outside every split (so never a
/// labelled training, validation or test object), evenly spread: the
/// unlabelled images of self-distillation ([`FinetuneConfig::distill`]).
/// Their labels, where the sources have any, are never read.
pub fn distill_pool(sources: &[&dyn Source], splits: &tidalscope_data::split::Splits, max: usize) -> Vec<ObjectRef> {
    let held: std::collections::HashSet<(usize, usize)> =
        splits.train.iter().chain(&splits.val).chain(&splits.test).map(|o| (o.source, o.index)).collect();
    let free: Vec<ObjectRef> = ObjectRef::every(sources.iter().map(|s| s.info().len))
        .into_iter()
        .filter(|o| !held.contains(&(o.source, o.index)))
        .collect();
    representation::evenly(&free, max)
}

/// Batches of unlabelled images [`measure_batchnorm`] reads at a time.
const BATCHNORM_BATCHES_READ: usize = 16;

/// Replaces `model`'s encoder's BatchNorm running statistics with the
/// mean over batches (of `batch` images) of the batch statistics of the
/// clean inference views of `own`, then of `extra`
/// ([`FinetuneConfig::batchnorm_images`]); the weights do not move.
/// `extra` is read [`BATCHNORM_BATCHES_READ`] batches at a time, so
/// memory holds that many of it. Returns the number of batches.
fn measure_batchnorm(
    model: &mut Classifier,
    own: &[&Cutout],
    extra: &[ObjectRef],
    sources: &[&dyn Source],
    preprocess: &tidalscope_data::preprocess::Preprocess,
    batch: usize,
    device: &Device,
) -> Result<usize> {
    let (crop, batch) = (preprocess.crop, batch.max(1));
    let mut net = tidalscope_model::fast::to_resnet(&model.encoder);
    let mut pass = tidalscope_model::fast::RunningStatsPass::start(&mut net);
    let view = Augment::inference(crop);
    let per = net.bands() * crop * crop;
    // The inference view is deterministic: the generator is not drawn from.
    let mut rng = Rng::new(0);
    let mut buf = Vec::new();
    let total = own.len() + extra.len();
    let read = batch * BATCHNORM_BATCHES_READ;
    for lo in (0..total).step_by(read) {
        let hi = (lo + read).min(total);
        let objects = &extra[lo.saturating_sub(own.len())..hi.saturating_sub(own.len())];
        let loaded = labelled::load(sources, objects, preprocess)?;
        let images = own[lo.min(own.len())..hi.min(own.len())].iter().copied();
        let images: Vec<&Cutout> = images.chain(objects.iter().map(|o| &loaded[o].image)).collect();
        // Whole batches: `read` is a multiple of `batch`.
        for chunk in images.chunks(batch) {
            buf.resize(chunk.len() * per, 0.0);
            for (img, out) in chunk.iter().zip(buf.chunks_exact_mut(per)) {
                view.view(img, &[], &mut rng, out)?;
            }
            pass.add(&mut net, &buf, chunk.len(), crop, crop);
        }
    }
    model.encoder = tidalscope_model::fast::load_resnet(model.encoder.clone(), &net, device);
    Ok(pass.batches())
}

/// One fine-tuning or scratch training run: the classifier, its optimiser
/// and the encoder's fast-kernel copy, stepping through epochs.
struct Fit<'a> {
    cfg: &'a FinetuneConfig,
    model: Classifier,
    optim: burn::optim::ModuleOptimizer,
    trainable: TrainableEncoder,
    aug: Augment,
    sigma: Vec<f32>,
    crop: usize,
    device: &'a Device,
}

impl<'a> Fit<'a> {
    /// Starts from `model` (on the autodiff `device`).
    fn new(cfg: &'a FinetuneConfig, bundle: &EncoderBundle, model: Classifier, device: &'a Device) -> Self {
        let adam = AdamSettings { l2: cfg.weight_decay };
        let trainable = TrainableEncoder::new(cfg.kernels, &model.encoder, adam);
        let crop = bundle.preprocess.crop;
        Self {
            cfg,
            model,
            optim: adam.burn(),
            trainable,
            aug: Augment::training(crop, cfg.noise).with_jitter(cfg.jitter),
            sigma: bundle.preprocess.normalisation.sigma.clone(),
            crop,
            device,
        }
    }

    /// Trains epoch `epoch` (0-based) of `epochs` over `imgs` with targets
    /// `ys`, its order and views drawn from stream `stream` of the run's
    /// seed, the learning rate following the schedule over every step of
    /// the `epochs`; calls `step` with each step's index in the epoch.
    /// Returns the epoch's mean loss. The classifier's encoder is only
    /// current after [`Fit::sync`].
    fn epoch(
        &mut self,
        imgs: &[&Cutout],
        ys: &[f32],
        epoch: usize,
        epochs: usize,
        stream: u64,
        step: &mut dyn FnMut(usize),
    ) -> Result<f32> {
        let (cfg, crop, device) = (self.cfg, self.crop, self.device);
        let steps = imgs.len().div_ceil(cfg.batch.max(1));
        let mut order: Vec<usize> = (0..imgs.len()).collect();
        let mut rng = Rng::for_stream(cfg.seed, stream);
        rng.shuffle(&mut order);
        let mut sum = 0.0;
        for (k, idx) in order.chunks(cfg.batch.max(1)).enumerate() {
            let noise = self.aug.batch_noise(&self.sigma, &mut rng);
            let bands = imgs[0].bands();
            let per = bands * crop * crop;
            let mut buf = vec![0f32; idx.len() * per];
            for (j, &i) in idx.iter().enumerate() {
                self.aug.view(imgs[i], &noise, &mut rng, &mut buf[j * per..(j + 1) * per])?;
            }
            let m = idx.len();
            let h = self.trainable.forward(&self.model.encoder, 0, buf, m, bands, crop, device);
            let logits = self.model.head.forward(h.clone()).reshape([m]);
            let targets: Vec<f32> = idx.iter().map(|&i| ys[i]).collect();
            let l = loss::bce_with_logits(logits, batch::vector(targets, device));
            let gradients = l.backward();
            let lr = cfg.lr * cfg.lr_schedule.factor(epoch * steps + k, epochs * steps);
            self.trainable.backward_step(&gradients, &[&h], lr);
            let grads = GradientsParams::from_grads(gradients, &self.model);
            sum += l.into_scalar::<f32>() * m as f32;
            self.model = self.optim.step(lr, self.model.clone(), grads);
            step(k);
        }
        Ok(sum / imgs.len() as f32)
    }

    /// Brings the classifier's encoder up to date with the trained weights.
    fn sync(&mut self) {
        self.model.encoder = self.trainable.synced(self.model.encoder.clone(), self.device);
    }
}

/// What the path average keeps, in words for reports: "fine-tuning keeps
/// …" ([`FinetuneConfig::path_average`] at [`STOPS`]).
pub const PATH_AVERAGE: &str = "the mean of its weights at six points along its path (its start, then 1/16, 1/8, 1/4, 1/2 and all of its schedule)";

/// The points along fine-tuning's schedule, as fractions of its epochs (0:
/// the linear probe it starts from): where cross-validation may stop it
/// ([`FinetuneConfig::cv_folds`]) and whose weights the path average
/// takes ([`FinetuneConfig::path_average`]). Geometrically spaced, as the
/// network moves fastest early on.
pub const STOPS: [f64; 6] = [0.0, 1.0 / 16.0, 1.0 / 8.0, 0.25, 0.5, 1.0];

/// The epochs of `epochs` a run stops after at each of [`STOPS`]: at
/// least one where the fraction is above 0.
pub fn stop_epochs(epochs: usize) -> Vec<usize> {
    STOPS.iter().map(|&f| if f == 0.0 { 0 } else { ((f * epochs as f64).round() as usize).clamp(1, epochs) }).collect()
}

/// One of [`STOPS`] in words: "none", "1/16", …, "all".
pub fn stop_in_words(f: f64) -> String {
    match f {
        0.0 => "none".into(),
        1.0 => "all".into(),
        _ => format!("1/{}", (1.0 / f).round()),
    }
}

/// What the cross-validation of fine-tuning's stop measured.
#[derive(Debug, Clone, PartialEq)]
pub struct CvStop {
    /// Pooled held-out AUC at each of [`STOPS`].
    pub auc: Vec<f64>,
    /// The index into [`STOPS`] chosen: the highest AUC, the earlier on
    /// a tie.
    pub chosen: usize,
    /// Folds.
    pub folds: usize,
}

/// Cross-validates how far fine-tuning goes ([`FinetuneConfig::cv_folds`]):
/// for each of `k` stratified folds of the labelled `imgs`
/// (targets `ys`, frozen representations `h`, `[n, d]`), the probe is
/// fitted on the other folds, fine-tuning starts from it and runs as many
/// steps as the whole run's `epochs × steps`, and the held-out fold is
/// scored at each of [`STOPS`]; the scores of all folds are pooled.
#[allow(clippy::too_many_arguments)]
fn cv_stop(
    cfg: &FinetuneConfig,
    k: usize,
    encoder_dir: &Path,
    bundle: &EncoderBundle,
    (imgs, ys, h, d): (&[&Cutout], &[f32], &[f32], usize),
    whitening: Option<&Whitening>,
    (epochs, steps): (usize, usize),
    (train_device, device): (&Device, &Device),
    reporter: &dyn Reporter,
) -> Result<CvStop> {
    let y8: Vec<u8> = ys.iter().map(|&v| (v > 0.5) as u8).collect();
    let fold = tidalscope_eval::logistic::stratified_folds(&y8, k, cfg.seed ^ streams::FINETUNE_FOLD);
    let mut scores = vec![vec![0f64; ys.len()]; STOPS.len()];
    let batch = cfg.batch.max(1);
    let fold_steps: Vec<usize> = (0..k)
        .map(|f| {
            let n = fold.iter().filter(|&&g| g != f).count().max(1);
            (epochs * steps).div_ceil(n.div_ceil(batch)) * n.div_ceil(batch)
        })
        .collect();
    reporter.start("cross-validation", fold_steps.iter().sum::<usize>().max(1) as u64);
    let mut done = 0u64;
    for (f, &total) in fold_steps.iter().enumerate() {
        let (fit_idx, held): (Vec<usize>, Vec<usize>) = (0..ys.len()).partition(|&i| fold[i] != f);
        if fit_idx.is_empty() || held.is_empty() {
            continue;
        }
        let sub_h: Vec<f32> = fit_idx.iter().flat_map(|&i| h[i * d..(i + 1) * d].iter().copied()).collect();
        let sub_y: Vec<f32> = fit_idx.iter().map(|&i| ys[i]).collect();
        let probe = linear_probe(&sub_h, d, &sub_y, cfg.seed, whitening);
        let held_h: Vec<f32> = held.iter().flat_map(|&i| h[i * d..(i + 1) * d].iter().copied()).collect();
        for (&i, l) in held.iter().zip(infer::head_logits(&held_h, &probe.weights, probe.bias)) {
            scores[0][i] = l as f64;
        }
        let model = Classifier {
            encoder: EncoderBundle::load(encoder_dir, train_device)?.encoder,
            head: ClassifierConfig::head_with(&probe.weights, probe.bias, train_device),
        };
        let mut fit = Fit::new(cfg, bundle, model, train_device);
        let fit_imgs: Vec<&Cutout> = fit_idx.iter().map(|&i| imgs[i]).collect();
        let held_imgs: Vec<&Cutout> = held.iter().map(|&i| imgs[i]).collect();
        let fold_epochs = total / fit_imgs.len().div_ceil(batch);
        let stops = stop_epochs(fold_epochs);
        for epoch in 0..fold_epochs {
            let stream = streams::FINETUNE_FOLD + ((f as u64) << 24) + epoch as u64;
            fit.epoch(&fit_imgs, &sub_y, epoch, fold_epochs, stream, &mut |_| {
                done += 1;
                reporter.step(done, &format!("fold {}/{k}", f + 1));
            })?;
            if !stops.contains(&(epoch + 1)) {
                continue;
            }
            fit.sync();
            let logits = infer::Predictor::classifier(&fit.model.valid(), fit.crop, device).logits(&held_imgs)?;
            for (s, _) in stops.iter().enumerate().filter(|(_, &e)| e == epoch + 1) {
                for (&i, &l) in held.iter().zip(&logits) {
                    scores[s][i] = l as f64;
                }
            }
        }
    }
    reporter.finish();
    let auc: Vec<f64> =
        scores.iter().map(|s| tidalscope_eval::metrics::roc(s, &y8).map(|r| r.auc()).unwrap_or(f64::NAN)).collect();
    // The first of the highest: an earlier stop stays nearer the probe.
    let chosen = (0..auc.len()).fold(0, |best, j| if auc[j] > auc[best] { j } else { best });
    Ok(CvStop { auc, chosen, folds: k })
}

/// The whitening the probe offers itself (see [`linear_probe`]): the
/// encoder folder's spectrum (`pretrain` writes it), or one measured on
/// the training data's images outside the validation and test splits.
fn probe_whitening(
    cfg: &FinetuneConfig,
    encoder_dir: &Path,
    bundle: &EncoderBundle,
    sources: &[&dyn Source],
    splits: &tidalscope_data::split::Splits,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Whitening> {
    let (spectrum, whence) = match representation::load(encoder_dir, bundle.config.repr_dim)? {
        Some(s) => (s, format!("{} in the encoder folder", representation::FILE)),
        None => {
            let held: std::collections::HashSet<(usize, usize)> =
                splits.val.iter().chain(&splits.test).map(|o| (o.source, o.index)).collect();
            let pool: Vec<ObjectRef> = ObjectRef::every(sources.iter().map(|s| s.info().len))
                .into_iter()
                .filter(|o| !held.contains(&(o.source, o.index)))
                .collect();
            let s = representation::measure(&bundle.encoder, &bundle.preprocess, sources, &pool, device)?;
            (s, "the training data's images outside the validation and test splits (the encoder folder has no spectrum)".into())
        }
    };
    let w = spectrum
        .whitening(cfg.probe_variance)
        .map_err(|e| crate::TrainError::Other(format!("probe_variance {}: {e}", cfg.probe_variance)))?;
    let msg = format!(
        "probe whitening: {} leading principal components hold {:.1}% of the variance of {} unlabelled images' representations ({whence})",
        w.components(),
        100.0 * w.variance_kept,
        spectrum.objects
    );
    reporter.log(&msg);
    Ok(w)
}

/// Trains a classifier from the encoder folder `encoder_dir` on `sources`
/// (see [`labelled::make_split`]); `source_paths` are recorded in
/// `split.json` for `evaluate`.
pub fn finetune(
    cfg: &FinetuneConfig,
    encoder_dir: &Path,
    sources: &[&dyn Source],
    source_paths: &[PathBuf],
    out: &Path,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<FinetuneSummary> {
    let t0 = std::time::Instant::now();
    if cfg.jitter.core_mask > 0.0 || cfg.jitter.neighbours > 0.0 {
        // A classifier sees whole cutouts at inference: training it on
        // masked ones would teach it to ignore what it is asked about.
        return Err(crate::TrainError::Other(format!(
            "finetune views must not mask the image (core mask {}, neighbour mask {}): set both to 0",
            cfg.jitter.core_mask, cfg.jitter.neighbours
        )));
    }
    FinetuneConfig::check_probe_variance(cfg.probe_variance)
        .map_err(|e| crate::TrainError::Other(format!("probe_variance {}: {e}", cfg.probe_variance)))?;
    FinetuneConfig::check_interpolation(cfg.interpolation)
        .map_err(|e| crate::TrainError::Other(format!("interpolation {}: {e}", cfg.interpolation)))?;
    if cfg.mode != Mode::Finetune && cfg.interpolation != 1.0 {
        let why = if cfg.mode == Mode::Scratch {
            "training from scratch has no pretrained weights to interpolate from (use 1)"
        } else {
            "the linear probe trains no weights to interpolate (use 1, or fine-tuning)"
        };
        return Err(crate::TrainError::Other(format!("interpolation {}: {why}", cfg.interpolation)));
    }
    if let Some(k) = cfg.cv_folds {
        FinetuneConfig::check_cv_folds(k, cfg.mode)
            .map_err(|e| crate::TrainError::Other(format!("cv_folds {k}: {e}")))?;
    }
    cfg.check_path_average()
        .map_err(|e| crate::TrainError::Other(format!("path_average {}: {e}", cfg.path_average.unwrap_or(false))))?;
    if cfg.mode != Mode::Finetune && cfg.distill > 0 {
        return Err(crate::TrainError::Other(format!(
            "distill {}: only fine-tuning learns from the probe's soft targets (use 0, or fine-tuning)",
            cfg.distill
        )));
    }
    let splits = labelled::make_split(sources, &cfg.split, cfg.labels, cfg.seed)?;
    let pool = if cfg.distill > 0 { distill_pool(sources, &splits, cfg.distill) } else { Vec::new() };
    if cfg.distill > 0 && pool.is_empty() {
        return Err(crate::TrainError::Other(format!(
            "distill {}: no unlabelled images: every object is in the training, validation or test split",
            cfg.distill
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| tidalscope_io::Error::io(out, e))?;
    let train_device = device.clone().autodiff();
    let kernels = cfg.kernels.resolve(device);
    // Run folders record what ran: the kernels and the folds resolved.
    let cv_folds = cfg.resolved_cv_folds(splits.train.len());
    let path_average = cfg.resolved_path_average(splits.train.len());
    let batchnorm_images = cfg.resolved_batchnorm_images();
    let cfg = &FinetuneConfig {
        kernels,
        cv_folds: Some(cv_folds),
        path_average: Some(path_average),
        batchnorm_images: Some(batchnorm_images),
        ..cfg.clone()
    };
    let bundle = EncoderBundle::load(encoder_dir, device)?;
    let record = SplitRecord {
        sources: source_paths.to_vec(),
        lengths: sources.iter().map(|s| s.info().len).collect(),
        spec: cfg.split.clone(),
        labels: cfg.labels,
        seed: cfg.seed,
        splits: splits.clone(),
    };
    record.save(&out.join("split.json"))?;
    write_toml(&out.join("config.toml"), cfg)?;
    let all: Vec<ObjectRef> = splits.train.iter().chain(&splits.val).chain(&splits.test).copied().collect();
    let data = labelled::load(sources, &all, &bundle.preprocess)?;
    let msg = format!(
        "finetune ({:?}): {} train ({} tidal), {} validation, {} test objects; at least {} epochs and {} steps, batch {}",
        cfg.mode,
        splits.train.len(),
        splits.train.iter().filter(|o| o.label == 1).count(),
        splits.val.len(),
        splits.test.len(),
        cfg.epochs,
        cfg.min_steps,
        cfg.batch
    );
    reporter.log(&msg);
    let crop = bundle.preprocess.crop;
    let images = |set: &[ObjectRef]| -> Vec<&Cutout> { set.iter().map(|o| &data[o].image).collect() };
    let labels = |set: &[ObjectRef]| -> Vec<f32> { set.iter().map(|o| o.label as f32).collect() };
    let (train_y, val_y) = (labels(&splits.train), labels(&splits.val));
    let mut train_loss = Vec::with_capacity(cfg.epochs);
    let mut val_loss = Vec::with_capacity(cfg.epochs.min(VAL_LOGS));
    let mut val_epochs = Vec::with_capacity(cfg.epochs.min(VAL_LOGS));
    // Fine-tuning's training set: the labelled objects, then the pool.
    let fit_len = splits.train.len() + pool.len();
    let steps = fit_len.div_ceil(cfg.batch.max(1));
    // The probe has no epochs; the others run at least `min_steps` steps.
    let epochs = match cfg.mode {
        Mode::Linear => 0,
        _ => cfg.epochs.max(cfg.min_steps.div_ceil(steps.max(1))),
    };
    if epochs != cfg.epochs && cfg.mode != Mode::Linear {
        log_line(out, &format!("{epochs} epochs ({} steps) to reach at least {} steps", epochs * steps, cfg.min_steps));
    }
    // Representations of the frozen encoder (the probe's features, and the
    // start of fine-tuning's head).
    let frozen = infer::Predictor::encoder(&bundle.encoder, crop, device);
    let embed = |set: &[ObjectRef]| frozen.embed(&images(set));
    let d = bundle.config.repr_dim;
    let train_h = if cfg.mode == Mode::Scratch { Vec::new() } else { embed(&splits.train)? };
    let whitening = if cfg.mode != Mode::Scratch && cfg.probe_variance > 0.0 {
        Some(probe_whitening(cfg, encoder_dir, &bundle, sources, &splits, device, reporter)?)
    } else {
        None
    };
    let probe = if cfg.mode == Mode::Scratch {
        None
    } else {
        let p = linear_probe(&train_h, d, &train_y, cfg.seed, whitening.as_ref());
        reporter.log(&p.describe());
        Some(p)
    };
    // Self-distillation: unlabelled images with the probe's probabilities
    // as soft targets join the labelled ones (fine-tuning only).
    let (pool_data, pool_y) = match &probe {
        Some(Probe { weights: w, bias: b, .. }) if !pool.is_empty() => {
            let pool_data = labelled::load(sources, &pool, &bundle.preprocess)?;
            let imgs: Vec<&Cutout> = pool.iter().map(|o| &pool_data[o].image).collect();
            let p: Vec<f32> = infer::head_logits(&frozen.embed(&imgs)?, w, *b)
                .into_iter()
                .map(|l| 1.0 / (1.0 + (-l).exp()))
                .collect();
            let msg = format!(
                "self-distillation: {} unlabelled images with the probe's probabilities as targets (mean {:.3})",
                pool.len(),
                p.iter().map(|&v| v as f64).sum::<f64>() / p.len().max(1) as f64
            );
            reporter.log(&msg);
            (pool_data, p)
        }
        _ => (Default::default(), Vec::new()),
    };
    let mut kept_val_loss = None;
    let mut cv_chosen = None;
    let mut path_points = None;
    let labelled_imgs = images(&splits.train);
    // How far to go: the whole schedule, or as far as
    // cross-validation on the labels says.
    let stop = if cfg.mode == Mode::Finetune && cv_folds >= 2 {
        let t = std::time::Instant::now();
        let data = (&labelled_imgs[..], &train_y[..], &train_h[..], d);
        let devices = (&train_device, device);
        let cv =
            cv_stop(cfg, cv_folds, encoder_dir, &bundle, data, whitening.as_ref(), (epochs, steps), devices, reporter)?;
        let stop = stop_epochs(epochs)[cv.chosen];
        let table: Vec<String> = STOPS
            .iter()
            .zip(&cv.auc)
            .map(|(&f, a)| match f {
                0.0 => format!("the probe {a:.3}"),
                _ => format!("{} of the schedule {a:.3}", stop_in_words(f)),
            })
            .collect();
        let chosen = if stop == 0 {
            "the linear probe, not fine-tuned".to_string()
        } else {
            format!("{stop} of {epochs} epochs")
        };
        let msg = format!(
            "fine-tuning's stop by {}-fold cross-validation on the {} training labels ({:.1} s), pooled held-out AUC: {}; chosen: {chosen}",
            cv.folds,
            splits.train.len(),
            t.elapsed().as_secs_f64(),
            table.join(", "),
        );
        reporter.log(&msg);
        cv_chosen = Some(cv);
        stop
    } else {
        epochs
    };
    // The probe as the classifier (its losses recorded as one epoch's, its
    // cross-validation curve in probe_cv.npy).
    let probe_only = |train_loss: &mut Vec<f32>, val_loss: &mut Vec<f32>, val_epochs: &mut Vec<usize>| {
        reporter.start("finetune", 1);
        let p = probe.as_ref().expect("the probe runs unless training from scratch");
        let (w, b, cv) = (&p.weights, &p.bias, p.cv());
        // The representations are those the probe was fitted on.
        let logits = |h: &[f32]| infer::head_logits(h, w, *b);
        train_loss.push(bce(logits(&train_h), &train_y, device));
        val_epochs.push(1);
        val_loss.push(if splits.val.is_empty() { f32::NAN } else { bce(logits(&embed(&splits.val)?), &val_y, device) });
        log_line(out, &format!("probe: train loss {:.4}, validation loss {:.4}", train_loss[0], val_loss[0]));
        write_npy(
            &out.join("probe_cv.npy"),
            &cv.grid.iter().zip(&cv.loss).flat_map(|(g, l)| [*g as f32, *l as f32]).collect::<Vec<_>>(),
            &[cv.grid.len(), 2],
        )?;
        Ok::<_, crate::TrainError>(Classifier {
            encoder: bundle.encoder.clone(),
            head: ClassifierConfig::head_with(w, *b, device),
        })
    };
    let classifier = match cfg.mode {
        // The probe, asked for or kept by cross-validation (which chose
        // not to fine-tune at all).
        Mode::Linear => probe_only(&mut train_loss, &mut val_loss, &mut val_epochs)?,
        Mode::Finetune if stop == 0 => probe_only(&mut train_loss, &mut val_loss, &mut val_epochs)?,
        Mode::Finetune | Mode::Scratch => {
            train_device.seed(cfg.seed);
            let encoder = if cfg.mode == Mode::Scratch {
                bundle.config.init(&train_device)
            } else {
                EncoderBundle::load(encoder_dir, &train_device)?.encoder
            };
            let head = match &probe {
                Some(p) => ClassifierConfig::head_with(&p.weights, p.bias, &train_device),
                None => ClassifierConfig::head(bundle.config.repr_dim, &train_device),
            };
            let model = Classifier { encoder, head };
            reporter.start("finetune", (stop * steps).max(1) as u64);
            if stop > VAL_LOGS {
                log_line(
                    out,
                    &format!(
                        "validation loss after {VAL_LOGS} of the {stop} epochs, evenly spread, the last among them"
                    ),
                );
            }
            let train_imgs: Vec<&Cutout> =
                labelled_imgs.iter().copied().chain(pool.iter().map(|o| &pool_data[o].image)).collect();
            let fit_y: Vec<f32> = train_y.iter().chain(&pool_y).copied().collect();
            let val_imgs = images(&splits.val);
            // A classifier's validation loss (NaN without a validation set).
            let val_loss_of = |m: &Classifier| -> Result<f32> {
                if val_imgs.is_empty() {
                    return Ok(f32::NAN);
                }
                Ok(bce(infer::Predictor::classifier(m, crop, device).logits(&val_imgs)?, &val_y, device))
            };
            let mut fit = Fit::new(cfg, &bundle, model, &train_device);
            // The path average starts where fine-tuning does, on a fresh copy
            // of the encoder: averaging writes into the running statistics of
            // the module it returns, which must be shared with nothing else.
            let mut average = match &probe {
                Some(p) if path_average => Some(RunningMean::new(Classifier {
                    encoder: EncoderBundle::load(encoder_dir, device)?.encoder,
                    head: ClassifierConfig::head_with(&p.weights, p.bias, device),
                })),
                _ => None,
            };
            let points = stop_epochs(epochs);
            for epoch in 0..stop {
                let stream = streams::FINETUNE_EPOCH + epoch as u64;
                let at = |k: usize| (epoch * steps + k + 1) as u64;
                let l = fit.epoch(&train_imgs, &fit_y, epoch, epochs, stream, &mut |k| {
                    reporter.step(at(k), &format!("epoch {}/{stop}", epoch + 1))
                })?;
                train_loss.push(l);
                let times = points.iter().filter(|&&e| e == epoch + 1).count();
                if let Some(avg) = average.take_if(|_| times > 0) {
                    fit.sync();
                    average = Some(avg.add(&fit.model.valid(), times).map_err(crate::TrainError::Other)?);
                }
                // The last epoch is always measured, so the model leaves
                // the loop synced.
                if !measures_validation(epoch + 1, stop) {
                    log_line(out, &format!("epoch {}: train loss {:.4}", epoch + 1, train_loss[epoch]));
                    continue;
                }
                fit.sync();
                let v = val_loss_of(&fit.model.valid())?;
                val_loss.push(v);
                val_epochs.push(epoch + 1);
                log_line(
                    out,
                    &format!("epoch {}: train loss {:.4}, validation loss {:.4}", epoch + 1, train_loss[epoch], v),
                );
            }
            // The path average lives on the inference device, the trained
            // model on the autodiff one.
            path_points = average.as_ref().map(|a| a.count());
            let (mut model, model_device) = match average {
                Some(avg) => {
                    let points = avg.count();
                    let mean = avg.into_mean();
                    let v = val_loss_of(&mean)?;
                    kept_val_loss = Some(v);
                    let msg = format!(
                        "kept the mean of the weights at {points} points along fine-tuning (its start, then 1/16, 1/8, 1/4, 1/2 and all of its {epochs} epochs): validation loss {v:.4}"
                    );
                    log_line(out, &msg);
                    (mean, device)
                }
                None => (fit.model, &train_device),
            };
            if batchnorm_images > 0 {
                let t = std::time::Instant::now();
                // The labelled images, then unlabelled ones outside every
                // split (which hold any distillation images: not taken twice).
                let own = &train_imgs[..splits.train.len().min(batchnorm_images)];
                let extra = distill_pool(sources, &splits, batchnorm_images - own.len());
                let (pre, batch) = (&bundle.preprocess, cfg.batch);
                let batches = measure_batchnorm(&mut model, own, &extra, sources, pre, batch, model_device)?;
                let v = val_loss_of(&model.valid())?;
                kept_val_loss = Some(v);
                let msg = format!(
                    "BatchNorm statistics measured on the inference views of {} training images ({} unlabelled), {batches} batches ({:.1} s): validation loss {v:.4}",
                    own.len() + extra.len(),
                    extra.len(),
                    t.elapsed().as_secs_f64()
                );
                // The command line's reporter writes it to log.txt too.
                reporter.log(&msg);
            }
            let trained = if path_points.is_some() { model } else { model.valid() };
            match &probe {
                Some(Probe { weights: w, bias: b, .. }) if cfg.interpolation < 1.0 => {
                    let start = Classifier {
                        encoder: bundle.encoder.clone(),
                        head: ClassifierConfig::head_with(w, *b, device),
                    };
                    let mixed = tidalscope_model::params::interpolated(&start, trained, cfg.interpolation as f32)
                        .map_err(crate::TrainError::Other)?;
                    let v = val_loss_of(&mixed)?;
                    log_line(
                        out,
                        &format!(
                            "weights {} of the way from the pretrained encoder with the probe's head to the fine-tuned ones: validation loss {v:.4}",
                            cfg.interpolation
                        ),
                    );
                    kept_val_loss = Some(v);
                    mixed
                }
                _ => trained,
            }
        }
    };
    reporter.finish();
    let out_bundle = ClassifierBundle {
        config: ClassifierConfig::new(bundle.config.clone()),
        classifier,
        preprocess: bundle.preprocess.clone(),
    };
    out_bundle.save(out)?;
    write_npy(&out.join("Train_loss.npy"), &train_loss, &[train_loss.len()])?;
    write_npy(&out.join("Val_loss.npy"), &val_loss, &[val_loss.len()])?;
    let at: Vec<f32> = val_epochs.iter().map(|&e| e as f32).collect();
    write_npy(&out.join("Val_epochs.npy"), &at, &[at.len()])?;
    match &probe {
        // The probe has no epochs: its picture is the cross-validation that
        // chose its L2 strength, for each input it tried.
        Some(p) if (cfg.mode == Mode::Linear || stop == 0) && p.standardised_cv.folds > 0 => {
            let mut curves = vec![("standardised representation", &p.standardised_cv)];
            curves.extend(p.whitened_cv.as_ref().map(|w| ("whitened components", w)));
            let top = curves
                .iter()
                .flat_map(|(_, cv)| cv.loss.iter().copied())
                .filter(|l| l.is_finite())
                .fold(0.0f64, f64::max);
            let kept = match p.input {
                ProbeInput::Standardised => "the standardised representation kept".to_string(),
                ProbeInput::Whitened(k) => format!("{k} whitened components kept"),
                ProbeInput::Both(k) => format!("both averaged ({k} whitened components)"),
            };
            let mut axes = Axes::new(
                format!("linear probe: {}-fold cross-validation; {kept}", p.standardised_cv.folds),
                "L2 strength λ",
                "held-out log-loss",
            );
            axes.x_log = true;
            axes.y_range = Some((0.0, top * 1.1 + 1e-3));
            let series: Vec<Series> = curves
                .into_iter()
                .enumerate()
                .map(|(i, (name, cv))| {
                    let mut s = Series::line(name, cv.grid.clone(), cv.loss.clone(), PALETTE[i]);
                    s.markers = true;
                    s
                })
                .collect();
            line_plot(&out.join("loss.png"), &axes, &series)?;
        }
        _ => {
            let x: Vec<f64> = (1..=train_loss.len()).map(|e| e as f64).collect();
            let mut axes = Axes::new(
                format!("classifier training ({:?})", cfg.mode).to_lowercase(),
                "epoch",
                "binary cross-entropy",
            );
            if x.len() == 1 {
                axes.x_range = Some((0.5, 1.5));
            }
            // The classifier kept when it is not the last step's (the path's
            // mean, fresh BatchNorm statistics, interpolated): its validation
            // loss as a level across the run, to read against the curve.
            let kept = kept_val_loss.filter(|v| v.is_finite());
            axes.y_range = Some((
                0.0,
                train_loss.iter().chain(&val_loss).chain(&kept).filter(|v| v.is_finite()).fold(0.0f32, |a, &b| a.max(b))
                    as f64
                    * 1.1
                    + 1e-3,
            ));
            let kept = kept.map(|v| {
                let label = match path_points {
                    Some(n) => format!("validation loss of the kept mean of {n} points along the path"),
                    None => "validation loss of the classifier kept".to_string(),
                };
                Series::line(label, vec![1.0, train_loss.len().max(1) as f64], vec![v as f64; 2], PALETTE[2])
            });
            line_plot(
                &out.join("loss.png"),
                &axes,
                &[
                    Series::line(
                        // Against soft targets the loss cannot reach 0.
                        if pool.is_empty() { "training loss" } else { "training loss (labels and soft targets)" },
                        x,
                        train_loss.iter().map(|&v| v as f64).collect(),
                        PALETTE[0],
                    ),
                    Series::line(
                        "validation loss",
                        val_epochs.iter().map(|&e| e as f64).collect(),
                        val_loss.iter().map(|&v| v as f64).collect(),
                        PALETTE[1],
                    ),
                ]
                .into_iter()
                .chain(kept)
                .collect::<Vec<_>>(),
            )?;
        }
    }
    Ok(FinetuneSummary {
        train_loss,
        val_loss,
        val_epochs,
        kept_val_loss,
        cv: cv_chosen,
        path_points,
        batchnorm_images,
        sizes: (splits.train.len(), splits.val.len(), splits.test.len()),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidalscope_eval::whiten::Spectrum;

    /// `n` representations of 20 numbers: four that vary widely (sd 10)
    /// and sixteen that barely do (sd 0.1); the label is the sign of
    /// `signal` (one of them) plus a little noise, so that even the best
    /// classifier is right only 1 - atan(0.3)/pi = 91% of the time.
    fn data(n: usize, signal: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = Rng::new(seed);
        let (mut x, mut y) = (Vec::with_capacity(n * 20), Vec::with_capacity(n));
        for _ in 0..n {
            let row: Vec<f64> = (0..20).map(|j| if j < 4 { 10.0 } else { 0.1 } * rng.normal()).collect();
            let sd = if signal < 4 { 10.0 } else { 0.1 };
            y.push((row[signal] / sd + 0.3 * rng.normal() > 0.0) as u8 as f32);
            x.extend(row.iter().map(|&v| v as f32));
        }
        (x, y)
    }

    fn accuracy(p: &Probe, x: &[f32], y: &[f32]) -> f64 {
        let logits = infer::head_logits(x, &p.weights, p.bias);
        logits.iter().zip(y).filter(|(l, t)| (**l > 0.0) == (**t > 0.5)).count() as f64 / y.len() as f64
    }

    #[test]
    fn cross_validated_stops_are_whole_epochs_along_the_schedule() {
        assert_eq!(stop_epochs(167), vec![0, 10, 21, 42, 84, 167]);
        // Short runs: every stop past the probe trains at least one epoch.
        assert_eq!(stop_epochs(3), vec![0, 1, 1, 1, 2, 3]);
        assert_eq!(stop_epochs(1), vec![0, 1, 1, 1, 1, 1]);
        let words: Vec<String> = STOPS.iter().map(|&f| stop_in_words(f)).collect();
        assert_eq!(words, ["none", "1/16", "1/8", "1/4", "1/2", "all"]);
    }

    #[test]
    fn the_probe_keeps_the_input_that_cross_validates_clearly_better_else_averages() {
        let (pool, _) = data(4000, 0, 1);
        let w = Spectrum::fit(&pool, 20).unwrap().whitening(0.95).unwrap();
        assert_eq!(w.components(), 4, "the four wide directions hold 99.96% of the variance");
        // Many labels, signal in a wide direction: the 4 whitened components
        // beat 20 standardised numbers clearly, and the folded head works on
        // raw input.
        let (x, y) = data(400, 1, 2);
        let p = linear_probe(&x, 20, &y, 1, Some(&w));
        assert_eq!(p.input, ProbeInput::Whitened(4), "{}", p.describe());
        assert!(p.preference.unwrap() > PROBE_PREFERENCE);
        assert_eq!(p.cv(), p.whitened_cv.as_ref().unwrap());
        let (xt, yt) = data(2000, 1, 3);
        assert!(accuracy(&p, &xt, &yt) > 0.8, "accuracy {}", accuracy(&p, &xt, &yt));
        // Signal in a narrow direction the whitening drops: the standardised
        // representation is kept.
        let (x, y) = data(200, 9, 4);
        let p = linear_probe(&x, 20, &y, 1, Some(&w));
        assert_eq!(p.input, ProbeInput::Standardised, "{}", p.describe());
        assert!(p.preference.unwrap() < -PROBE_PREFERENCE);
        let (xt, yt) = data(2000, 9, 5);
        assert!(accuracy(&p, &xt, &yt) > 0.8, "accuracy {}", accuracy(&p, &xt, &yt));
        // Without a whitening only the standardised representation is tried.
        let p = linear_probe(&x, 20, &y, 1, None);
        assert_eq!((p.input, p.preference), (ProbeInput::Standardised, None));
        assert!(p.whitened_cv.is_none());
        // Few labels, signal shared by a wide direction (which the whitening
        // keeps) and a narrow one (which it drops): neither input is clearly
        // better, and the head is the mean of the two inputs' heads, each
        // fitted on its own.
        let (x, _) = data(40, 0, 7);
        let y: Vec<f32> = x.chunks_exact(20).map(|r| (r[1] / 10.0 + r[9] / 0.1 > 0.0) as u8 as f32).collect();
        let p = linear_probe(&x, 20, &y, 1, Some(&w));
        assert!(p.preference.unwrap().abs() <= PROBE_PREFERENCE, "{}", p.describe());
        assert_eq!(p.input, ProbeInput::Both(4), "{}", p.describe());
        let plain = linear_probe(&x, 20, &y, 1, None);
        let x64: Vec<f64> = w.apply(&x);
        let y8: Vec<u8> = y.iter().map(|&v| v as u8).collect();
        let (white, _) = Logistic::fit_cv(&x64, 4, &y8, &default_grid(), 5, 1);
        let (ww, wb) = white.affine();
        let (ww, wb) = w.fold(&ww, wb);
        for (j, (&got, (&a, &b))) in p.weights.iter().zip(plain.weights.iter().zip(&ww)).enumerate() {
            let mean = (a as f64 + b) / 2.0;
            assert!((got as f64 - mean).abs() <= 1e-6 * mean.abs().max(1e-3), "weight {j}");
        }
        assert!((p.bias as f64 - (plain.bias as f64 + wb) / 2.0).abs() < 1e-6);
        assert!(p.describe().contains("the mean of two heads"), "{}", p.describe());
    }

    #[test]
    fn paired_preference_is_the_mean_difference_in_standard_errors() {
        // Differences 1, 2, 3: mean 2, sd 1, standard error 1/√3.
        let z = paired_z(&[2.0, 4.0, 6.0], &[1.0, 2.0, 3.0]).unwrap();
        assert!((z - 2.0 * 3f64.sqrt()).abs() < 1e-12, "{z}");
        assert_eq!(paired_z(&[1.0], &[0.0]), None);
        assert_eq!(paired_z(&[1.0, 1.0], &[1.0, 1.0]), Some(0.0));
        assert_eq!(paired_z(&[1.0, 1.0], &[0.0, 0.0]), Some(f64::INFINITY));
        assert_eq!(paired_z(&[1.0, f64::NAN], &[0.0, 0.0]), None);
    }
}

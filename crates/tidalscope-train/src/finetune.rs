//! The classifier: encoder + Dense(1, sigmoid) on a labelled split, as
//!
//! * a **linear probe**: the frozen encoder's representations computed once,
//!   standardised, and an L2-regularised logistic regression fitted to
//!   convergence (Newton/IRLS) with the L2 strength chosen by stratified
//!   cross-validation on the training labels alone — no labelled data
//!   beyond those given is used; then folded into the Dense(1) head;
//! * **fine-tuning** everything (the reference's choice, with its
//!   augmentations, or with stronger views: [`FinetuneConfig::jitter`])
//!   with binary cross-entropy and Adam, starting the head
//!   from that probe (linear probing then fine-tuning, Kumar et al. 2022,
//!   so the encoder is not pulled around by a random head);
//! * **scratch**: the same architecture from random weights.
//!
//! Fine-tuning and scratch run at least [`FinetuneConfig::min_steps`]
//! optimisation steps (more epochs when the labels are few), so 50 labels
//! do not mean 30 steps, at a constant learning rate or one that falls to
//! zero along half a cosine ([`FinetuneConfig::lr_schedule`]).
//!
//! A run folder holds the classifier folder (`classifier.json`,
//! `classifier.bpk`, `preprocess.json`), `split.json`, `config.toml`,
//! `Train_loss.npy` and `Val_loss.npy` (per epoch, as the reference wrote
//! them; one value each for the probe), `loss.png` (the probe: its
//! cross-validation curve, also in `probe_cv.npy` as [λ, loss] rows) and
//! `log.txt`.
//!
//! On the CPU the encoder runs on the fast kernels (`tidalscope_model::fast`)
//! in every mode; when it trains, the Dense(1) head and the loss stay in
//! burn and ∂L/∂h passes between the two.

use crate::config::{FinetuneConfig, Mode};
use crate::labelled::{self, SplitRecord};
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
use tidalscope_io::source::Source;
use tidalscope_model::bundle::{ClassifierBundle, EncoderBundle};
use tidalscope_model::classifier::{Classifier, ClassifierConfig};
use tidalscope_model::trainable::{AdamSettings, TrainableEncoder};
use tidalscope_model::{batch, infer, loss};

/// What a fine-tuning run did.
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneSummary {
    /// Mean training loss of each epoch.
    pub train_loss: Vec<f32>,
    /// Validation loss after each epoch.
    pub val_loss: Vec<f32>,
    /// (train, val, test) sizes.
    pub sizes: (usize, usize, usize),
    /// Wall time.
    pub seconds: f64,
}

/// Mean binary cross-entropy of logits against labels (no gradient).
fn bce(logits: Vec<f32>, labels: &[f32], device: &Device) -> f32 {
    loss::bce_with_logits(batch::vector(logits, device), batch::vector(labels.to_vec(), device)).into_scalar::<f32>()
}

/// The converged linear probe on `n` representations `x` (`[n, d]`
/// row-major) with labels `y`: (weights, bias) of a Dense(1) head on the
/// raw representation, and the cross-validation that chose its L2.
pub fn linear_probe(x: &[f32], d: usize, y: &[f32], seed: u64) -> (Vec<f32>, f32, CvReport) {
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let y8: Vec<u8> = y.iter().map(|&v| (v > 0.5) as u8).collect();
    let (model, report) = Logistic::fit_cv(&x64, d, &y8, &default_grid(), 5, seed);
    let (w, b) = model.affine();
    (w.into_iter().map(|v| v as f32).collect(), b as f32, report)
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
    std::fs::create_dir_all(out).map_err(|e| tidalscope_io::Error::io(out, e))?;
    let train_device = device.clone().autodiff();
    let kernels = cfg.kernels.resolve(device);
    let cfg = &FinetuneConfig { kernels, ..cfg.clone() };
    let bundle = EncoderBundle::load(encoder_dir, device)?;
    let splits = labelled::make_split(sources, &cfg.split, cfg.labels, cfg.seed)?;
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
    log_line(out, &msg);
    let crop = bundle.preprocess.crop;
    let images = |set: &[ObjectRef]| -> Vec<&Cutout> { set.iter().map(|o| &data[o].image).collect() };
    let labels = |set: &[ObjectRef]| -> Vec<f32> { set.iter().map(|o| o.label as f32).collect() };
    let (train_y, val_y) = (labels(&splits.train), labels(&splits.val));
    let mut train_loss = Vec::with_capacity(cfg.epochs);
    let mut val_loss = Vec::with_capacity(cfg.epochs);
    let steps = splits.train.len().div_ceil(cfg.batch.max(1));
    // The probe has no epochs; the others run at least `min_steps` steps.
    let epochs = match cfg.mode {
        Mode::Linear => 0,
        _ => cfg.epochs.max(cfg.min_steps.div_ceil(steps.max(1))),
    };
    if epochs != cfg.epochs && cfg.mode != Mode::Linear {
        log_line(out, &format!("{epochs} epochs ({} steps) to reach at least {} steps", epochs * steps, cfg.min_steps));
    }
    reporter.start("finetune", (epochs * steps).max(1) as u64);
    // Representations of the frozen encoder (the probe's features, and the
    // start of fine-tuning's head).
    let frozen = infer::Predictor::encoder(&bundle.encoder, crop, device);
    let embed = |set: &[ObjectRef]| frozen.embed(&images(set));
    let d = bundle.config.repr_dim;
    let train_h = if cfg.mode == Mode::Scratch { Vec::new() } else { embed(&splits.train)? };
    let probe = if cfg.mode == Mode::Scratch {
        None
    } else {
        let (w, b, cv) = linear_probe(&train_h, d, &train_y, cfg.seed);
        let msg = format!(
            "linear probe: L2 λ = {:.3} chosen by {}-fold cross-validation (held-out log-loss {:.4}; grid {:.0e}–{:.0e})",
            cv.chosen,
            cv.folds,
            cv.loss[cv.grid.iter().position(|&g| g == cv.chosen).unwrap_or(0)],
            cv.grid[0],
            cv.grid[cv.grid.len() - 1]
        );
        reporter.log(&msg);
        log_line(out, &msg);
        Some((w, b, cv))
    };
    let classifier = match cfg.mode {
        Mode::Linear => {
            let (w, b, cv) = probe.as_ref().expect("the probe runs in linear mode");
            // The representations are those the probe was fitted on.
            let logits = |h: &[f32]| infer::head_logits(h, w, *b);
            train_loss.push(bce(logits(&train_h), &train_y, device));
            val_loss.push(if splits.val.is_empty() {
                f32::NAN
            } else {
                bce(logits(&embed(&splits.val)?), &val_y, device)
            });
            log_line(out, &format!("probe: train loss {:.4}, validation loss {:.4}", train_loss[0], val_loss[0]));
            write_npy(
                &out.join("probe_cv.npy"),
                &cv.grid.iter().zip(&cv.loss).flat_map(|(g, l)| [*g as f32, *l as f32]).collect::<Vec<_>>(),
                &[cv.grid.len(), 2],
            )?;
            Classifier { encoder: bundle.encoder.clone(), head: ClassifierConfig::head_with(w, *b, device) }
        }
        Mode::Finetune | Mode::Scratch => {
            train_device.seed(cfg.seed);
            let encoder = if cfg.mode == Mode::Scratch {
                bundle.config.init(&train_device)
            } else {
                EncoderBundle::load(encoder_dir, &train_device)?.encoder
            };
            let head = match &probe {
                Some((w, b, _)) => ClassifierConfig::head_with(w, *b, &train_device),
                None => ClassifierConfig::head(bundle.config.repr_dim, &train_device),
            };
            let mut model = Classifier { encoder, head };
            let adam = AdamSettings { l2: cfg.weight_decay };
            let mut optim = adam.burn();
            let mut trainable = TrainableEncoder::new(kernels, &model.encoder, adam);
            let aug = Augment::training(crop, cfg.noise).with_jitter(cfg.jitter);
            let sigma = bundle.preprocess.normalisation.sigma.clone();
            let train_imgs = images(&splits.train);
            let val_imgs = images(&splits.val);
            for epoch in 0..epochs {
                let mut order: Vec<usize> = (0..splits.train.len()).collect();
                let mut rng = Rng::for_stream(cfg.seed, streams::FINETUNE_EPOCH + epoch as u64);
                rng.shuffle(&mut order);
                let mut sum = 0.0;
                for (k, idx) in order.chunks(cfg.batch.max(1)).enumerate() {
                    let noise = aug.batch_noise(&sigma, &mut rng);
                    let bands = train_imgs[0].bands();
                    let per = bands * crop * crop;
                    let mut buf = vec![0f32; idx.len() * per];
                    for (j, &i) in idx.iter().enumerate() {
                        aug.view(train_imgs[i], &noise, &mut rng, &mut buf[j * per..(j + 1) * per])?;
                    }
                    let m = idx.len();
                    let h = trainable.forward(&model.encoder, 0, buf, m, bands, crop, &train_device);
                    let logits = model.head.forward(h.clone()).reshape([m]);
                    let ys: Vec<f32> = idx.iter().map(|&i| train_y[i]).collect();
                    let l = loss::bce_with_logits(logits, batch::vector(ys, &train_device));
                    let gradients = l.backward();
                    let lr = cfg.lr * cfg.lr_schedule.factor(epoch * steps + k, epochs * steps);
                    trainable.backward_step(&gradients, &[&h], lr);
                    let grads = GradientsParams::from_grads(gradients, &model);
                    sum += l.into_scalar::<f32>() * m as f32;
                    model = optim.step(lr, model.clone(), grads);
                    reporter.step((epoch * steps + k + 1) as u64, &format!("epoch {}/{}", epoch + 1, epochs));
                }
                train_loss.push(sum / splits.train.len() as f32);
                model.encoder = trainable.synced(model.encoder, &train_device);
                let logits = infer::Predictor::classifier(&model.valid(), crop, device).logits(&val_imgs)?;
                let v = if val_imgs.is_empty() { f32::NAN } else { bce(logits, &val_y, device) };
                val_loss.push(v);
                log_line(
                    out,
                    &format!("epoch {}: train loss {:.4}, validation loss {:.4}", epoch + 1, train_loss[epoch], v),
                );
            }
            model.valid()
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
    match &probe {
        // The probe has no epochs: its picture is the cross-validation that
        // chose its L2 strength.
        Some((_, _, cv)) if cfg.mode == Mode::Linear && cv.folds > 0 => {
            let x: Vec<f64> = cv.grid.clone();
            let mut axes = Axes::new(
                format!("linear probe: {}-fold cross-validation (chosen λ = {:.3})", cv.folds, cv.chosen),
                "L2 strength λ",
                "held-out log-loss",
            );
            axes.x_log = true;
            axes.y_range = Some((0.0, cv.loss.iter().fold(0.0f64, |a, &b| a.max(b)) * 1.1 + 1e-3));
            let mut s = Series::line("held-out log-loss", x, cv.loss.clone(), PALETTE[0]);
            s.markers = true;
            line_plot(&out.join("loss.png"), &axes, &[s])?;
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
            axes.y_range = Some((
                0.0,
                train_loss.iter().chain(&val_loss).filter(|v| v.is_finite()).fold(0.0f32, |a, &b| a.max(b)) as f64
                    * 1.1
                    + 1e-3,
            ));
            line_plot(
                &out.join("loss.png"),
                &axes,
                &[
                    Series::line(
                        "training loss",
                        x.clone(),
                        train_loss.iter().map(|&v| v as f64).collect(),
                        PALETTE[0],
                    ),
                    Series::line("validation loss", x, val_loss.iter().map(|&v| v as f64).collect(), PALETTE[1]),
                ],
            )?;
        }
    }
    Ok(FinetuneSummary {
        train_loss,
        val_loss,
        sizes: (splits.train.len(), splits.val.len(), splits.test.len()),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

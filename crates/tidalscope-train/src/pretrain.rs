//! Self-supervised NNCLR pretraining of the encoder.
//!
//! Each step: two augmented views of a batch → encoder → projection head →
//! L2-normalised projections z1, z2 → nearest neighbours in the support
//! queue → NNCLR loss → Adam step → the queue takes z1. Everything random
//! derives from the seed, the epoch and the step, so a run resumed from a
//! checkpoint continues exactly as an uninterrupted one.
//! With `local_views` (multi-crop, Caron et al. 2020), each image also
//! gives that many small crops, encoded without touching BatchNorm's
//! running statistics (inference sees only full views) and paired in the
//! loss with both global views' neighbours ([`loss::nnclr_multi_crop`]).
//! With `decorrelation` W > 0, W × the mean [`loss::decorrelation`] of the
//! two global views' representations joins the loss, so that the
//! representation spreads its variance over more directions.
//!
//! A run folder holds `config.toml`, `encoder.json` + `encoder.bpk` +
//! `preprocess.json` (the encoder folder every other command reads),
//! `representation.json` (the spread of the finished encoder's
//! representations over up to 4096 of its images, which the linear probe
//! whitens with), `metrics.csv` (one row per step), `loss.png`, `log.txt` and
//! `checkpoint/` (weights, Adam state, queue, position), replaced
//! atomically every `checkpoint_every` steps.
//!
//! With `average_epochs` N > 0 (stochastic weight averaging), the encoder
//! written is the mean of the weights at the end of each of the last N
//! epochs, and its BatchNorm statistics are measured again, as plain means
//! over one pass of training views, because the snapshots' running
//! statistics belong to their own weights. The checkpoint keeps the mean so
//! far (`average.bpk`), so a resumed run averages the same snapshots.
//!
//! On the CPU the encoder trains on the fast kernels (`tidalscope_model::fast`):
//! its weights, Adam moments and activations live in a kernels `Trainer`,
//! the projection head, queue and loss stay in burn, and the gradient of the
//! loss with respect to the representations passes between them. The burn
//! encoder is brought up to date before every checkpoint and at the end.

use crate::config::{Kernels, PretrainConfig};
use crate::representation;
use crate::{log_line, write_toml, Reporter, Result, TrainError};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Bytes;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use tidalscope_core::streams;
use tidalscope_core::{Cutout, Rng};
use tidalscope_data::augment::{Augment, ViewJitter};
use tidalscope_data::crowd::{self, Crowd};
use tidalscope_data::loader::{collect_all, for_each_batch, replay, Example, LoaderConfig};
use tidalscope_data::normalise::Normaliser;
use tidalscope_data::preprocess::{bin, Preprocess, PreprocessError};
use tidalscope_data::residual::Channels;
use tidalscope_data::split::ObjectRef;
use tidalscope_eval::plot::{line_plot, Axes, Series, PALETTE};
use tidalscope_io::source::{default_bands, Source};
use tidalscope_model::bundle::EncoderBundle;
use tidalscope_model::encoder::{Encoder, EncoderConfig};
use tidalscope_model::fast::{self, Moments, RunningStatsPass, Trainer, WeightAverage};
use tidalscope_model::heads::{ProjectionHead, ProjectionHeadConfig};
use tidalscope_model::trainable::{AdamSettings, TrainableEncoder};
use tidalscope_model::{loss, params, store, SupportQueue};

/// Encoder and projection head, trained together.
#[derive(Module, Debug)]
pub struct NnclrModel {
    /// The encoder.
    pub encoder: Encoder,
    /// The projection head.
    pub head: ProjectionHead,
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Step (1-based, counted over the run).
    pub step: usize,
    /// The loss minimised: NNCLR, plus the decorrelation penalty when on.
    pub loss: f32,
    /// Contrastive accuracy.
    pub contrastive_acc: f32,
    /// Feature-correlation accuracy.
    pub correlation_acc: f32,
    /// Views per second (each augmented view counts once, a local view
    /// as much as a global one: compare runs with the same views).
    pub views_per_s: f32,
    /// The Adam rate this step took (`--lr` times the schedule's factor).
    pub lr: f64,
}

/// Where an interrupted run stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    epoch: usize,
    step_in_epoch: usize,
    global_step: usize,
    /// What trained the encoder (checkpoints before this field: burn).
    #[serde(default = "burn_kernels")]
    kernels: Kernels,
    /// Epoch-end snapshots in the checkpoint's weight average
    /// (`average.bpk`; 0: none yet).
    #[serde(default)]
    averaged: usize,
}

fn burn_kernels() -> Kernels {
    Kernels::Burn
}

/// What a pretraining run did.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainSummary {
    /// Steps run in total (including before a resume).
    pub steps: usize,
    /// Loss of the last step.
    pub final_loss: f32,
    /// Mean views per second of this invocation.
    pub views_per_s: f32,
    /// Wall time of this invocation.
    pub seconds: f64,
    /// True when `stop_after` ended the run early.
    pub interrupted: bool,
}

/// Encoder settings of a pretraining configuration.
/// (`bands`: the images' bands; the input has a channel per band and
/// residual, see [`PretrainConfig::channels`]).
pub fn encoder_config(cfg: &PretrainConfig, bands: usize) -> EncoderConfig {
    EncoderConfig::new()
        .with_bands(bands * cfg.channels.factor())
        .with_width(cfg.width)
        .with_repr_dim(cfg.repr_dim)
        .with_zero_gamma(cfg.init == crate::config::EncoderInit::Reference)
}

fn adam(cfg: &PretrainConfig) -> AdamSettings {
    AdamSettings { l2: cfg.weight_decay }
}

fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

fn write_metrics(path: &Path, rows: &[StepMetrics]) -> Result<()> {
    let mut w = tidalscope_io::csv::CsvWriter::create(
        path,
        &["epoch", "step", "loss", "contrastive_acc", "correlation_acc", "views_per_s", "lr"],
    )?;
    for r in rows {
        w.row([
            r.epoch.to_string(),
            r.step.to_string(),
            format!("{:.6}", r.loss),
            format!("{:.4}", r.contrastive_acc),
            format!("{:.4}", r.correlation_acc),
            format!("{:.1}", r.views_per_s),
            // Round-trips exactly, so a resumed run's file matches.
            format!("{:e}", r.lr),
        ])?;
    }
    w.finish()?;
    Ok(())
}

/// Reads a checkpoint's metrics.csv back; `lr` fills the rate column of
/// files written before it existed (those runs stepped at one rate).
fn read_metrics(path: &Path, lr: f64) -> Result<Vec<StepMetrics>> {
    let cat = tidalscope_io::source::Catalog::read(path)?;
    cat.rows
        .iter()
        .map(|r| {
            let f = |i: usize| {
                r.fields[i].parse::<f64>().map_err(|_| {
                    TrainError::Other(format!("{}: line {}: bad number {:?}", path.display(), r.line, r.fields[i]))
                })
            };
            Ok(StepMetrics {
                epoch: f(0)? as usize,
                step: f(1)? as usize,
                loss: f(2)? as f32,
                contrastive_acc: f(3)? as f32,
                correlation_acc: f(4)? as f32,
                views_per_s: f(5)? as f32,
                lr: if r.fields.len() > 6 { f(6)? } else { lr },
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn save_checkpoint(
    out: &Path,
    model: &NnclrModel,
    encoder: Option<&Trainer>,
    average: Option<&Encoder>,
    optim: &ModuleOptimizer,
    queue: &SupportQueue,
    state: &State,
    preprocess: &Preprocess,
    rows: &[StepMetrics],
) -> Result<()> {
    let dir = checkpoint_dir(out);
    let tmp = out.join(format!(".checkpoint.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| tidalscope_io::Error::io(&tmp, e))?;
    // valid() brings BatchNorm running statistics up to date before saving.
    store::save(model.valid(), &tmp.join("model.bpk"))?;
    if let Some(t) = encoder {
        write_moments(&tmp.join(MOMENTS), t)?;
    }
    if let Some(a) = average {
        store::save(a.clone(), &tmp.join(AVERAGE))?;
    }
    let bytes = optim.into_bytes().map_err(|e| TrainError::Other(format!("saving optimizer state: {e:?}")))?;
    std::fs::write(tmp.join("optim.bpk"), &bytes[..]).map_err(|e| tidalscope_io::Error::io(&tmp, e))?;
    let (size, dim) = queue.shape();
    crate::write_npy(&tmp.join("queue.npy"), &queue.to_vec(), &[size, dim])?;
    std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(state).expect("serialisable"))
        .map_err(|e| tidalscope_io::Error::io(&tmp, e))?;
    preprocess.save(&tmp.join("preprocess.json")).map_err(|e| TrainError::Other(e.to_string()))?;
    write_metrics(&tmp.join("metrics.csv"), rows)?;
    tidalscope_io::atomic::replace_dir(&tmp, &dir)?;
    Ok(())
}

/// The weight average so far in a checkpoint (with `average_epochs`).
const AVERAGE: &str = "average.bpk";

/// The encoder's Adam moments in a checkpoint trained on the fast kernels.
const MOMENTS: &str = "encoder_adam.bin";
const MOMENTS_MAGIC: &[u8; 8] = b"TSADAM01";

/// Writes a kernels trainer's Adam moments: magic, tensor count (u32), then
/// per tensor its step count (i32), length (u64), first and second moments
/// (f32), all little-endian.
fn write_moments(path: &Path, t: &Trainer) -> Result<()> {
    let moments = t.moments();
    let mut bytes = MOMENTS_MAGIC.to_vec();
    bytes.extend((moments.len() as u32).to_le_bytes());
    for Moments { m, v, time } in moments {
        bytes.extend(time.to_le_bytes());
        bytes.extend((m.len() as u64).to_le_bytes());
        bytes.extend(m.iter().chain(v).flat_map(|x| x.to_le_bytes()));
    }
    std::fs::write(path, bytes).map_err(|e| tidalscope_io::Error::io(path, e).into())
}

/// Reads moments written by [`write_moments`].
fn read_moments(path: &Path) -> Result<Vec<Moments>> {
    let bytes = std::fs::read(path).map_err(|e| tidalscope_io::Error::io(path, e))?;
    let bad = |what: &str| TrainError::Other(format!("{}: {what}", path.display()));
    let mut rest = bytes.strip_prefix(&MOMENTS_MAGIC[..]).ok_or_else(|| bad("not an encoder Adam state file"))?;
    let mut take = |n: usize| -> Result<&[u8]> {
        let (head, tail) = rest.split_at_checked(n).ok_or_else(|| bad("truncated"))?;
        rest = tail;
        Ok(head)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
    let mut out = Vec::new();
    for _ in 0..count {
        let time = i32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
        if time < 0 {
            return Err(bad("negative step count"));
        }
        let len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
        let floats = |b: &[u8]| b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        let m = floats(take(len.checked_mul(4).ok_or_else(|| bad("bad length"))?)?);
        let v = floats(take(len * 4)?);
        out.push(Moments { m, v, time });
    }
    if !rest.is_empty() {
        return Err(bad("bytes after the last tensor"));
    }
    Ok(out)
}

/// `model` with the encoder weights and running statistics of `t`.
fn synced(model: NnclrModel, t: &TrainableEncoder, device: &Device) -> NnclrModel {
    NnclrModel { encoder: t.synced(model.encoder, device), head: model.head }
}

/// Everything a resumed run picks up.
struct Resumed {
    model: NnclrModel,
    optim: ModuleOptimizer,
    queue: SupportQueue,
    state: State,
    preprocess: Preprocess,
    rows: Vec<StepMetrics>,
    average: Option<WeightAverage>,
}

fn load_checkpoint(out: &Path, cfg: &PretrainConfig, bands: usize, device: &Device) -> Result<Resumed> {
    let dir = checkpoint_dir(out);
    if !dir.join("state.json").is_file() {
        return Err(TrainError::Other(format!(
            "{}: no checkpoint to resume from (checkpoint/state.json is missing)",
            out.display()
        )));
    }
    let preprocess = Preprocess::load(&dir.join("preprocess.json")).map_err(|e| TrainError::Other(e.to_string()))?;
    let model = NnclrModel {
        encoder: encoder_config(cfg, bands).init(device),
        head: ProjectionHeadConfig::new().with_input(cfg.repr_dim).init(device),
    };
    let model = store::load(model, &dir.join("model.bpk"))?;
    let bytes =
        std::fs::read(dir.join("optim.bpk")).map_err(|e| tidalscope_io::Error::io(&dir.join("optim.bpk"), e))?;
    let optim = adam(cfg)
        .burn()
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| TrainError::Other(format!("{}: {e:?}", dir.join("optim.bpk").display())))?;
    let (shape, values) = tidalscope_io::npy::read_f32(&dir.join("queue.npy"))?;
    let queue = SupportQueue::from_vec(values, shape[0], shape[1], device);
    let text = std::fs::read_to_string(dir.join("state.json"))
        .map_err(|e| tidalscope_io::Error::io(&dir.join("state.json"), e))?;
    let state: State = serde_json::from_str(&text)
        .map_err(|e| TrainError::Other(format!("{}: {e}", dir.join("state.json").display())))?;
    let rows = read_metrics(&dir.join("metrics.csv"), cfg.lr)?;
    let average = match state.averaged {
        0 => None,
        n => {
            let encoder = store::load(encoder_config(cfg, bands).init(device), &dir.join(AVERAGE))?;
            Some(WeightAverage::resume(fast::to_resnet(&encoder), n))
        }
    };
    Ok(Resumed { model, optim, queue, state, preprocess, rows, average })
}

/// The most prepared image data kept in memory across epochs; more is
/// streamed from the sources every epoch.
const CACHE_BYTES: usize = 2 << 30;

/// Bytes of the first `n_images` objects of `sources` once binned by `bin`
/// (float32), with `factor` input channels per band (the residuals), or
/// None when a source's image shape is not known in advance (or the count
/// overflows).
fn prepared_bytes(sources: &[&dyn Source], n_images: usize, bin: usize, factor: usize) -> Option<usize> {
    let (mut left, mut bytes) = (n_images, 0usize);
    for src in sources {
        if left == 0 {
            break;
        }
        let take = src.info().len.min(left);
        let [b, h, w] = src.info().shape?;
        let per = b.checked_mul(factor)?.checked_mul(h / bin.max(1))?.checked_mul(w / bin.max(1))?.checked_mul(4)?;
        bytes = bytes.checked_add(per.checked_mul(take)?)?;
        left -= take;
    }
    Some(bytes)
}

/// How epoch `epoch` batches the images: whole batches in its own shuffle.
fn loader_config(cfg: &PretrainConfig, epoch: usize) -> LoaderConfig {
    LoaderConfig {
        batch: cfg.batch,
        shuffle_buffer: cfg.shuffle_buffer,
        prefetch: 2,
        seed: epoch_seed(cfg.seed, epoch),
        drop_last: true,
    }
}

/// The seed of epoch `epoch`'s shuffle.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    Rng::for_stream(seed, streams::PRETRAIN_EPOCH + epoch as u64).next_u64()
}

/// `buf` holding `len` floats, their values to be overwritten. A training
/// loop fills the same view buffers every step: fresh ones of 1–4 MB each
/// came from the system every step (the allocator hands such sizes back),
/// and the kernel's zeroing of their pages took 3.5% of the samples of a
/// pretraining profile, the page faults about 1% more.
fn sized(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.resize(len, 0.0);
    buf
}

/// Two views of each image of a batch into `v1` and `v2`, as `[n, bands,
/// crop, crop]` (the buffers are resized); returns the bands.
#[allow(clippy::too_many_arguments)]
fn make_views(
    images: &[&Cutout],
    aug: &Augment,
    sigma: &[f32],
    seed: u64,
    epoch: usize,
    step: usize,
    v1: &mut Vec<f32>,
    v2: &mut Vec<f32>,
) -> usize {
    let bands = images[0].bands();
    let per = bands * aug.crop * aug.crop;
    let mut rng = Rng::for_stream(seed ^ streams::PRETRAIN_VIEWS, (epoch as u64) << 32 | step as u64);
    let noise1 = aug.batch_noise(sigma, &mut rng);
    let noise2 = aug.batch_noise(sigma, &mut rng);
    let base = rng.next_u64();
    let (v1, v2) = (sized(v1, images.len() * per), sized(v2, images.len() * per));
    v1.par_chunks_mut(per).zip(v2.par_chunks_mut(per)).enumerate().for_each(|(k, (a, b))| {
        let mut r = Rng::for_stream(base, k as u64);
        // Sizes were checked when the images were prepared.
        aug.view(images[k], &noise1, &mut r, a).expect("image fits the crop");
        aug.view(images[k], &noise2, &mut r, b).expect("image fits the crop");
    });
    bands
}

/// The local views of a batch (multi-crop) into `views`, one buffer of
/// `[n, bands, aug.crop, aug.crop]` each (resized), from their own random
/// stream.
fn make_local_views(
    images: &[&Cutout],
    aug: &Augment,
    sigma: &[f32],
    seed: u64,
    epoch: usize,
    step: usize,
    views: &mut [Vec<f32>],
) {
    let per = images[0].bands() * aug.crop * aug.crop;
    let mut rng = Rng::for_stream(seed ^ streams::PRETRAIN_LOCAL_VIEWS, (epoch as u64) << 32 | step as u64);
    for v in views {
        let noise = aug.batch_noise(sigma, &mut rng);
        let base = rng.next_u64();
        sized(v, images.len() * per).par_chunks_mut(per).enumerate().for_each(|(k, out)| {
            let mut r = Rng::for_stream(base, k as u64);
            // Local views are smaller than the global ones, checked
            // when the images were prepared.
            aug.view(images[k], &noise, &mut r, out).expect("image fits the crop");
        });
    }
}

/// The sources of the first [`crowd::POOL`] training images (in source
/// order, within `selection`) for [`PretrainConfig::crowd`], and which
/// objects those images are.
fn crowd_pool(
    sources: &[&dyn Source],
    selection: Option<&[ObjectRef]>,
    cfg: &PretrainConfig,
    reporter: &dyn Reporter,
) -> Result<(Crowd, Vec<ObjectRef>)> {
    crowd::check_factor(cfg.crowd).map_err(|e| TrainError::Other(format!("crowd {e}, got {}", cfg.crowd)))?;
    let refs: Vec<ObjectRef> = match selection {
        Some(sel) => sel.iter().take(crowd::POOL).copied().collect(),
        None => ObjectRef::every(sources.iter().map(|s| s.info().len)).into_iter().take(crowd::POOL).collect(),
    };
    let crowd = Crowd::read(sources, &refs, cfg.crowd, cfg.seed ^ streams::CROWD, &mut || ())?;
    reporter.log(&format!(
        "crowding: {} sources found in the first {} images; each image gets those of {} others on average",
        crowd.sources(),
        refs.len(),
        cfg.crowd
    ));
    Ok((crowd, refs))
}

/// Local views are cut from anywhere in the prepared image: their crop
/// window's margin (in local crops) is effectively unbounded, so the
/// image caps it.
const LOCAL_MARGIN: f64 = 1000.0;

/// The most local views per image: each keeps a tape of activations until
/// the backward pass, so memory grows with their number.
const MAX_LOCAL_VIEWS: usize = 16;

/// Why a training loop left its epoch before the data ran out.
enum Halt {
    /// `stop_after` steps were reached: the run is interrupted, resumable.
    Requested,
    /// The run cannot go on.
    Failed(TrainError),
}

/// Pretrains an encoder on `sources` into the run folder `out`. Up to 2 GiB
/// of prepared images are kept in memory between epochs.
pub fn pretrain(
    cfg: &PretrainConfig,
    sources: &[&dyn Source],
    out: &Path,
    device: &Device,
    resume: bool,
    reporter: &dyn Reporter,
) -> Result<PretrainSummary> {
    pretrain_with_cache(cfg, sources, out, device, resume, reporter, CACHE_BYTES)
}

/// [`pretrain`], keeping prepared images in memory between epochs when
/// they take at most `cache_bytes` (0: read and prepare them every epoch).
/// The result is the same either way.
pub fn pretrain_with_cache(
    cfg: &PretrainConfig,
    sources: &[&dyn Source],
    out: &Path,
    device: &Device,
    resume: bool,
    reporter: &dyn Reporter,
    cache_bytes: usize,
) -> Result<PretrainSummary> {
    let t0 = std::time::Instant::now();
    std::fs::create_dir_all(out).map_err(|e| tidalscope_io::Error::io(out, e))?;
    let first = sources.first().ok_or_else(|| TrainError::Other("no training data given".into()))?;
    let bands = first.info().shape.map(|s| s[0]).or(Some(first.info().bands.len()).filter(|&b| b > 0)).unwrap_or(5);
    let total: usize = sources.iter().map(|s| s.info().len).sum();
    let n_images = if cfg.max_images > 0 { total.min(cfg.max_images) } else { total };
    if n_images < cfg.batch {
        return Err(TrainError::Other(format!(
            "{n_images} images are fewer than one batch of {}; give more data or a smaller --batch",
            cfg.batch
        )));
    }
    let steps_per_epoch = n_images / cfg.batch;
    let train_device = device.clone().autodiff();
    let kernels = cfg.kernels.resolve(device);
    let cfg = &PretrainConfig { kernels, ..cfg.clone() };
    if cfg.local_views > MAX_LOCAL_VIEWS {
        return Err(TrainError::Other(format!(
            "{} local views per image: give at most {MAX_LOCAL_VIEWS} (each keeps its activations for the backward pass)",
            cfg.local_views
        )));
    }
    if cfg.local_views > 0 && !(8..cfg.crop).contains(&cfg.local_crop) {
        return Err(TrainError::Other(format!(
            "local views of {} px: give a local crop from 8 px to less than the {}-px global views",
            cfg.local_crop, cfg.crop
        )));
    }

    let (mut model, mut optim, mut queue, state, preprocess, mut rows, mut average) = if resume {
        let r = load_checkpoint(out, cfg, bands, &train_device)?;
        reporter.log(&format!(
            "resuming at epoch {}, step {} (run step {})",
            r.state.epoch, r.state.step_in_epoch, r.state.global_step
        ));
        if r.state.kernels != kernels {
            return Err(TrainError::Other(format!(
                "{}: the checkpoint was trained with {:?} kernels and this run resolves to {kernels:?}; resume on the same kind of device, with TIDALSCOPE_KERNELS=burn for checkpoints trained on burn",
                out.display(),
                r.state.kernels
            )));
        }
        (r.model, r.optim, r.queue, r.state, r.preprocess, r.rows, r.average)
    } else {
        let norm_source = *first;
        let k = cfg.bin;
        let (channels, centring) = (cfg.channels, cfg.centring);
        let mut normalisation =
            Normaliser::fit_with(norm_source, cfg.norm_images, cfg.sigma, &|c| bin(&channels.apply(&c, centring), k))?;
        if channels != Channels::Image {
            let info = norm_source.info();
            let names = if info.bands.len() == bands { info.bands.clone() } else { default_bands(bands) };
            normalisation.bands = channels.names(&names);
        }
        reporter.log(&format!(
            "σ_b = {:?} ({}; channels {})",
            normalisation.sigma,
            normalisation.provenance,
            normalisation.bands.join(",")
        ));
        let preprocess = Preprocess { bin: cfg.bin, crop: cfg.crop, normalisation, channels, centring };
        train_device.seed(cfg.seed);
        let model = NnclrModel {
            encoder: encoder_config(cfg, bands).init(&train_device),
            head: ProjectionHeadConfig::new().with_input(cfg.repr_dim).init(&train_device),
        };
        params::materialize(&model);
        let queue = SupportQueue::random(cfg.queue_size, ProjectionHeadConfig::new().width, cfg.seed, device);
        (
            model,
            adam(cfg).burn(),
            queue,
            State { epoch: 0, step_in_epoch: 0, global_step: 0, kernels, averaged: 0 },
            preprocess,
            Vec::new(),
            None,
        )
    };
    // A checkpoint from before catalogue bands were read in wavelength
    // order may record them otherwise: resuming would swap channels.
    for s in sources {
        preprocess.check_bands(s.info()).map_err(|e| match resume {
            true => TrainError::Other(format!("{e} (the checkpoint in {})", out.display())),
            false => e.into(),
        })?;
    }
    let mut trainable = TrainableEncoder::new(kernels, &model.encoder, adam(cfg));
    if resume && kernels == Kernels::Fast {
        let path = checkpoint_dir(out).join(MOMENTS);
        trainable
            .set_moments(read_moments(&path)?)
            .map_err(|e| TrainError::Other(format!("{}: {e}", path.display())))?;
    }
    write_toml(&out.join("config.toml"), cfg)?;
    let counts = params::count(&model.encoder);
    reporter.log(&format!(
        "pretrain: {n_images} images, {bands} bands, {steps_per_epoch} steps/epoch × {} epochs, encoder {} trainable parameters, preset {}",
        cfg.epochs, counts.trainable, cfg.preset
    ));
    let selection: Option<Vec<ObjectRef>> = (n_images < total).then(|| {
        let mut sel = Vec::with_capacity(n_images);
        'outer: for (s, src) in sources.iter().enumerate() {
            for index in 0..src.info().len {
                if sel.len() == n_images {
                    break 'outer;
                }
                sel.push(ObjectRef { source: s, index, label: 0 });
            }
        }
        sel
    });
    let aug = Augment::training(cfg.crop, cfg.noise).with_jitter(cfg.jitter);
    // The core mask is about the target at the view's centre; a local crop
    // is mostly elsewhere.
    let local_aug = Augment::training(cfg.local_crop, cfg.noise).with_jitter(ViewJitter {
        margin: LOCAL_MARGIN,
        core_mask: 0.0,
        ..cfg.jitter
    });
    let sigma = preprocess.normalisation.sigma.clone();
    let crowd = if cfg.crowd > 0.0 { Some(crowd_pool(sources, selection.as_deref(), cfg, reporter)?) } else { None };
    let transform = |img: &Cutout, obj: ObjectRef| match &crowd {
        Some((crowd, pool)) => {
            let mut img = img.clone();
            let own = pool.iter().position(|p| p.source == obj.source && p.index == obj.index);
            crowd
                .apply(&mut img, own, (obj.source as u64) << 40 | obj.index as u64)
                .map_err(|e| PreprocessError::Mismatch(e.to_string()))?;
            preprocess.apply(&img)
        }
        None => preprocess.apply(img),
    };
    // Prepared images that fit in memory are read, binned and normalised
    // once, then replayed in the very batches streaming would give.
    // With one epoch or none left there is nothing to replay.
    let worth = cfg.epochs.saturating_sub(state.epoch) >= 2;
    let cache = match prepared_bytes(sources, n_images, cfg.bin, cfg.channels.factor()) {
        Some(bytes) if worth && bytes <= cache_bytes => {
            let t = std::time::Instant::now();
            let examples = collect_all(sources, selection.as_deref(), &transform)?;
            let mb = examples.iter().map(|e| e.image.data().len() * 4).sum::<usize>() as f64 / 1e6;
            reporter.log(&format!(
                "prepared {} images once ({mb:.0} MB in memory, {:.1} s); every epoch replays them",
                examples.len(),
                t.elapsed().as_secs_f64()
            ));
            Some(examples)
        }
        _ => None,
    };
    let total_steps = cfg.epochs * steps_per_epoch;
    // Snapshots are taken at the ends of epochs `average_from` and later.
    let average_from = if cfg.average_epochs == 0 { usize::MAX } else { cfg.epochs.saturating_sub(cfg.average_epochs) };
    reporter.start("pretrain", total_steps as u64);
    reporter.step(state.global_step as u64, "");
    let mut global = state.global_step;
    let mut interrupted = false;
    let mut views_done = 0usize;
    // Two global views, then the local ones, refilled every step.
    let mut view_buffers: Vec<Vec<f32>> = vec![Vec::new(); 2 + cfg.local_views];
    let t_train = std::time::Instant::now();
    'epochs: for epoch in state.epoch..cfg.epochs {
        let skip = if epoch == state.epoch { state.step_in_epoch } else { 0 };
        let lcfg = loader_config(cfg, epoch);
        let mut step_in_epoch = 0usize;
        let train_step = |examples: Vec<Example>| {
            step_in_epoch += 1;
            if step_in_epoch <= skip {
                return ControlFlow::Continue(());
            }
            let ts = std::time::Instant::now();
            let images: Vec<&Cutout> = examples.iter().map(|e| &e.image).collect();
            let [v1, v2, locals @ ..] = &mut view_buffers[..] else { unreachable!("two global views") };
            let b = make_views(&images, &aug, &sigma, cfg.seed, epoch, step_in_epoch, v1, v2);
            let n = images.len();
            make_local_views(&images, &local_aug, &sigma, cfg.seed, epoch, step_in_epoch, locals);
            let views: Vec<(&[f32], usize, bool)> = view_buffers
                .iter()
                .enumerate()
                .map(|(j, v)| if j < 2 { (&v[..], cfg.crop, false) } else { (&v[..], cfg.local_crop, true) })
                .collect();
            let mut reps = trainable.forward_views(&model.encoder, &views, n, b, &train_device).into_iter();
            let (h1, h2) = (reps.next().expect("view 1"), reps.next().expect("view 2"));
            let locals: Vec<Tensor<2>> = reps.collect();
            let (g1, g2) = (h1.clone(), h2.clone());
            let z1 = loss::l2_normalise(model.head.forward(h1.clone()));
            let z2 = loss::l2_normalise(model.head.forward(h2.clone()));
            let zl: Vec<Tensor<2>> = locals.iter().map(|h| loss::l2_normalise(model.head.forward(h.clone()))).collect();
            let nn1 = queue.nearest(&z1);
            let nn2 = queue.nearest(&z2);
            let mut l = loss::nnclr_multi_crop(z1.clone(), z2, nn1, nn2, &zl, cfg.temperature);
            if cfg.decorrelation > 0.0 {
                let d = loss::decorrelation(g1.clone()) + loss::decorrelation(g2.clone());
                l = l + d * (cfg.decorrelation / 2.0);
            }
            let cacc = loss::contrastive_accuracy(h1.clone(), h2.clone());
            let racc = loss::correlation_accuracy(h1, h2);
            let gradients = l.backward();
            let loss_value = l.into_scalar::<f32>();
            if !loss_value.is_finite() {
                return ControlFlow::Break(Halt::Failed(TrainError::Other(format!(
                    "the loss became {loss_value} at epoch {epoch}, step {step_in_epoch}: lower --lr or check the data"
                ))));
            }
            let reprs: Vec<&Tensor<2>> = [&g1, &g2].into_iter().chain(&locals).collect();
            // `global` counts the steps before this one, so a resumed run
            // continues the schedule where it stopped.
            let lr = cfg.lr * cfg.lr_schedule.factor(global, total_steps);
            trainable.backward_step(&gradients, &reprs, lr);
            let grads = GradientsParams::from_grads(gradients, &model);
            model = optim.step(lr, model.clone(), grads);
            queue.update(&z1);
            global += 1;
            views_done += (2 + cfg.local_views) * n;
            let vps = ((2 + cfg.local_views) * n) as f32 / ts.elapsed().as_secs_f32();
            rows.push(StepMetrics {
                epoch,
                step: global,
                loss: loss_value,
                contrastive_acc: cacc,
                correlation_acc: racc,
                views_per_s: vps,
                lr,
            });
            reporter.step(
                global as u64,
                &format!(
                    "epoch {}/{} · loss {loss_value:.3} · acc {cacc:.2} · {vps:.0} views/s",
                    epoch + 1,
                    cfg.epochs
                ),
            );
            let at_end = step_in_epoch == steps_per_epoch;
            let stopping = cfg.stop_after > 0 && global >= cfg.stop_after;
            if global % cfg.checkpoint_every.max(1) == 0 || at_end || stopping {
                model = synced(model.clone(), &trainable, &train_device);
                let t = trainable.trainer();
                if at_end && epoch >= average_from {
                    // The kernels hold the weights themselves; burn's are in the model.
                    let net = t.map_or_else(|| fast::to_resnet(&model.encoder), |t| t.net.clone());
                    match &mut average {
                        Some(a) => a.add(&net),
                        None => average = Some(WeightAverage::new(&net)),
                    }
                }
                let averaged = average.as_ref().map_or(0, WeightAverage::snapshots);
                let state = if at_end {
                    State { epoch: epoch + 1, step_in_epoch: 0, global_step: global, kernels, averaged }
                } else {
                    State { epoch, step_in_epoch, global_step: global, kernels, averaged }
                };
                let mean =
                    average.as_ref().map(|a| fast::load_resnet(model.encoder.clone(), a.net(), &train_device).valid());
                if let Err(e) =
                    save_checkpoint(out, &model, t, mean.as_ref(), &optim, &queue, &state, &preprocess, &rows)
                {
                    return ControlFlow::Break(Halt::Failed(e));
                }
            }
            if stopping {
                return ControlFlow::Break(Halt::Requested);
            }
            ControlFlow::Continue(())
        };
        let flow = match &cache {
            Some(examples) => replay(examples, lcfg, train_step),
            None => for_each_batch(sources, selection.as_deref(), &transform, lcfg, train_step)?,
        };
        match flow {
            ControlFlow::Continue(()) => {}
            ControlFlow::Break(Halt::Failed(e)) => return Err(e),
            ControlFlow::Break(Halt::Requested) => {
                interrupted = true;
                break 'epochs;
            }
        }
        if let Some(r) = rows.last() {
            log_line(
                out,
                &format!(
                    "epoch {}: loss {:.4}, contrastive acc {:.3}, correlation acc {:.3}",
                    epoch + 1,
                    r.loss,
                    r.contrastive_acc,
                    r.correlation_acc
                ),
            );
        }
    }
    reporter.finish();
    write_metrics(&out.join("metrics.csv"), &rows)?;
    let loss_label = if cfg.decorrelation > 0.0 {
        format!("NNCLR loss + {} × decorrelation", cfg.decorrelation)
    } else {
        "NNCLR loss".to_string()
    };
    plot_metrics(&out.join("loss.png"), &rows, &loss_label)?;
    let mut model = synced(model, &trainable, &train_device);
    if interrupted && average.is_some() {
        reporter.log("stopped before the last epoch: the encoder written holds the last weights, not their average; --resume finishes the average");
    }
    if let Some(a) = average.filter(|_| !interrupted) {
        let t = std::time::Instant::now();
        let snapshots = a.snapshots();
        let mut net = a.into_net();
        let mut pass = RunningStatsPass::start(&mut net);
        // One more epoch's shuffle and views, seen by no training step.
        let lcfg = loader_config(cfg, cfg.epochs);
        let mut k = 0;
        let measure = |examples: Vec<Example>| -> ControlFlow<()> {
            k += 1;
            let images: Vec<&Cutout> = examples.iter().map(|e| &e.image).collect();
            let [v1, v2, ..] = &mut view_buffers[..] else { unreachable!("two global views") };
            make_views(&images, &aug, &sigma, cfg.seed, cfg.epochs, k, v1, v2);
            pass.add(&mut net, v1, images.len(), cfg.crop, cfg.crop);
            ControlFlow::Continue(())
        };
        let _ = match &cache {
            Some(examples) => replay(examples, lcfg, measure),
            None => for_each_batch(sources, selection.as_deref(), &transform, lcfg, measure)?,
        };
        model.encoder = fast::load_resnet(model.encoder, &net, &train_device);
        let msg = format!(
            "averaged the weights of the last {snapshots} epochs; BatchNorm statistics measured on {} batches of views ({:.1} s)",
            pass.batches(),
            t.elapsed().as_secs_f64()
        );
        reporter.log(&msg);
    }
    let bundle = EncoderBundle { config: encoder_config(cfg, bands), encoder: model.valid().encoder, preprocess };
    bundle.save(out)?;
    if !interrupted {
        // The linear probe whitens with this; an interrupted run leaves it
        // to the probe to measure.
        let t = std::time::Instant::now();
        let objects: Vec<ObjectRef> = match &selection {
            Some(sel) => sel.clone(),
            None => ObjectRef::every(sources.iter().map(|s| s.info().len)),
        };
        let spectrum = representation::measure(&bundle.encoder, &bundle.preprocess, sources, &objects, device)?;
        representation::save(out, &spectrum)?;
        let msg = format!(
            "measured the representations' spread on {} images ({}; {:.1} s)",
            spectrum.objects,
            representation::FILE,
            t.elapsed().as_secs_f64()
        );
        reporter.log(&msg);
    }
    let secs = t_train.elapsed().as_secs_f64();
    Ok(PretrainSummary {
        steps: global,
        final_loss: rows.last().map_or(f32::NAN, |r| r.loss),
        views_per_s: (views_done as f64 / secs.max(1e-9)) as f32,
        seconds: t0.elapsed().as_secs_f64(),
        interrupted,
    })
}

/// Loss and accuracies against step. `loss_label` names what the loss
/// column holds (NNCLR alone, or with the decorrelation penalty).
pub fn plot_metrics(path: &Path, rows: &[StepMetrics], loss_label: &str) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let x: Vec<f64> = rows.iter().map(|r| r.step as f64).collect();
    let mut axes = Axes::new("NNCLR pretraining", "step", "loss / accuracy");
    let max_loss = rows.iter().map(|r| r.loss as f64).fold(0.0, f64::max);
    axes.y_range = Some((0.0, max_loss.max(1.0) * 1.05));
    let series = vec![
        Series::line(loss_label, x.clone(), rows.iter().map(|r| r.loss as f64).collect(), PALETTE[0]),
        Series::line(
            "contrastive accuracy",
            x.clone(),
            rows.iter().map(|r| r.contrastive_acc as f64).collect(),
            PALETTE[1],
        ),
        Series::line("correlation accuracy", x, rows.iter().map(|r| r.correlation_acc as f64).collect(), PALETTE[2]),
    ];
    line_plot(path, &axes, &series)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_adam_state_files_that_are_not_ours_or_cut_short_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MOMENTS);
        std::fs::write(&path, b"something else").unwrap();
        let e = read_moments(&path).unwrap_err().to_string();
        assert!(e.contains(MOMENTS) && e.contains("not an encoder Adam state file"), "{e}");
        let mut bytes = MOMENTS_MAGIC.to_vec();
        bytes.extend(1u32.to_le_bytes());
        bytes.extend(3i32.to_le_bytes());
        bytes.extend(10u64.to_le_bytes());
        bytes.extend([0u8; 12]);
        std::fs::write(&path, &bytes).unwrap();
        let e = read_moments(&path).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        bytes.extend([0u8; 80 - 12]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_moments(&path).unwrap(), vec![Moments { m: vec![0.0; 10], v: vec![0.0; 10], time: 3 }]);
    }
}

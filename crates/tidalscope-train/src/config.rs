//! Resolved settings of the training commands, written as TOML into every
//! run folder, and the named presets.
//!
//! | preset | what | encoder | input | schedule |
//! |---|---|---|---|---|
//! | `paper` | the reference's network and views | width 1 (615,312 params) | 128 px → 96 px crops | 25 epochs, batch 220, queue 10,000 |
//! | `quick` | CPU minutes | width 0.5 | the bands, their rotational and their mirror residuals, 4×4-binned 128 px (32 px, 0.67″) → 24 px crops, strong view jitter (core mask, sky jitter), 4 local views of 12 px | 12 epochs, batch 128, Adam 4e-3, queue 2,048, decorrelation 1 |
//!
//! Both start identity blocks trainable ([`EncoderInit`]) and measure σ_b
//! from the sky ([`SigmaRule::Sky`]); `init = "reference"`, `sigma =
//! "image"` and `jitter = ViewJitter::REFERENCE` give the reference exactly.
//!
//! Both use the reference code's augmentation noise ([`NoiseScale::Reference`]):
//! the paper's stated noise (1–3 σ_b in raw flux, [`NoiseScale::Physical`])
//! drowns the faint features the classifier must find — measured on the
//! demo's mocks, fine-tuning with it reached AUC 0.75 against 0.89 without.

use serde::{Deserialize, Serialize};
use tidalscope_data::augment::{NoiseScale, ViewJitter};
pub use tidalscope_data::normalise::SigmaRule;
pub use tidalscope_data::residual::{Centring, Channels};
pub use tidalscope_model::fast::Kernels;

/// Settings of `pretrain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    /// Preset these settings started from.
    pub preset: String,
    /// Encoder width multiplier.
    pub width: f64,
    /// Representation size.
    pub repr_dim: usize,
    /// Pixels averaged in k×k blocks before training (1 = none).
    pub bin: usize,
    /// View size (binned pixels).
    pub crop: usize,
    /// Input channels: the bands, their rotational residuals
    /// (`tidalscope_data::residual`), or both.
    #[serde(default)]
    pub channels: Channels,
    /// How finely the residuals' centre is kept (config files written
    /// before it existed: to the half pixel, as they trained).
    #[serde(default)]
    pub centring: Centring,
    /// Augmentation noise scale.
    pub noise: NoiseScale,
    /// Support-queue size.
    pub queue_size: usize,
    /// Softmax temperature τ.
    pub temperature: f64,
    /// Epochs.
    pub epochs: usize,
    /// Images per batch (each gives two views).
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// How the learning rate changes over the run's steps. Config files
    /// written before it existed read as constant, as they trained.
    #[serde(default = "LrSchedule::legacy")]
    pub lr_schedule: LrSchedule,
    /// L2 regularisation λ as Keras states it (loss += λ Σ w²).
    pub weight_decay: f64,
    /// Images σ_b is measured on.
    pub norm_images: usize,
    /// Shuffle buffer (images).
    pub shuffle_buffer: usize,
    /// Checkpoint every this many steps (and at each epoch end).
    pub checkpoint_every: usize,
    /// Use at most this many images (0 = all).
    pub max_images: usize,
    /// Seed of everything random.
    pub seed: u64,
    /// Stop after this many steps in total, as if interrupted (0 = never);
    /// for testing resume.
    pub stop_after: usize,
    /// What runs the encoder (`auto`: the fast CPU kernels on the CPU);
    /// run folders record the resolved choice.
    #[serde(default)]
    pub kernels: Kernels,
    /// How a fresh encoder's identity blocks start.
    #[serde(default)]
    pub init: EncoderInit,
    /// How σ_b of the normalisation is measured.
    #[serde(default)]
    pub sigma: SigmaRule,
    /// View differences beyond the reference's flips, shift and noise.
    #[serde(default)]
    pub jitter: ViewJitter,
    /// Multi-crop: small local views per image besides the two global
    /// ones (quick preset: 4; paper preset: 0, off). Each is a `local_crop`-pixel crop from
    /// anywhere in the prepared image, with the global views' jitter but
    /// no core mask, paired with both global views' neighbours.
    #[serde(default)]
    pub local_views: usize,
    /// Side of the local views (binned pixels, 8 to less than `crop`; 0
    /// with no local views). `pretrain` makes it half the crop unless
    /// `--local-crop` is given.
    #[serde(default)]
    pub local_crop: usize,
    /// Weight of the decorrelation penalty on the two global views'
    /// representations (`tidalscope_model::loss::decorrelation`), added to
    /// the NNCLR loss: 1 in the quick preset; 0 (the paper preset) leaves
    /// the loss as the reference's.
    #[serde(default)]
    pub decorrelation: f64,
    /// Stochastic weight averaging: the encoder written is the mean of the
    /// weights at the end of each of the last this many epochs, its
    /// BatchNorm statistics measured afresh on one pass over the training
    /// views (0: the last weights, as the reference).
    #[serde(default)]
    pub average_epochs: usize,
    /// Crowding: before preparation, each training image gets the compact
    /// sources of this many other training images pasted in, on average
    /// (`tidalscope_data::crowd`; the pool is the first 512 images, the
    /// draws follow the seed and the object). σ_b and the representations'
    /// spread (`representation.json`) are measured on the images as given.
    /// 0: off.
    #[serde(default)]
    pub crowd: f64,
}

/// How a fresh encoder's identity blocks are initialised
/// (see `tidalscope_model::encoder`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderInit {
    /// Every BN γ starts at 1, so every identity branch trains.
    #[default]
    Trainable,
    /// The reference's zero_gamma: identity branches output 0 and never
    /// train. For exact reproduction of the reference.
    Reference,
}

impl PretrainConfig {
    /// The reference's settings.
    pub fn paper() -> Self {
        Self {
            preset: "paper".into(),
            width: 1.0,
            repr_dim: 128,
            bin: 1,
            crop: 96,
            channels: Channels::Image,
            // Measured on validation splits (README, "The residuals'
            // centre"): pretrained with the subpixel centre, two seeds'
            // encoders lose 0.003–0.005 with 1000 labels and 0.01 on
            // crowded mocks, and gain nothing clear with few labels.
            centring: Centring::HalfPixel,
            noise: NoiseScale::Reference,
            queue_size: 10_000,
            temperature: 0.1,
            epochs: 25,
            batch: 220,
            lr: 1e-3,
            lr_schedule: LrSchedule::Constant,
            weight_decay: 5e-4,
            norm_images: 1000,
            shuffle_buffer: 4096,
            checkpoint_every: 200,
            max_images: 0,
            seed: 1,
            stop_after: 0,
            kernels: Kernels::Auto,
            init: EncoderInit::Trainable,
            sigma: SigmaRule::Sky,
            jitter: ViewJitter::REFERENCE,
            local_views: 0,
            local_crop: 0,
            decorrelation: 0.0,
            average_epochs: 0,
            crowd: 0.0,
        }
    }

    /// Minutes on a laptop CPU: half-width encoder on 4×4-binned images.
    pub fn quick() -> Self {
        Self {
            preset: "quick".into(),
            width: 0.5,
            bin: 4,
            crop: 24,
            // Measured on the validation split (README, "The rotational
            // residual"): the bands and their residuals lift the 50-label
            // probe by +0.058 ± 0.008 over the bands alone (40 epochs), and
            // the test set's by +0.055;
            // `residual` alone was only tried with residuals made outside
            // tidalscope (+0.035, below both made the same way). The mirror
            // residuals on top ("The mirror residual") add +0.017 ± 0.007
            // at 50 labels and +0.013 ± 0.001 at 300 on the validation
            // split: tails, which the turn cancels, gain most.
            channels: Channels::All,
            queue_size: 2048,
            epochs: 12,
            batch: 128,
            checkpoint_every: 50,
            jitter: ViewJitter::strong(),
            // Measured on validation splits of both surveys (README,
            // "Multi-crop"): the probe gains at every label count.
            local_views: 4,
            local_crop: 12,
            // Measured on validation splits (README, "Decorrelation"): the
            // probe gains at every label count; 3 is worse than 1.
            decorrelation: 1.0,
            // Measured on the validation split (README, "Pretraining
            // length"): 4e-3 lifts the probe with 25 and 50 labels over
            // 2e-3 (which beat the reference's 1e-3 at every count) after
            // 24 and 40 epochs; 8e-3 is worse than either (12 epochs not
            // measured).
            lr: 4e-3,
            ..Self::paper()
        }
    }

    /// Sets `n` local views of the default size, half the global view
    /// (size 0 with none), so that they follow a changed `crop`.
    pub fn set_local_views(&mut self, n: usize) {
        self.local_views = n;
        self.local_crop = if n > 0 { self.crop / 2 } else { 0 };
    }

    /// A preset by name.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "paper" => Some(Self::paper()),
            "quick" => Some(Self::quick()),
            _ => None,
        }
    }
}

/// How the classifier is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Frozen encoder, only Dense(1): a converged, cross-validated logistic
    /// regression on representations computed once.
    Linear,
    /// Train encoder and head together (what the reference did, under the
    /// name "linear classifier").
    Finetune,
    /// The same architecture trained from random weights on the labels
    /// alone — the supervised baseline the paper compares against. The
    /// encoder folder supplies only the architecture and preprocessing.
    Scratch,
}

/// How labelled objects are split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SplitSpec {
    /// The reference layout: positives from a tidal set, negatives from the
    /// unlabelled set, fixed sizes per class.
    Reference {
        /// Training objects per class.
        train: usize,
        /// Validation objects per class.
        val: usize,
        /// Test objects per class.
        test: usize,
    },
    /// A labelled catalogue, split per class by fractions.
    Stratified {
        /// Validation fraction.
        val: f64,
        /// Test fraction.
        test: f64,
    },
}

/// The learning rate over the optimisation steps of pretraining,
/// fine-tuning and training from scratch. No `Default`: a new pretraining
/// takes its preset's (constant in both), a new fine-tuning or scratch run
/// [`LrSchedule::for_mode`], a config file without the field
/// [`LrSchedule::legacy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The same rate at every step (the reference's).
    Constant,
    /// Half a cosine from the full rate at the first step to zero after
    /// the last, so the weights settle instead of ending on whichever
    /// batch came last.
    Cosine,
}

impl LrSchedule {
    /// The schedule a new run of `mode` takes unless told otherwise: cosine
    /// for the stepped modes, so a run ends where the validation loss
    /// settles rather than wherever a constant rate's epoch-to-epoch swings
    /// leave it (the README's "At scale, as shipped" has the measurements);
    /// constant for the probe, which is fitted rather than stepped.
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Linear => Self::Constant,
            Mode::Finetune | Mode::Scratch => Self::Cosine,
        }
    }

    /// The schedule in words, for reports: "constant" or "cosine-decayed".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Cosine => "cosine-decayed",
        }
    }

    /// What a config file written before the schedule existed trained
    /// with: the constant rate.
    pub fn legacy() -> Self {
        Self::Constant
    }

    /// The factor on the learning rate at step `step` (0-based) of `total`
    /// (a `total` of 0 counts as 1): in (0, 1] for every step of the run.
    pub fn factor(self, step: usize, total: usize) -> f64 {
        match self {
            Self::Constant => 1.0,
            Self::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total.max(1) as f64).cos()),
        }
    }
}

/// An optional setting in a config file (a count or a switch): its value,
/// or `"auto"` when unset (TOML has no null, and an absent key means
/// something else: what files written before the setting existed did).
mod auto_or {
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    /// What a value of the setting looks like, for the error on anything else.
    pub trait Expected {
        const EXPECTED: &'static str;
    }

    impl Expected for usize {
        const EXPECTED: &'static str = "a number";
    }

    impl Expected for bool {
        const EXPECTED: &'static str = "true, false";
    }

    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) => x.serialize(s),
            None => s.serialize_str("auto"),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: Deserialize<'de> + Expected,
        D: Deserializer<'de>,
    {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<T> {
            Value(T),
            Text(String),
        }
        match Raw::<T>::deserialize(d)? {
            Raw::Value(x) => Ok(Some(x)),
            Raw::Text(t) if t == "auto" => Ok(None),
            Raw::Text(t) => Err(D::Error::custom(format!("expected {} or \"auto\", got {t:?}", T::EXPECTED))),
        }
    }
}

/// Settings of `finetune`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// Linear probe or full fine-tuning.
    pub mode: Mode,
    /// Epochs (at least; fine-tuning and scratch only).
    pub epochs: usize,
    /// Optimisation steps at least (fine-tuning and scratch: more epochs
    /// when the labels are few).
    #[serde(default)]
    pub min_steps: usize,
    /// Batch size.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// How the learning rate changes over the steps (fine-tuning and
    /// scratch). Older config files, written before it existed, read as
    /// constant.
    #[serde(default = "LrSchedule::legacy")]
    pub lr_schedule: LrSchedule,
    /// Keras-style L2 λ (fine-tuning only; the probe chooses its own by
    /// cross-validation).
    pub weight_decay: f64,
    /// Keep only this many training labels (0 = all).
    pub labels: usize,
    /// The split.
    pub split: SplitSpec,
    /// Augmentation noise when fine-tuning.
    pub noise: NoiseScale,
    /// How the training views of fine-tuning and scratch differ beyond the
    /// reference's flips, shift and noise (never a core or neighbour mask:
    /// the classifier sees whole cutouts at inference).
    #[serde(default)]
    pub jitter: ViewJitter,
    /// Seed.
    pub seed: u64,
    /// What runs the encoder (`auto`: the fast CPU kernels on the CPU);
    /// run folders record the resolved choice.
    #[serde(default)]
    pub kernels: Kernels,
    /// The linear probe (and fine-tuning's starting head) also tries the
    /// fewest leading principal components of the representation that
    /// hold this fraction of its variance over unlabelled images, each
    /// whitened to unit variance, and keeps the input that cross-validates
    /// clearly better, else averages the two heads (see
    /// [`crate::finetune::linear_probe`]); 0 = the standardised
    /// representation only. Older config
    /// files, written before it existed, read as 0.
    #[serde(default)]
    pub probe_variance: f64,
    /// Fine-tuning only: the classifier kept lies this fraction of the way
    /// from where fine-tuning started (the pretrained encoder with the
    /// linear probe's head) to where it ended, every weight and BatchNorm
    /// statistic mixed linearly (a weight-space ensemble, WiSE-FT:
    /// Wortsman et al. 2022); 1 = the fine-tuned weights. With
    /// [`FinetuneConfig::path_average`] on, "where it ended" is the path's
    /// mean, so the start weighs in once more. Older config files, written
    /// before it existed, read as 1.
    #[serde(default = "FinetuneConfig::fine_tuned_weights")]
    pub interpolation: f64,
    /// Fine-tuning only: also train on up to this many of the training
    /// data's unlabelled images (those outside every split, evenly spread),
    /// each with the linear probe's probability as a soft target
    /// (self-distillation, as in SimCLRv2: Chen et al. 2020); 0 = the
    /// labels alone. Older config files, written before it existed, read
    /// as 0.
    #[serde(default)]
    pub distill: usize,
    /// Fine-tuning and scratch: after the last step, measure the encoder's
    /// BatchNorm statistics afresh as the mean over batches of the clean
    /// inference views (centre crop, no added noise) of up to this many
    /// training images: the labelled training images, then unlabelled ones
    /// outside every split (their labels unread). Training keeps a running
    /// average over its augmented views, whose added noise the images
    /// scored later do not have; 0 = keep that average. Unset =
    /// [`FinetuneConfig::BATCHNORM_IMAGES`] when training from scratch,
    /// else 0 ([`FinetuneConfig::resolved_batchnorm_images`]; run folders
    /// record the resolved number). Older config files, written before
    /// it existed, read as 0.
    #[serde(default = "FinetuneConfig::kept_statistics", with = "auto_or")]
    pub batchnorm_images: Option<usize>,
    /// Fine-tuning only: how far along its schedule fine-tuning goes —
    /// not at all (the linear probe it starts from), 1/16, 1/8, 1/4, 1/2
    /// or all of it — chosen by this many-fold stratified cross-validation
    /// on the training labels alone (each fold fine-tunes from its own
    /// probe through the whole schedule; the stop with the highest pooled
    /// held-out AUC wins, ties to the earlier); 0 = the whole schedule;
    /// unset = [`FinetuneConfig::CV_FOLDS`] folds when fine-tuning on
    /// fewer than [`FinetuneConfig::CV_BELOW`] training labels without
    /// [`FinetuneConfig::path_average`], else 0
    /// ([`FinetuneConfig::resolved_cv_folds`]; run folders record the
    /// resolved number). Older config files, written before it existed,
    /// read as 0.
    #[serde(default = "FinetuneConfig::whole_schedule", with = "auto_or")]
    pub cv_folds: Option<usize>,
    /// Fine-tuning only: keep the mean of the weights (BatchNorm
    /// statistics included) at the six points of
    /// [`crate::finetune::STOPS`] along the run — where it started (the
    /// pretrained encoder with the probe's head) and after 1/16, 1/8, 1/4,
    /// 1/2 and all of its schedule — instead of the last step's: a weight
    /// average along one fine-tuning path (as in stochastic weight
    /// averaging, Izmailov et al. 2018), which needs no choice of where to
    /// stop. Unset = on when fine-tuning on fewer than
    /// [`FinetuneConfig::AVERAGE_BELOW`] training labels with no
    /// cross-validated stop asked for
    /// ([`FinetuneConfig::resolved_path_average`]; run folders record the
    /// resolved choice). Older config files, written before it existed,
    /// read as off.
    #[serde(default = "FinetuneConfig::last_weights", with = "auto_or")]
    pub path_average: Option<bool>,
}

impl FinetuneConfig {
    /// The default [`FinetuneConfig::probe_variance`]: on the quick
    /// preset's mocks, 95% kept 12–16 of 128 components, and the 50-label
    /// probe's AUC rose by 0.03–0.05 on two encoders and a data set other
    /// than the one it was chosen on; 90% and 99% did worse.
    pub const PROBE_VARIANCE: f64 = 0.95;

    /// Checks a [`FinetuneConfig::probe_variance`] (every command that
    /// takes one, before it does any work).
    ///
    /// # Errors
    /// What is wrong, for the caller to prefix with the option's name and value.
    pub fn check_probe_variance(v: f64) -> Result<(), &'static str> {
        if (0.0..=1.0).contains(&v) {
            Ok(())
        } else {
            Err("the fraction of the representation's variance the probe's whitening keeps must be in (0, 1], or 0 for none")
        }
    }

    /// The default [`FinetuneConfig::interpolation`].
    pub const INTERPOLATION: f64 = 1.0;

    /// The [`FinetuneConfig::interpolation`] of config files written
    /// before it existed: the fine-tuned weights (whatever
    /// [`FinetuneConfig::INTERPOLATION`] later becomes).
    pub fn fine_tuned_weights() -> f64 {
        1.0
    }

    /// Checks a [`FinetuneConfig::interpolation`].
    ///
    /// # Errors
    /// What is wrong, for the caller to prefix with the option's name and value.
    pub fn check_interpolation(v: f64) -> Result<(), &'static str> {
        if (0.0..=1.0).contains(&v) {
            Ok(())
        } else {
            Err("the fraction of the way from the pretrained to the fine-tuned weights must be in [0, 1]")
        }
    }

    /// The folds of [`FinetuneConfig::cv_folds`] left unset, below
    /// [`FinetuneConfig::CV_BELOW`] training labels.
    pub const CV_FOLDS: usize = 3;

    /// Fine-tuning on fewer training labels than this chooses its stop by
    /// cross-validation unless told otherwise. Measured on three validation
    /// splits (HSC-UD, HSC-UD with fainter features, LSST-y10; 10 draws
    /// each): with 25 labels +0.010 ± 0.004 AUC (19 of 30 draws), most of
    /// what fine-tuning lost to its own probe, at twice the time of a run
    /// of a few seconds; with 50 +0.002 ± 0.002 and with 100 −0.001 ±
    /// 0.002, at 2–3.5× the time.
    pub const CV_BELOW: usize = 50;

    /// The [`FinetuneConfig::cv_folds`] of config files written before it
    /// existed: the whole schedule.
    pub fn whole_schedule() -> Option<usize> {
        Some(0)
    }

    /// The folds a run on `train_labels` training labels uses: those set,
    /// or, unset, [`FinetuneConfig::CV_FOLDS`] when fine-tuning on fewer
    /// than [`FinetuneConfig::CV_BELOW`] labels without the path average
    /// ([`FinetuneConfig::resolved_path_average`]) and 0 otherwise.
    pub fn resolved_cv_folds(&self, train_labels: usize) -> usize {
        match self.cv_folds {
            Some(k) => k,
            None if self.mode == Mode::Finetune
                && train_labels < Self::CV_BELOW
                && !self.resolved_path_average(train_labels) =>
            {
                Self::CV_FOLDS
            }
            None => 0,
        }
    }

    /// Fine-tuning on fewer training labels than this keeps the average
    /// of its path ([`FinetuneConfig::path_average`]) unless told
    /// otherwise. Measured on three validation splits (HSC-UD, HSC-UD with
    /// fainter features, LSST-y10), paired draw by draw: with 25 labels
    /// +0.006 ± 0.002 AUC (standard error, 60 draws) against the
    /// stop chosen by cross-validation, in a half to a third of its time;
    /// with 50 +0.008 ± 0.002 (25 of 30) against the whole schedule; with
    /// 100 +0.001 ± 0.002, nothing.
    pub const AVERAGE_BELOW: usize = 100;

    /// The [`FinetuneConfig::path_average`] of config files written before
    /// it existed: the last step's weights.
    pub fn last_weights() -> Option<bool> {
        Some(false)
    }

    /// Whether a run on `train_labels` training labels keeps the average of
    /// its path: as set, or, unset, when fine-tuning on fewer than
    /// [`FinetuneConfig::AVERAGE_BELOW`] labels with no cross-validated
    /// stop set ([`FinetuneConfig::cv_folds`] unset or 0).
    pub fn resolved_path_average(&self, train_labels: usize) -> bool {
        match self.path_average {
            Some(on) => on,
            None => {
                self.mode == Mode::Finetune
                    && train_labels < Self::AVERAGE_BELOW
                    && self.cv_folds.is_none_or(|k| k == 0)
            }
        }
    }

    /// Checks [`FinetuneConfig::path_average`] against the mode and the
    /// folds.
    ///
    /// # Errors
    /// What is wrong, for the caller to prefix with the option's name and value.
    pub fn check_path_average(&self) -> Result<(), &'static str> {
        match (self.path_average, self.mode, self.cv_folds) {
            (Some(true), Mode::Linear | Mode::Scratch, _) => {
                Err("only fine-tuning starts from pretrained weights and has a path to average (use off)")
            }
            (Some(true), _, Some(k)) if k > 0 => Err(
                "the path average and a cross-validated stop both settle where fine-tuning ends: ask for one (0 folds, or the path average off)",
            ),
            _ => Ok(()),
        }
    }

    /// Checks a [`FinetuneConfig::cv_folds`] for `mode`.
    ///
    /// # Errors
    /// What is wrong, for the caller to prefix with the option's name and value.
    pub fn check_cv_folds(folds: usize, mode: Mode) -> Result<(), &'static str> {
        match (folds, mode) {
            (0, _) => Ok(()),
            (1, _) => Err("cross-validation needs at least 2 folds (or 0 to fine-tune through the whole schedule)"),
            (_, Mode::Finetune) => Ok(()),
            _ => Err("only fine-tuning has a stop to choose between its probe and its whole schedule (use 0)"),
        }
    }

    /// Adam's learning rate for `mode`: 1e-4 when fine-tuning a pretrained
    /// encoder (at 1e-3 its BatchNorm statistics swing from epoch to epoch:
    /// on the demo's mocks validation loss jumped between 0.28 and 1.31 and
    /// the test AUC fell to 0.80, against 0.905 at 1e-4), 1e-3 otherwise.
    pub fn default_lr(mode: Mode) -> f64 {
        match mode {
            Mode::Finetune => 1e-4,
            Mode::Linear | Mode::Scratch => 1e-3,
        }
    }

    /// The images on which [`FinetuneConfig::batchnorm_images`] measures
    /// fresh statistics when unset for training from scratch, and the
    /// number to ask for otherwise. Scratch, measured on
    /// validation splits (3 label draws each): on LSST-y10 mocks with
    /// 1,000 labels its AUC went from 0.663 / 0.794 / 0.803 to 0.871 /
    /// 0.880 / 0.882 (its validation loss had climbed to 2.8 while the
    /// training loss fell: statistics of noisy views applied to clean
    /// images), +0.008 at 25 labels; on HSC-UD +0.007 at 50 and +0.002 at
    /// 1,000. Fine-tuning: see [`FinetuneConfig::resolved_batchnorm_images`].
    pub const BATCHNORM_IMAGES: usize = 2000;

    /// The [`FinetuneConfig::batchnorm_images`] of config files written
    /// before it existed: training's statistics kept.
    pub fn kept_statistics() -> Option<usize> {
        Some(0)
    }

    /// The images a run measures fresh BatchNorm statistics on: as set,
    /// or, unset, [`FinetuneConfig::BATCHNORM_IMAGES`] when training from
    /// scratch and 0 otherwise; always 0 for the linear probe, which
    /// trains no encoder. Fine-tuning keeps training's statistics unless
    /// told: after its last step they measured −0.011 at 50 labels on
    /// HSC-UD; after its path average, on validation splits, +0.009 ±
    /// 0.002 AUC at 25 labels and +0.005 ± 0.002 at 50 with 40-epoch
    /// encoders (three splits, 20 paired draws each) but −0.019 ± 0.010
    /// and −0.010 ± 0.008 with the 8-epoch encoder of `experiment labels
    /// --quick` (10 draws): the sign depends on the encoder.
    pub fn resolved_batchnorm_images(&self) -> usize {
        match (self.batchnorm_images, self.mode) {
            // The probe trains no encoder: nothing to measure.
            (_, Mode::Linear) => 0,
            (Some(n), _) => n,
            (None, Mode::Scratch) => Self::BATCHNORM_IMAGES,
            (None, _) => 0,
        }
    }

    /// The default settings for `mode`.
    pub fn for_mode(mode: Mode) -> Self {
        Self {
            mode,
            lr: Self::default_lr(mode),
            lr_schedule: LrSchedule::for_mode(mode),
            // Only fine-tuning has two ends to interpolate between.
            interpolation: if mode == Mode::Finetune { Self::INTERPOLATION } else { Self::fine_tuned_weights() },
            ..Self::default()
        }
    }
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Linear,
            epochs: 50,
            min_steps: 500,
            batch: 24,
            lr: 1e-3,
            lr_schedule: LrSchedule::Constant,
            weight_decay: 5e-4,
            labels: 0,
            split: SplitSpec::Stratified { val: 0.1, test: 0.2 },
            noise: NoiseScale::Reference,
            jitter: ViewJitter::REFERENCE,
            seed: 1,
            kernels: Kernels::Auto,
            probe_variance: Self::PROBE_VARIANCE,
            // The default mode is the probe, which trains nothing to interpolate.
            interpolation: Self::fine_tuned_weights(),
            distill: 0,
            batchnorm_images: None,
            cv_folds: None,
            path_average: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cosine_schedule_falls_to_nearly_zero_and_is_the_networks_default() {
        let total = 1000;
        assert_eq!(LrSchedule::Cosine.factor(0, total), 1.0);
        assert!((LrSchedule::Cosine.factor(500, total) - 0.5).abs() < 1e-12);
        let last = LrSchedule::Cosine.factor(total - 1, total);
        assert!(last > 0.0 && last < 1e-5, "{last}");
        let f: Vec<f64> = (0..total).map(|t| LrSchedule::Cosine.factor(t, total)).collect();
        assert!(f.windows(2).all(|w| w[1] < w[0]), "falls at every step");
        assert!((0..total).all(|t| LrSchedule::Constant.factor(t, total) == 1.0));
        // New fine-tuning and scratch runs take the cosine; the probe, fitted, says constant.
        assert_eq!(FinetuneConfig::for_mode(Mode::Finetune).lr_schedule, LrSchedule::Cosine);
        assert_eq!(FinetuneConfig::for_mode(Mode::Scratch).lr_schedule, LrSchedule::Cosine);
        assert_eq!(FinetuneConfig::for_mode(Mode::Linear).lr_schedule, LrSchedule::Constant);
    }

    #[test]
    fn a_config_written_before_the_schedule_existed_reads_back_constant_and_undistilled() {
        // Such a file was trained at the constant rate, whatever new runs default to.
        let text = toml::to_string(&FinetuneConfig::for_mode(Mode::Finetune)).unwrap();
        let old: String = text.lines().filter(|l| !l.starts_with("lr_schedule")).map(|l| format!("{l}\n")).collect();
        assert_ne!(old, text);
        let back: FinetuneConfig = toml::from_str(&old).unwrap();
        assert_eq!(back.lr_schedule, LrSchedule::Constant);
        // Likewise one written before interpolation and distillation existed.
        let old: String = text
            .lines()
            .filter(|l| !l.starts_with("interpolation") && !l.starts_with("distill"))
            .map(|l| format!("{l}\n"))
            .collect();
        let back: FinetuneConfig = toml::from_str(&old).unwrap();
        assert_eq!((back.interpolation, back.distill), (1.0, 0));
        let cos = FinetuneConfig::for_mode(Mode::Scratch);
        assert_eq!(toml::from_str::<FinetuneConfig>(&toml::to_string(&cos).unwrap()).unwrap(), cos);
    }

    #[test]
    fn the_quick_preset_masks_the_core_adds_local_views_and_decorrelates_and_the_paper_preset_does_not() {
        // The quick preset is what the science numbers are measured with:
        // its views hide the host's core; the paper preset reproduces the
        // reference's views exactly.
        assert_eq!(PretrainConfig::quick().jitter.core_mask, 0.125);
        assert_eq!(PretrainConfig::quick().jitter.sky, 0.5);
        assert!(PretrainConfig::quick().jitter.rotations);
        assert_eq!((PretrainConfig::quick().local_views, PretrainConfig::quick().local_crop), (4, 12));
        assert_eq!((PretrainConfig::paper().local_views, PretrainConfig::paper().local_crop), (0, 0));
        assert_eq!(PretrainConfig::paper().jitter, ViewJitter::REFERENCE);
        assert_eq!(PretrainConfig::paper().jitter.core_mask, 0.0);
        assert_eq!((PretrainConfig::quick().decorrelation, PretrainConfig::paper().decorrelation), (1.0, 0.0));
        assert_eq!((PretrainConfig::quick().lr, PretrainConfig::paper().lr), (4e-3, 1e-3));
        assert_eq!(
            (PretrainConfig::quick().channels, PretrainConfig::paper().channels),
            (Channels::All, Channels::Image)
        );
        assert_eq!(PretrainConfig::quick().centring, Centring::HalfPixel);
        // A config written before the mask existed reads back without it,
        // and one written before the penalty, without the penalty (so
        // `--resume` of an older run keeps its loss).
        let mut text = toml::to_string(&PretrainConfig::quick()).unwrap();
        text = text
            .lines()
            .filter(|l| {
                !l.starts_with("core_mask")
                    && !l.starts_with("decorrelation")
                    && !l.starts_with("blur")
                    && !l.starts_with("neighbours")
                    && !l.starts_with("zoom")
                    && !l.starts_with("sky")
                    && !l.starts_with("lr_schedule")
                    && !l.starts_with("channels")
                    && !l.starts_with("centring")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let old: PretrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(old.jitter.core_mask, 0.0);
        assert_eq!(old.jitter.blur, 0.0, "nor the seeing jitter, which came later");
        assert_eq!(old.jitter.neighbours, 0.0, "nor the neighbour mask, later still");
        assert_eq!(old.jitter.zoom, 0.0);
        assert_eq!(old.jitter.sky, 0.0, "nor the sky jitter");
        assert_eq!(old.decorrelation, 0.0);
        assert_eq!(old.lr_schedule, LrSchedule::Constant, "nor the schedule: older runs stepped at one rate");
        assert_eq!(old.channels, Channels::Image, "nor the residual channels: older runs saw the bands only");
        assert_eq!(old.centring, Centring::HalfPixel, "nor the subpixel centre: older residuals were rounded");
    }

    #[test]
    fn a_finetune_config_written_before_its_views_were_a_setting_reads_back_with_the_reference_views() {
        let mut cfg = FinetuneConfig::for_mode(Mode::Finetune);
        cfg.jitter = ViewJitter { rotations: true, flux: 0.5, ..ViewJitter::REFERENCE };
        let text = toml::to_string(&cfg).unwrap();
        let back: FinetuneConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg, "the views round-trip");
        // Older run folders have no [jitter] table: the views they trained
        // with were the reference's.
        let table = text.find("[jitter]").expect("a jitter table");
        let end = text[table + 1..].find("\n[").map_or(text.len(), |e| table + 1 + e);
        let old: FinetuneConfig = toml::from_str(&format!("{}{}", &text[..table], &text[end..])).unwrap();
        assert_eq!(old.jitter, ViewJitter::REFERENCE);
        assert_eq!(FinetuneConfig::default().jitter, ViewJitter::REFERENCE);
    }

    #[test]
    fn fresh_batchnorm_statistics_are_scratchs_default_and_round_trip() {
        let n = FinetuneConfig::BATCHNORM_IMAGES;
        let finetune = FinetuneConfig::for_mode(Mode::Finetune);
        assert_eq!(finetune.batchnorm_images, None);
        assert_eq!(finetune.resolved_batchnorm_images(), 0, "fine-tuning keeps training's, path average or not");
        assert_eq!(FinetuneConfig::for_mode(Mode::Scratch).resolved_batchnorm_images(), n);
        assert_eq!(FinetuneConfig::for_mode(Mode::Linear).resolved_batchnorm_images(), 0);
        let probe = FinetuneConfig { batchnorm_images: Some(7), ..FinetuneConfig::for_mode(Mode::Linear) };
        assert_eq!(probe.resolved_batchnorm_images(), 0, "the probe measures nothing");
        let set = FinetuneConfig { batchnorm_images: Some(7), ..finetune.clone() };
        assert_eq!(set.resolved_batchnorm_images(), 7);
        let text = toml::to_string(&finetune).unwrap();
        assert!(text.contains("batchnorm_images = \"auto\""), "{text}");
        assert_eq!(toml::from_str::<FinetuneConfig>(&text).unwrap().batchnorm_images, None);
        let t = toml::to_string(&set).unwrap();
        assert_eq!(toml::from_str::<FinetuneConfig>(&t).unwrap().batchnorm_images, Some(7));
        // Written before it existed: training's statistics kept, scratch's too.
        let scratch = toml::to_string(&FinetuneConfig::for_mode(Mode::Scratch)).unwrap();
        let old: String = scratch.lines().filter(|l| !l.starts_with("batchnorm_images")).collect::<Vec<_>>().join("\n");
        assert_eq!(toml::from_str::<FinetuneConfig>(&old).unwrap().resolved_batchnorm_images(), 0);
    }

    #[test]
    fn the_path_average_is_automatic_with_few_fine_tuning_labels_and_round_trips() {
        let auto = FinetuneConfig::for_mode(Mode::Finetune);
        assert_eq!(auto.path_average, None);
        let below = FinetuneConfig::AVERAGE_BELOW;
        assert!(auto.resolved_path_average(25) && auto.resolved_path_average(below - 1));
        assert!(!auto.resolved_path_average(below));
        // Averaging replaces the cross-validated stop by default…
        assert_eq!(auto.resolved_cv_folds(25), 0);
        // …which a stop asked for turns off, as does averaging asked off.
        let cv = FinetuneConfig { cv_folds: Some(3), ..auto.clone() };
        assert!(!cv.resolved_path_average(25));
        let off = FinetuneConfig { path_average: Some(false), ..auto.clone() };
        assert_eq!(off.resolved_cv_folds(25), FinetuneConfig::CV_FOLDS);
        assert!(FinetuneConfig { path_average: Some(true), ..auto.clone() }.resolved_path_average(5000));
        for mode in [Mode::Linear, Mode::Scratch] {
            assert!(!FinetuneConfig::for_mode(mode).resolved_path_average(10));
            assert!(FinetuneConfig { path_average: Some(true), ..FinetuneConfig::for_mode(mode) }
                .check_path_average()
                .is_err());
        }
        assert!(FinetuneConfig { path_average: Some(true), ..cv.clone() }.check_path_average().is_err());
        assert!(FinetuneConfig { path_average: Some(true), cv_folds: Some(0), ..cv }.check_path_average().is_ok());
        // "auto", true and false round-trip; files from before it read as off.
        let text = toml::to_string(&auto).unwrap();
        assert!(text.contains("path_average = \"auto\""), "{text}");
        assert_eq!(toml::from_str::<FinetuneConfig>(&text).unwrap(), auto);
        for on in [true, false] {
            let c = FinetuneConfig { path_average: Some(on), ..auto.clone() };
            let t = toml::to_string(&c).unwrap();
            assert!(t.contains(&format!("path_average = {on}")), "{t}");
            assert_eq!(toml::from_str::<FinetuneConfig>(&t).unwrap(), c);
        }
        let old: String = text.lines().filter(|l| !l.starts_with("path_average")).collect::<Vec<_>>().join("\n");
        assert_eq!(toml::from_str::<FinetuneConfig>(&old).unwrap().path_average, Some(false));
        let e = toml::from_str::<FinetuneConfig>(&text.replace("path_average = \"auto\"", "path_average = \"yes\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected true, false or \"auto\""), "{e}");
    }

    #[test]
    fn cross_validated_stops_are_automatic_below_50_fine_tuning_labels_and_round_trip() {
        let auto = FinetuneConfig { path_average: Some(false), ..FinetuneConfig::for_mode(Mode::Finetune) };
        assert_eq!(auto.cv_folds, None);
        assert_eq!(auto.resolved_cv_folds(25), FinetuneConfig::CV_FOLDS);
        assert_eq!(auto.resolved_cv_folds(49), FinetuneConfig::CV_FOLDS);
        assert_eq!(auto.resolved_cv_folds(50), 0);
        assert_eq!(FinetuneConfig { cv_folds: Some(5), ..auto.clone() }.resolved_cv_folds(1000), 5);
        assert_eq!(FinetuneConfig { cv_folds: Some(0), ..auto.clone() }.resolved_cv_folds(10), 0);
        // The probe and scratch have no stop to choose.
        for mode in [Mode::Linear, Mode::Scratch] {
            assert_eq!(FinetuneConfig::for_mode(mode).resolved_cv_folds(10), 0);
        }
        // Unset is written as "auto" and reads back unset; a number as itself;
        // files from before the setting (no key) read as the whole schedule.
        let text = toml::to_string(&auto).unwrap();
        assert!(text.contains("cv_folds = \"auto\""), "{text}");
        assert_eq!(toml::from_str::<FinetuneConfig>(&text).unwrap(), auto);
        let three = FinetuneConfig { cv_folds: Some(3), ..auto.clone() };
        let text3 = toml::to_string(&three).unwrap();
        assert!(text3.contains("cv_folds = 3"), "{text3}");
        assert_eq!(toml::from_str::<FinetuneConfig>(&text3).unwrap(), three);
        let old: String = text.lines().filter(|l| !l.starts_with("cv_folds")).collect::<Vec<_>>().join("\n");
        assert_eq!(toml::from_str::<FinetuneConfig>(&old).unwrap().cv_folds, Some(0));
        let bad = text.replace("\"auto\"", "\"some\"");
        let e = toml::from_str::<FinetuneConfig>(&bad).unwrap_err().to_string();
        assert!(e.contains("expected a number or \"auto\""), "{e}");
    }
}

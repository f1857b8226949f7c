//! The command line: one struct per subcommand; each field's doc comment is
//! its `--help` text.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use tidalscope_io::source::{Format, Layout};
use tidalscope_model::device::DeviceKind;

/// Find tidal features (streams, shells, tails, plumes) around galaxies in
/// deep multi-band survey images with self-supervised learning.
#[derive(Debug, Parser)]
#[command(name = "tidalscope", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate realistic labelled survey cutouts with tidal features.
    Simulate(SimulateArgs),
    /// Run the whole pipeline on built-in simulated data and write a report.
    Demo(DemoArgs),
    /// Self-supervised NNCLR pretraining of the encoder.
    Pretrain(PretrainArgs),
    /// Train the classifier (linear probe, fine-tuning or from scratch) on labelled data.
    Finetune(FinetuneArgs),
    /// Score held-out objects: ROC, AUC, completeness at fixed contamination.
    Evaluate(EvaluateArgs),
    /// Score every object of a dataset with a trained classifier.
    Predict(PredictArgs),
    /// Gather the outputs of `predict --shard K/N` runs into one catalogue,
    /// checking that every shard is there and that all used the same model.
    Collect(CollectArgs),
    /// Write the 128-d representations of every object of a dataset.
    Embed(EmbedArgs),
    /// Find the galaxies most similar to one or more query galaxies.
    Search(SearchArgs),
    /// Serve a local web page to label galaxies, with queues ordered by the
    /// classifier and a probe retrained on the labels in seconds.
    Label(LabelArgs),
    /// Turn a Keras model (SavedModel folder or Keras 3 .keras file) into a
    /// tidalscope encoder or classifier folder.
    ImportKeras(ImportKerasArgs),
    /// Write a tidalscope encoder or classifier folder as a Keras 3 .keras file.
    ExportKeras(ExportKerasArgs),
    /// Describe a dataset: count, shape, bands, keys, per-band statistics.
    Inspect(InspectArgs),
    /// Convert a dataset between npy, FITS and tf.data.
    Convert(ConvertArgs),
    /// Experiments answering the science questions, each with a report.
    #[command(subcommand)]
    Experiment(ExperimentCommand),
    /// Measure the speed of a part of tidalscope.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `--device`, shared by every command that runs a network.
#[derive(Debug, Clone, Copy, Args)]
pub struct DeviceArgs {
    /// Compute device: cpu, or cuda[:N] (needs a `--features cuda` build).
    #[arg(long = "device", value_name = "DEVICE", default_value = "cpu")]
    pub kind: DeviceKind,
}

impl DeviceArgs {
    /// The burn device.
    pub fn device(self) -> anyhow::Result<burn::prelude::Device> {
        Ok(self.kind.device()?)
    }
}

/// `--shard K/N`: part K (from 0) of N equal, contiguous parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which part.
    pub k: usize,
    /// How many parts.
    pub n: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s.split_once('/').ok_or_else(|| format!("{s:?}: expected K/N, e.g. 0/8"))?;
        let k: usize = k.trim().parse().map_err(|_| format!("{s:?}: K is not a number"))?;
        let n: usize = n.trim().parse().map_err(|_| format!("{s:?}: N is not a number"))?;
        if n == 0 || k >= n {
            return Err(format!("{s:?}: K must run from 0 to N−1"));
        }
        Ok(Self { k, n })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// How to read an input (shared by every command that reads data).
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Input format, when recognising it by content is not wanted:
    /// tfdata, npy, npz, fits, picture, catalog, simulated, folder, coadd.
    #[arg(long)]
    pub format: Option<Format>,
    /// Pixel order of arrays: auto (band axis = the small one), hwc or chw.
    #[arg(long, default_value = "auto")]
    pub layout: Layout,
    /// Key (tf.data) or array name (npz) holding the image.
    #[arg(long, default_value = "image")]
    pub image_key: String,
    /// tf.data interleave cycle length for multi-shard datasets (default:
    /// the CPU count, as TensorFlow's Dataset.load).
    #[arg(long)]
    pub cycle_length: Option<usize>,
    /// Cut each object of the data (a catalogue CSV with id, ra and dec
    /// columns, in degrees) from coadd images: `g=g.fits,r=r.fits,…` for
    /// one tile (repeat the flag for more tiles), or a tile list CSV with
    /// columns tile,band,file. Images need a TAN or TAN-SIP WCS.
    #[arg(long, value_name = "BAND=FITS,…|TILES.csv")]
    pub coadd: Vec<String>,
    /// Side of the cutouts cut from coadds, in pixels.
    #[arg(long, default_value_t = 128)]
    pub cutout_size: usize,
    /// Catalogue column of the right ascension, degrees (with --coadd).
    #[arg(long, default_value = "ra")]
    pub ra_column: String,
    /// Catalogue column of the declination, degrees (with --coadd).
    #[arg(long, default_value = "dec")]
    pub dec_column: String,
}

impl SourceArgs {
    /// Recognise everything by content (the command-line defaults): for
    /// data tidalscope wrote itself.
    pub fn auto() -> Self {
        Self {
            format: None,
            layout: Layout::Auto,
            image_key: "image".into(),
            cycle_length: None,
            coadd: Vec::new(),
            cutout_size: 128,
            ra_column: "ra".into(),
            dec_column: "dec".into(),
        }
    }

    /// The coadd settings, when `--coadd` is given.
    pub fn coadd_options(&self) -> anyhow::Result<Option<tidalscope_io::source::CoaddOptions>> {
        if self.coadd.is_empty() {
            return Ok(None);
        }
        Ok(Some(tidalscope_io::source::CoaddOptions::parse(
            &self.coadd,
            self.cutout_size,
            &self.ra_column,
            &self.dec_column,
        )?))
    }
}

/// Where the training data comes from (any readable source).
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Data to train on (repeatable): a simulate folder, a catalogue, a
    /// tf.data folder, .npy/.npz, FITS, or a folder of images.
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// The reference layout: the unlabelled set (negatives for the
    /// classifier are drawn from it).
    #[arg(long, requires = "tidal")]
    pub unlabelled: Option<PathBuf>,
    /// The reference layout: the set of tidal galaxies (all label 1).
    #[arg(long, requires = "unlabelled")]
    pub tidal: Option<PathBuf>,
    /// Labels by id from a CSV (the `labels.csv` of `tidalscope label`, or
    /// any with `id` and `label` 1/0 or `verdict` columns), replacing the
    /// data's own: objects not in it, and unsure ones, are unlabelled.
    #[arg(long, conflicts_with = "unlabelled")]
    pub label_file: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Arguments of `tidalscope pretrain`.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Run folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Named settings: `paper` (the reference exactly) or `quick` (CPU
    /// minutes: half-width encoder, 4×4-binned 24 px views, 4 local views
    /// of 12 px).
    #[arg(long, value_enum, default_value = "paper")]
    pub preset: PresetArg,
    /// Epochs (preset: paper 25, quick 12).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per batch (paper 220, quick 128).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Adam learning rate (paper 1e-3, quick 4e-3).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// How the learning rate changes over the run: constant (the
    /// reference's, both presets) or cosine (from the full rate down to
    /// zero along half a cosine over all the run's steps).
    #[arg(long, value_enum)]
    pub lr_schedule: Option<LrScheduleArg>,
    /// Support-queue size (paper 10000, quick 2048).
    #[arg(long)]
    pub queue_size: Option<usize>,
    /// Softmax temperature τ of the contrastive loss (0.1, the reference's).
    #[arg(long, value_name = "TAU", allow_negative_numbers = true)]
    pub temperature: Option<f64>,
    /// Weight W of a decorrelation penalty added to the loss: W × the mean
    /// squared correlation between pairs of representation dimensions over
    /// the batch (quick preset 1; paper preset 0, off: the reference's
    /// loss).
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    pub decorrelation: Option<f64>,
    /// Stochastic weight averaging: write the mean of the encoder's
    /// weights at the end of each of the last N epochs (its BatchNorm
    /// statistics measured again, on the CPU, over one pass of training
    /// views) instead of the last weights (0: off, the reference's).
    #[arg(long, value_name = "N")]
    pub average_epochs: Option<usize>,
    /// Crowding: paste into each training image the compact sources of N
    /// other training images on average (drawn from the first 512; for one
    /// dataset and no --max-images below 512, the images `convert --crowd N
    /// --seed S` writes), before binning and normalisation; σ_b and the
    /// representations' spread are measured on the images as given (0: off).
    #[arg(long, value_name = "N")]
    pub crowd: Option<f64>,
    /// Encoder width multiplier (paper 1, quick 0.5).
    #[arg(long)]
    pub width: Option<f64>,
    /// Bin images k×k before training (paper 1, quick 4).
    #[arg(long)]
    pub bin: Option<usize>,
    /// View size in (binned) pixels (paper 96, quick 24).
    #[arg(long)]
    pub crop: Option<usize>,
    /// Input channels: image (the bands as given), residual (each band
    /// minus its copy turned by 180° about the galaxy's centre, where faint
    /// asymmetric structure stands out), both (the bands and their
    /// residuals: twice the channels) or all (both, then each band minus
    /// its reflection about the galaxy's major axis, which keeps the S of a
    /// tail pair that the turn cancels: three times the channels). Stored
    /// with the model; inference repeats it.
    #[arg(long, value_enum)]
    pub channels: Option<ChannelsArg>,
    /// How finely the residuals' centre is kept: half-pixel (rounded, so
    /// the turn maps pixels onto pixels; default) or subpixel (as
    /// measured, the turned copy interpolated: measured no better). Stored
    /// with the model.
    #[arg(long, value_enum)]
    pub centring: Option<CentringArg>,
    /// Augmentation noise: reference (the reference code's exact, weak
    /// noise; default), physical (U(1,3)·σ_b in raw flux, the paper's stated
    /// intent, which drowns faint features) or none.
    #[arg(long, value_enum)]
    pub noise: Option<NoiseArg>,
    /// How identity blocks start: trainable (every BN γ = 1, default) or
    /// reference (the reference's γ = 0, which leaves those branches dead).
    #[arg(long, value_enum)]
    pub init: Option<InitArg>,
    /// How σ_b of the asinh normalisation is measured: sky (sigma-clipped
    /// noise of each image's outer frame, default) or image (MAD of all
    /// pixels, the reference).
    #[arg(long, value_enum)]
    pub sigma: Option<SigmaArg>,
    /// How training views differ: reference (flips, a few pixels of shift,
    /// noise) or strong (also 90° rotations, a wider crop window, brightness
    /// and colour jitter, a core mask and a sky jitter). Preset: paper
    /// reference, quick strong.
    #[arg(long, value_enum)]
    pub jitter: Option<JitterArg>,
    /// Lay sky over a disc of radius U(0, F)·crop around each view's target
    /// (the cutout centre), so views must be matched outside the host's
    /// core (0: off). Default: 0.125 with `--jitter strong` (the quick
    /// preset's), off with the reference's views (the paper preset's).
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub core_mask: Option<f64>,
    /// Seeing jitter: convolve each view's flux with a Gaussian of σ drawn
    /// U(0, S) view pixels, as if seen through a broader PSF (0 to a quarter
    /// of the view; 0: off, the default of both presets).
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub blur: Option<f64>,
    /// Neighbour mask: lay sky over each compact bright source other than
    /// the target with probability P per source and view, so views cannot
    /// be matched by the field (0 to 1; 0: off, both presets). A source: at
    /// most 1/16 of the view above 3σ_b once the median at its distance
    /// from the target is subtracted, peaking at ≥ 10σ_b, no pixel within 2
    /// pixels of the cutout centre.
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub neighbour_mask: Option<f64>,
    /// Zoom: resample each view from a square of c·k image pixels, k
    /// log-uniform in [1/(1+Z), 1+Z] (capped by the image), keeping surface
    /// brightness (0 to 1; 0: off, both presets).
    #[arg(long, value_name = "Z", allow_negative_numbers = true)]
    pub zoom: Option<f64>,
    /// Sky jitter: add to each channel of each view its own smooth sky
    /// pattern (a plane wave of 2–6 view widths) of amplitude U(0, A)·3σ_b
    /// in linear flux, so views cannot be matched by the sky-subtraction
    /// residuals they share (0 to 10; 0: off). Default: 0.5 with `--jitter
    /// strong` (the quick preset's), off with the reference's views (the
    /// paper preset's).
    #[arg(long, value_name = "A", allow_negative_numbers = true)]
    pub sky_jitter: Option<f64>,
    /// Multi-crop: N small local views per image besides the two global
    /// ones, cut from anywhere in the prepared image with the same jitter
    /// (no core mask) and paired with the global views' neighbours
    /// (0 to 16; quick preset 4, paper preset 0: off).
    #[arg(long, value_name = "N")]
    pub local_views: Option<usize>,
    /// Side of the local views in binned pixels (default: half the
    /// global view; at least 8, less than the global view).
    #[arg(long, value_name = "PX")]
    pub local_crop: Option<usize>,
    /// What runs the encoder's arithmetic: auto (the fast kernels on the
    /// CPU, burn on a GPU; `TIDALSCOPE_KERNELS=burn` forces burn), fast or
    /// burn. Recorded in config.toml.
    #[arg(long, value_enum)]
    pub kernels: Option<KernelsArg>,
    /// Use only the first N images (0 = all).
    #[arg(long)]
    pub max_images: Option<usize>,
    /// Checkpoint every N steps.
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Continue an interrupted run in --out exactly where its last
    /// checkpoint left it (its config.toml is used).
    #[arg(long)]
    pub resume: bool,
    /// Stop after N steps as if interrupted (for testing --resume).
    #[arg(long, hide = true, default_value_t = 0)]
    pub stop_after: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// A named set of pretraining settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// The reference exactly: full-width encoder, 96 px views.
    Paper,
    /// CPU minutes: half-width encoder, 4×4-binned 24 px views, 4 local
    /// views of 12 px.
    Quick,
}

impl PresetArg {
    /// The preset's settings.
    pub fn config(self) -> tidalscope_train::config::PretrainConfig {
        match self {
            Self::Paper => tidalscope_train::config::PretrainConfig::paper(),
            Self::Quick => tidalscope_train::config::PretrainConfig::quick(),
        }
    }
}

/// `--lr-schedule` of `pretrain`, `finetune`, `demo` and `experiment labels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LrScheduleArg {
    /// The same learning rate at every step.
    Constant,
    /// From the full rate down to zero along half a cosine.
    Cosine,
}

impl From<LrScheduleArg> for tidalscope_train::config::LrSchedule {
    fn from(a: LrScheduleArg) -> Self {
        match a {
            LrScheduleArg::Constant => Self::Constant,
            LrScheduleArg::Cosine => Self::Cosine,
        }
    }
}

/// The schedule a run of `mode` trains with: the one asked for, else the
/// mode's default; the probe, fitted rather than stepped, is always
/// constant. Every command resolves `--lr-schedule` here, so they share one
/// default.
pub fn lr_schedule(
    arg: Option<LrScheduleArg>,
    mode: tidalscope_train::config::Mode,
) -> tidalscope_train::config::LrSchedule {
    use tidalscope_train::config::{LrSchedule, Mode};
    match arg {
        Some(a) if mode != Mode::Linear => a.into(),
        _ => LrSchedule::for_mode(mode),
    }
}

/// A setting that is on or off (unset: the command's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

impl Switch {
    /// `Some(true)` for on, `Some(false)` for off, `None` unset.
    pub fn resolve(s: Option<Self>) -> Option<bool> {
        s.map(|s| s == Self::On)
    }
}

/// Augmentation noise (`--noise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NoiseArg {
    /// The reference code's exact, weak noise.
    Reference,
    /// U(1,3)·σ_b in raw flux, the paper's stated intent.
    Physical,
    /// No noise.
    None,
}

impl From<NoiseArg> for tidalscope_data::augment::NoiseScale {
    fn from(n: NoiseArg) -> Self {
        match n {
            NoiseArg::Reference => Self::Reference,
            NoiseArg::Physical => Self::Physical,
            NoiseArg::None => Self::None,
        }
    }
}

/// How the classifier is trained (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Frozen encoder, a converged cross-validated linear probe.
    Linear,
    /// Train everything.
    Finetune,
    /// The same architecture from random weights.
    Scratch,
}

impl From<ModeArg> for tidalscope_train::config::Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Linear => Self::Linear,
            ModeArg::Finetune => Self::Finetune,
            ModeArg::Scratch => Self::Scratch,
        }
    }
}

/// A method of `experiment labels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// NNCLR encoder + linear probe.
    Linear,
    /// NNCLR encoder + fine-tuning.
    Finetune,
    /// The same architecture trained from scratch.
    Scratch,
    /// Logistic regression on non-parametric morphology.
    Morphology,
    /// NNCLR encoder's pooled backbone features (before its dense layers) + linear probe.
    Backbone,
}

impl MethodArg {
    /// The name used in results.csv and run folders.
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Finetune => "finetune",
            Self::Scratch => "scratch",
            Self::Morphology => "morphology",
            Self::Backbone => "backbone",
        }
    }

    /// The name used in reports and plots.
    pub fn title(self) -> &'static str {
        match self {
            Self::Linear => "NNCLR + linear probe",
            Self::Finetune => "NNCLR + fine-tuning",
            Self::Scratch => "supervised from scratch",
            Self::Morphology => "morphology + logistic regression",
            Self::Backbone => "NNCLR backbone + linear probe",
        }
    }

    /// Whether each label draw trains a network (costly: fewer draws).
    pub fn trains_network(self) -> bool {
        matches!(self, Self::Finetune | Self::Scratch)
    }
}

/// `--init` of `pretrain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitArg {
    /// Every BN γ starts at 1: every identity branch trains.
    Trainable,
    /// The reference's γ = 0 in identity blocks (dead branches).
    Reference,
}

/// `--sigma` of `pretrain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SigmaArg {
    /// Sigma-clipped noise of each image's outer frame.
    Sky,
    /// MAD of every pixel (the reference).
    Image,
}

impl From<InitArg> for tidalscope_train::config::EncoderInit {
    fn from(i: InitArg) -> Self {
        match i {
            InitArg::Trainable => Self::Trainable,
            InitArg::Reference => Self::Reference,
        }
    }
}

impl From<SigmaArg> for tidalscope_train::config::SigmaRule {
    fn from(s: SigmaArg) -> Self {
        match s {
            SigmaArg::Sky => Self::Sky,
            SigmaArg::Image => Self::Image,
        }
    }
}

/// `--jitter` of `pretrain` and `finetune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JitterArg {
    /// Flips and a 13/96 crop margin, as the reference.
    Reference,
    /// Also 90° rotations, a half-crop margin, brightness and colour jitter
    /// (pretraining adds a core mask and a sky jitter: see --core-mask and
    /// --sky-jitter).
    Strong,
}

/// The views `--jitter` gives fine-tuning: pretraining's, without the core
/// mask (a classifier sees the whole cutout at inference) and without the
/// sky jitter (measured for pretraining only).
pub fn finetune_jitter(j: JitterArg) -> tidalscope_data::augment::ViewJitter {
    tidalscope_data::augment::ViewJitter { core_mask: 0.0, neighbours: 0.0, sky: 0.0, ..j.into() }
}

impl From<JitterArg> for tidalscope_data::augment::ViewJitter {
    fn from(j: JitterArg) -> Self {
        match j {
            JitterArg::Reference => Self::REFERENCE,
            JitterArg::Strong => Self::strong(),
        }
    }
}

/// `--channels` of `pretrain`, the experiments and the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChannelsArg {
    /// The bands as given.
    Image,
    /// Each band's rotational residual.
    Residual,
    /// The bands, then their residuals.
    Both,
    /// The bands, their rotational residuals, then their mirror residuals
    /// about the galaxy's major axis.
    All,
}

impl From<ChannelsArg> for tidalscope_data::residual::Channels {
    fn from(c: ChannelsArg) -> Self {
        match c {
            ChannelsArg::Image => Self::Image,
            ChannelsArg::Residual => Self::Residual,
            ChannelsArg::Both => Self::Both,
            ChannelsArg::All => Self::All,
        }
    }
}

/// `--centring` of `pretrain`, the experiments and the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CentringArg {
    /// The centroid rounded to the nearest half pixel.
    HalfPixel,
    /// The centroid as measured, the turned copy interpolated.
    Subpixel,
}

impl From<CentringArg> for tidalscope_data::residual::Centring {
    fn from(c: CentringArg) -> Self {
        match c {
            CentringArg::HalfPixel => Self::HalfPixel,
            CentringArg::Subpixel => Self::Subpixel,
        }
    }
}

/// `--kernels` of `pretrain` and `finetune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KernelsArg {
    /// The fast kernels on the CPU, burn on a GPU.
    Auto,
    /// tidalscope's CPU kernels.
    Fast,
    /// burn's backend.
    Burn,
}

impl From<KernelsArg> for tidalscope_model::fast::Kernels {
    fn from(k: KernelsArg) -> Self {
        match k {
            KernelsArg::Auto => Self::Auto,
            KernelsArg::Fast => Self::Fast,
            KernelsArg::Burn => Self::Burn,
        }
    }
}

/// Arguments of `tidalscope finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// Encoder folder written by `pretrain` (or `import-keras`).
    #[arg(long)]
    pub encoder: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Run folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// linear: frozen encoder, a true linear probe; finetune: train everything;
    /// scratch: the same architecture from random weights (supervised baseline).
    #[arg(long, value_enum, default_value = "linear")]
    pub mode: ModeArg,
    /// Train on only N labelled examples, balanced over the classes (0 = all).
    #[arg(long, default_value_t = 0)]
    pub labels: usize,
    /// Epochs (at least; fine-tuning and scratch).
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
    /// Optimisation steps at least (fine-tuning and scratch: more epochs
    /// when the labels are few).
    #[arg(long, default_value_t = 500)]
    pub min_steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = 24)]
    pub batch: usize,
    /// Adam learning rate (default: 1e-4 for --mode finetune, 1e-3 for scratch).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Learning rate over the steps (fine-tuning and scratch): cosine
    /// (default; half a cosine from the full rate down to zero after the
    /// last step) or constant (the reference's). Recorded in config.toml.
    #[arg(long, value_enum)]
    pub lr_schedule: Option<LrScheduleArg>,
    /// Fraction of the representation's variance whose leading principal
    /// components (over unlabelled images), whitened, the linear probe
    /// also tries beside the standardised representation, keeping the one
    /// that cross-validates better by more than two standard errors, else
    /// averaging the two heads; 0 = the standardised representation only.
    /// Fine-tuning starts from that probe. Recorded in config.toml.
    #[arg(long, default_value_t = tidalscope_train::config::FinetuneConfig::PROBE_VARIANCE)]
    pub probe_variance: f64,
    /// --mode finetune: keep the classifier this fraction of the way from
    /// where fine-tuning started (the pretrained encoder with the probe's
    /// head) to where it ended, every weight mixed linearly (WiSE-FT);
    /// 1 = the fine-tuned weights. Recorded in config.toml.
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true)]
    pub interpolation: Option<f64>,
    /// --mode finetune: also train on up to N of the data's unlabelled
    /// images (those in no split, evenly spread), each with the linear
    /// probe's probability as a soft target (self-distillation, SimCLRv2);
    /// an epoch is then a pass over both, so give fewer epochs (8 were
    /// measured with 8,000 images); 0 = the labels alone. Recorded in
    /// config.toml.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub distill: usize,
    /// --mode finetune: choose how far along its schedule fine-tuning goes
    /// (not at all — the linear probe —, 1/16, 1/8, 1/4, 1/2 or all of it)
    /// by K-fold cross-validation on the training labels alone: each fold
    /// fine-tunes from its own probe through the whole schedule, the stop
    /// with the highest pooled held-out AUC wins (2–3.5 times the training
    /// time with 3 folds); 0 = the whole schedule [default: 3 with fewer
    /// than 50 training labels and --path-average off, else 0]. Recorded
    /// in config.toml.
    #[arg(long, value_name = "K")]
    pub cv_folds: Option<usize>,
    /// --mode finetune: keep the mean of the weights at six points along
    /// fine-tuning — its start (the probe on the pretrained encoder), then
    /// 1/16, 1/8, 1/4, 1/2 and all of its schedule — instead of the last
    /// step's; no stop to choose, no extra training [default: on with
    /// fewer than 100 training labels unless --cv-folds is set above 0,
    /// else off]. Recorded in config.toml.
    #[arg(long, value_name = "SWITCH")]
    pub path_average: Option<Switch>,
    /// --mode finetune or scratch: after training, measure the encoder's
    /// BatchNorm statistics afresh on the clean inference views (no added
    /// noise) of up to N training images — the labelled ones, then
    /// unlabelled ones outside every split — instead of keeping the
    /// running average over the augmented training views; 0 = keep it
    /// [default: 2000 for scratch, 0 for fine-tuning]. Recorded in
    /// config.toml.
    #[arg(long, value_name = "N")]
    pub batchnorm_images: Option<usize>,
    /// Per-class train/validation/test sizes of the reference layout.
    #[arg(long, default_value = "300/30/50")]
    pub split_sizes: String,
    /// Validation fraction of a labelled catalogue (stratified split).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Test fraction of a labelled catalogue (stratified split).
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Augmentation noise when fine-tuning: reference, physical or none
    /// (see `pretrain --help`).
    #[arg(long, value_enum, default_value = "reference")]
    pub noise: NoiseArg,
    /// Training views of fine-tuning and scratch (the probe sees no views):
    /// reference (flips, a few pixels of shift) or strong (also 90°
    /// rotations, a half-view crop window, brightness and colour jitter; no
    /// mask).
    #[arg(long, value_enum, default_value = "reference")]
    pub jitter: JitterArg,
    /// What runs the encoder's arithmetic: auto, fast (CPU kernels) or
    /// burn (see `pretrain --help`). Recorded in config.toml.
    #[arg(long, value_enum, default_value = "auto")]
    pub kernels: KernelsArg,
    /// Seed of the split, initialisation and shuffling.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Which objects `evaluate` scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    /// The test split `finetune` held out.
    Test,
    /// Its validation split.
    Val,
    /// Its training split.
    Train,
    /// Every object of --data.
    All,
}

/// Arguments of `tidalscope evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Classifier folder written by `finetune`.
    #[arg(long)]
    pub model: PathBuf,
    /// Data (default: what `finetune` trained on, from its split.json).
    #[command(flatten)]
    pub data: DataArgs,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Objects to score.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Score above which an object is called tidal (confusion matrix), 0 to 1.
    #[arg(long, default_value_t = 0.5, value_parser = score_threshold, allow_negative_numbers = true)]
    pub threshold: f64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Arguments of `tidalscope demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output folder for data, models, evaluations and report.md.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Simulated training set size.
    #[arg(long, default_value_t = 6000)]
    pub n: usize,
    /// Independent simulated test set size.
    #[arg(long, default_value_t = 1000)]
    pub n_test: usize,
    /// Pretraining epochs (quick preset; 20 reruns the tables made before
    /// the demo took 30).
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Epochs of fine-tuning on 50 labels, at least (and at least 500
    /// steps). The linear probes have no epochs: they are fitted to convergence.
    #[arg(long, default_value_t = 50)]
    pub finetune_epochs: usize,
    /// Epochs of fine-tuning the whole encoder on all labels (the costliest stage).
    #[arg(long, default_value_t = 15)]
    pub finetune_all_epochs: usize,
    /// Learning rate over the fine-tuning steps: cosine (default) or
    /// constant (the reference's; see `finetune --help`). Recorded in run.toml.
    #[arg(long, value_enum)]
    pub lr_schedule: Option<LrScheduleArg>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Label draws the 50-label linear probe is also measured over (seeds
    /// SEED, SEED+1, …; the first is the 50-label probe's own draw): one
    /// draw of 50 moves its AUC by several hundredths, the mean far less.
    /// 0 skips it.
    #[arg(long, default_value_t = 20)]
    pub draws: usize,
    /// Changes to the quick preset's pretraining.
    #[command(flatten)]
    pub pretrain: PretrainOverrides,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// What an experiment or the demo may change in the preset's pretraining,
/// so that tables made with an older preset can be rerun.
#[derive(Debug, Clone, Default, Args)]
pub struct PretrainOverrides {
    /// Local views of the pretraining (default: the preset's; 0 reruns
    /// tables made before the quick preset took them).
    #[arg(long, value_name = "N")]
    pub local_views: Option<usize>,
    /// Weight of the pretraining's decorrelation penalty (default: the
    /// preset's; 0 reruns tables made before the quick preset took it).
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    pub decorrelation: Option<f64>,
    /// Adam rate of the pretraining (default: the preset's, quick 4e-3;
    /// 2e-3 reruns tables made before the quick preset took 4e-3, 1e-3
    /// those made before it took 2e-3).
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub pretrain_lr: Option<f64>,
    /// Input channels of the pretraining (default: the preset's; `image`
    /// reruns tables made before the quick preset took `both`, `both`
    /// those made before it took `all`).
    #[arg(long, value_enum)]
    pub channels: Option<ChannelsArg>,
    /// How finely the residuals' centre is kept in the pretraining
    /// (default: the preset's, half-pixel; `subpixel` reruns "The
    /// residuals' centre").
    #[arg(long, value_enum)]
    pub centring: Option<CentringArg>,
    /// Crowding of the pretraining images: the compact sources of N other
    /// images pasted into each (`pretrain --crowd`; default: the preset's).
    #[arg(long, value_name = "N")]
    pub crowd: Option<f64>,
    /// Sky jitter of the pretraining's views (`pretrain --sky-jitter`;
    /// default: the preset's, quick 0.5; 0 reruns tables made before the
    /// quick preset took it).
    #[arg(long, value_name = "A", allow_negative_numbers = true)]
    pub sky_jitter: Option<f64>,
}

impl PretrainOverrides {
    /// Whether any is given.
    pub fn any(&self) -> bool {
        self.local_views.is_some()
            || self.decorrelation.is_some()
            || self.pretrain_lr.is_some()
            || self.channels.is_some()
            || self.centring.is_some()
            || self.crowd.is_some()
            || self.sky_jitter.is_some()
    }
}

/// Arguments of `tidalscope predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Classifier folder written by `finetune`.
    #[arg(long)]
    pub model: PathBuf,
    /// Data to score (any readable source).
    #[arg(long)]
    pub data: PathBuf,
    /// Output table (CSV; a FITS table when it ends in `.fits`, Parquet
    /// when it ends in `.parquet`): id,
    /// [label,] score, nonfinite_fraction, constant_bands and the data's
    /// metadata columns, in input order. Beside it, named after it: its
    /// errors and record (`scores.csv` → `scores.errors.csv`,
    /// `scores.run.toml`; a shard's: `errors.K-of-N.csv`, `run.K-of-N.toml`).
    #[arg(long)]
    pub out: PathBuf,
    /// Score only part K of N equal parts (K from 0 to N−1), e.g. one task of
    /// a Slurm array or Kubernetes indexed job; the parts' outputs
    /// concatenate to the whole.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Objects decoded and scored together.
    #[arg(long, default_value_t = 256)]
    pub chunk: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Arguments of `tidalscope collect`.
#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Folder where the shards wrote their outputs: `predict --shard K/N
    /// --out FOLDER/…` (their `run.K-of-N.toml`, scores and errors files),
    /// or one folder per `embed --shard K/N --out FOLDER/PART` run.
    #[arg(long)]
    pub from: PathBuf,
    /// The gathered catalogue: CSV, or a FITS table or Parquet file when it
    /// ends in `.fits` or `.parquet`; its errors and record are written
    /// beside it, named after it (`merged.csv` → `merged.errors.csv`,
    /// `merged.run.toml`). For embed shards: the gathered embed folder.
    #[arg(long, required_unless_present = "missing")]
    pub out: Option<PathBuf>,
    /// Only print the missing shard numbers, comma-separated (for
    /// `sbatch --array=`), and exit.
    #[arg(long)]
    pub missing: bool,
}

/// Arguments of `tidalscope embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Encoder folder (`pretrain`) or classifier folder (`finetune`: its encoder).
    #[arg(long)]
    pub encoder: PathBuf,
    /// Data to embed (any readable source).
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder: embeddings.npy [N,128], ids.csv, errors.csv, embedding.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write every object with its embedding as one catalogue table:
    /// CSV, a FITS table (`.fits`: an `embedding` array column) or Parquet
    /// (`.parquet`: float32 columns embedding_0 …), by extension.
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// Embed only part K of N (K from 0 to N−1).
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Also plot the first two principal components, coloured by this
    /// column of ids.csv (e.g. label, kind); `none` for no plot.
    #[arg(long, default_value = "label")]
    pub color_by: String,
    /// Objects decoded and embedded together.
    #[arg(long, default_value_t = 256)]
    pub chunk: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Arguments of `tidalscope search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Folder written by `embed`.
    #[arg(long)]
    pub embeddings: PathBuf,
    /// Query galaxies: ids of the embedded set, or image files (embedded on
    /// the fly with the encoder `embed` used).
    #[arg(long, num_args = 1.., required = true)]
    pub query: Vec<String>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 20)]
    pub k: usize,
    /// Output folder: neighbours.csv and mosaic.png.
    #[arg(long)]
    pub out: PathBuf,
    /// Use an approximate HNSW index instead of the exact scan (for many
    /// queries over very large sets; recall@k: `bench search --approximate`).
    #[arg(long)]
    pub approximate: bool,
    /// HNSW search breadth with --approximate (larger: better recall, slower).
    #[arg(long, default_value_t = 128)]
    pub ef: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Arguments of `tidalscope label`.
#[derive(Debug, Args)]
pub struct LabelArgs {
    /// Data to label (any readable source; ids must be unique).
    #[arg(long)]
    pub data: PathBuf,
    /// Encoder folder (`pretrain`) or classifier folder (its encoder): its
    /// representations drive "more like this" and retraining. They are
    /// computed once and cached beside the labels (`LABELS.embeddings/`).
    #[arg(long)]
    pub encoder: PathBuf,
    /// Classifier folder (`finetune`) whose scores order the queues until
    /// the first retrain.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The labels file: created when missing, resumed when present (its
    /// log, LABELS.log, beside it; a labels file made elsewhere is imported).
    #[arg(long, default_value = "labels.csv")]
    pub labels: PathBuf,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8470)]
    pub port: u16,
    /// Address to listen on: 127.0.0.1 (this machine only) unless told
    /// otherwise; any other address needs --token.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Secret every request must carry (`?token=…` in the address the
    /// command prints); at least 8 characters of A–Z, a–z, 0–9, `-_.~`.
    #[arg(long)]
    pub token: Option<String>,
    /// Name recorded with each label (default: $USER).
    #[arg(long)]
    pub annotator: Option<String>,
    /// Arcseconds per pixel, for the scale bar (HSC 0.168, LSST 0.2).
    #[arg(long, default_value_t = 0.168)]
    pub pixel_scale: f64,
    /// Seed of the random queue and of the probe's cross-validation folds.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Metadata columns not to show, comma-separated (e.g.
    /// `label,kind,feature_types` of mocks, to label them blind).
    #[arg(long, value_delimiter = ',')]
    pub hide: Vec<String>,
    /// Prepare (embeddings, scores) and exit without serving.
    #[arg(long)]
    pub prepare_only: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Arguments of `tidalscope import-keras`.
#[derive(Debug, Args)]
pub struct ImportKerasArgs {
    /// Keras SavedModel folder (`model.save(dir)`, e.g. the published
    /// Trained_NNCLR_model) or Keras 3 `.keras` file.
    pub model: PathBuf,
    /// Output model folder (an encoder or a classifier folder, depending on
    /// the model).
    #[arg(long)]
    pub out: PathBuf,
    /// `none` for inputs that are already normalised as the model expects:
    /// they reach the network unchanged (non-finite pixels → 0); otherwise
    /// give --sigma or --normalise-from.
    #[arg(long)]
    pub normalisation: Option<String>,
    /// σ_b per band in data units, comma-separated (e.g. the values the
    /// model was trained with).
    #[arg(long, value_delimiter = ',')]
    pub sigma: Vec<f32>,
    /// Measure σ_b (1.4826·MAD) on the first --norm-images images of this
    /// dataset, as `pretrain` does.
    #[arg(long)]
    pub normalise_from: Option<PathBuf>,
    /// Images used by --normalise-from.
    #[arg(long, default_value_t = 1000)]
    pub norm_images: usize,
    /// Band names, comma-separated (default: g,r,i,z,y for 5 bands).
    #[arg(long, value_delimiter = ',')]
    pub bands: Vec<String>,
    /// Side of the centre crop fed to the network (default: the model's
    /// declared input size, 96 for the published models).
    #[arg(long)]
    pub crop: Option<usize>,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Arguments of `tidalscope export-keras`.
#[derive(Debug, Args)]
pub struct ExportKerasArgs {
    /// Encoder folder or classifier folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Output `.keras` file (its preprocessing is written beside it as
    /// FILE.preprocess.json: Keras files have no place for σ_b).
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `tidalscope inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Dataset: tf.data folder, .npy/.npz, FITS, PNG/JPEG, catalogue CSV or folder.
    pub path: PathBuf,
    /// Images read for the statistics (the count and keys need none).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Output formats of `convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConvertTo {
    /// float32 [N,H,W,C] `.npy` (a folder: images.npy + catalog.csv).
    Npy,
    /// One FITS file, float32, NAXIS = 4 (W, H, bands, objects).
    Fits,
    /// tf.data `Dataset.save` folder: {id, image [H,W,C] float32, label}.
    Tfdata,
}

/// Compression of tf.data output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// Plain TFRecord (what Dataset.save writes by default).
    None,
    /// The whole snapshot file as one gzip member.
    Gzip,
}

/// Arguments of `tidalscope convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Input dataset (any readable format).
    pub input: PathBuf,
    /// Output: a `.npy` or `.fits` file, or a folder (format from --to).
    pub output: PathBuf,
    /// Output format when OUT's extension does not say it.
    #[arg(long, value_enum)]
    pub to: Option<ConvertTo>,
    /// Compression of tf.data output.
    #[arg(long, value_enum, default_value = "none")]
    pub compression: CompressionArg,
    /// Write a crowded copy: paste into each cutout the compact sources of
    /// this many other cutouts (on average, drawn from the first 512),
    /// e.g. to pretrain on denser fields; 2 gives about three times the
    /// compact sources found. 0: a plain conversion.
    #[arg(long, default_value_t = 0.0)]
    pub crowd: f64,
    /// Seed of --crowd's draws (which donors, where, which way up); with
    /// the same seed as `pretrain --seed` (default 1 in both), the copy
    /// holds the images `pretrain --crowd` trains on. Used only with --crowd.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Survey presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SurveyArg {
    /// HSC-SSP Ultradeep: 0.168″ pixels, zero point 27.
    #[value(name = "hsc-ud")]
    HscUd,
    /// LSST 10-year depth: 0.2″ pixels, zero point 30.
    #[value(name = "lsst-y10")]
    LsstY10,
}

impl From<SurveyArg> for tidalscope_sim::survey::SurveyName {
    fn from(s: SurveyArg) -> Self {
        match s {
            SurveyArg::HscUd => Self::HscUd,
            SurveyArg::LsstY10 => Self::LsstY10,
        }
    }
}

/// Output formats of `simulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SimFormat {
    /// `images.npy` (float32 [N,H,W,5], g,r,i,z,y) and `catalog.csv`.
    Npy,
    /// One FITS file per object and band in the HSC cutout-service layout,
    /// and `catalog.csv` with `file_g` … `file_y` columns.
    Fits,
}

/// Arguments of `tidalscope simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Number of cutouts.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Random seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Survey whose pixel scale, PSF and depth to mimic.
    #[arg(long, value_enum, default_value = "hsc-ud")]
    pub survey: SurveyArg,
    /// Cutout side in pixels.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Fraction of cutouts with a visible tidal feature (label 1).
    #[arg(long, default_value_t = 0.3)]
    pub tidal_fraction: f64,
    /// Fraction of negatives that carry a feature too faint to see.
    #[arg(long, default_value_t = 0.25)]
    pub near_miss_fraction: f64,
    /// Probability of a bright projected companion, for every cutout.
    #[arg(long, default_value_t = 0.15)]
    pub companion_probability: f64,
    /// Density of background galaxies and stars as a multiple of the
    /// default (about 90 galaxies to r = 27.5 and 2 stars per arcmin²), 0
    /// to 10: crowded fields, to test a model on images unlike its training
    /// set's.
    #[arg(long, default_value_t = 1.0)]
    pub crowding: f64,
    /// Hosts' half-light radii as a multiple of the size–luminosity
    /// relations' (Shen et al. 2003), 0.1 to 10.
    #[arg(long, default_value_t = 1.0)]
    pub host_size: f64,
    /// How much fainter (mag/arcsec²) than a feature the host must be where
    /// the feature lies, −3 to 3: 1 (the default) puts features where they
    /// more than double the light; 0 where they equal the host's; −0.5 on
    /// host light 1.6× theirs, as faint bumps on a galaxy's halo.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub feature_contrast: f64,
    /// Sky-subtraction residuals (smooth gradients across the cutout) as a
    /// multiple of the default (RMS 5–15% of the pixel noise), 0 to 10:
    /// poorer sky subtraction, to test a model on images unlike its
    /// training set's.
    #[arg(long, default_value_t = 1.0)]
    pub sky_residual: f64,
    /// Output format.
    #[arg(long, value_enum, default_value = "npy")]
    pub format: SimFormat,
    /// Number of cutouts shown in `preview.png` (0 for none).
    #[arg(long, default_value_t = 24)]
    pub preview: usize,
    /// Worker threads (default: all cores). Does not change the output.
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// Experiments.
#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// AUC and completeness vs number of labels: NNCLR probe, NNCLR
    /// fine-tuning, supervised from scratch, morphology baseline; seeds.
    Labels(ExperimentLabelsArgs),
    /// Injection–recovery on simulated data: completeness by feature SB,
    /// type and host magnitude; false positives by kind; per survey.
    Recovery(ExperimentRecoveryArgs),
}

/// Arguments of `tidalscope experiment labels`.
#[derive(Debug, Args)]
pub struct ExperimentLabelsArgs {
    /// Output folder: results.csv, plots, report.md, run.toml.
    #[arg(long, default_value = "runs/exp-labels")]
    pub out: PathBuf,
    /// Labelled training data (default: simulated HSC-UD cutouts).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Labelled independent test data (with --data).
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// A pretrained encoder folder (default: pretrain one on the training data).
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    /// Smaller, faster settings (5–10 min on 2 cores); without it, the CPU
    /// protocol of the README (12–25 min on its 2-core AVX-512 machines,
    /// about 32 min on an older AVX2 one).
    #[arg(long)]
    pub quick: bool,
    /// Label counts (balanced; counts beyond 90% of what the data offers are dropped).
    #[arg(long, value_delimiter = ',', default_value = "25,50,100,300,1000")]
    pub labels: Vec<usize>,
    /// Label draws per count for the linear probe and the morphology
    /// baseline (default 5 with --quick, else 20).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Label draws for fine-tuning and from-scratch training, the first of
    /// --seeds (default 1 with --quick, else 3).
    #[arg(long)]
    pub trained_seeds: Option<usize>,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Methods, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "linear,finetune,scratch,morphology")]
    pub methods: Vec<MethodArg>,
    /// Simulated training cutouts (default 4000 with --quick, else 8000).
    #[arg(long)]
    pub n: Option<usize>,
    /// Simulated test cutouts (default 1000 with --quick, else 2000).
    #[arg(long)]
    pub n_test: Option<usize>,
    /// Simulated data only: how much fainter than a feature the host must
    /// be where the feature lies (`simulate --feature-contrast`, −3 to 3;
    /// default 1); −0.5 puts features on brighter host light.
    #[arg(long, allow_negative_numbers = true)]
    pub feature_contrast: Option<f64>,
    /// Pretraining preset when no --encoder is given.
    #[arg(long, value_enum, default_value = "quick")]
    pub preset: PresetArg,
    /// Pretraining epochs (default 8 with --quick — 12 with no local
    /// views —, else 40).
    #[arg(long)]
    pub pretrain_epochs: Option<usize>,
    /// Changes to the preset's pretraining.
    #[command(flatten)]
    pub pretrain: PretrainOverrides,
    /// Fine-tuning and from-scratch epochs, at least (and at least
    /// --min-steps steps; default 8 with --quick, else 15).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Optimisation steps of fine-tuning and from-scratch training, at least.
    #[arg(long, default_value_t = 500)]
    pub min_steps: usize,
    /// Adam learning rate of fine-tuning (default: `finetune`'s, 1e-4;
    /// training from scratch keeps its own). Recorded in run.toml.
    #[arg(long, value_name = "LR")]
    pub finetune_lr: Option<f64>,
    /// Fraction of the way from the pretrained to the fine-tuned weights
    /// that fine-tuning keeps (see `finetune --interpolation`). Recorded in
    /// run.toml.
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true)]
    pub finetune_interpolation: Option<f64>,
    /// Up to N unlabelled training images that fine-tuning also learns
    /// from, with the probe's probabilities as soft targets (see `finetune
    /// --distill`); 0 = none. Recorded in run.toml.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub finetune_distill: usize,
    /// Folds of the cross-validation on each draw's labels that chooses how
    /// far fine-tuning goes, at every count (see `finetune --cv-folds`); 0 =
    /// the whole schedule [default: 3 with fewer than 50 labels and
    /// --finetune-path-average off, else 0]. Recorded in run.toml.
    #[arg(long, value_name = "K")]
    pub finetune_cv_folds: Option<usize>,
    /// Whether fine-tuning keeps the mean of the weights along its path
    /// (see `finetune --path-average`) [default: on with fewer than 100
    /// labels unless --finetune-cv-folds is set above 0, else off].
    /// Recorded in run.toml.
    #[arg(long, value_name = "SWITCH")]
    pub finetune_path_average: Option<Switch>,
    /// Training images (labelled, then unlabelled) on whose clean views
    /// fine-tuning and scratch measure their BatchNorm statistics afresh
    /// after training (see `finetune --batchnorm-images`); 0 = keep
    /// training's [default: 2000 for scratch, 0 for fine-tuning].
    /// Recorded in run.toml.
    #[arg(long, value_name = "N")]
    pub batchnorm_images: Option<usize>,
    /// Training views of fine-tuning and scratch: reference or strong (see
    /// `finetune --help`).
    #[arg(long, value_enum, default_value = "reference")]
    pub finetune_jitter: JitterArg,
    /// Learning rate over the steps of fine-tuning and scratch: cosine
    /// (default) or constant (see `finetune --help`). Recorded in run.toml.
    #[arg(long, value_enum)]
    pub lr_schedule: Option<LrScheduleArg>,
    /// Fraction of the representation's variance whose leading principal
    /// components (over unlabelled images), whitened, the linear probe
    /// also tries beside the standardised representation, keeping the one
    /// that cross-validates better by more than two standard errors, else
    /// averaging the two heads; 0 = the standardised representation only.
    /// Fine-tuning starts from that probe. Recorded in run.toml.
    #[arg(long, default_value_t = tidalscope_train::config::FinetuneConfig::PROBE_VARIANCE)]
    pub probe_variance: f64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Arguments of `tidalscope experiment recovery`.
#[derive(Debug, Args)]
pub struct ExperimentRecoveryArgs {
    /// Output folder: one folder per survey (recovery.csv), plots, report.md.
    #[arg(long, default_value = "runs/exp-recovery")]
    pub out: PathBuf,
    /// A classifier folder to test on every survey (default: train one per
    /// survey on that survey's mocks).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Survey presets to simulate.
    #[arg(long, value_delimiter = ',', default_value = "hsc-ud,lsst-y10")]
    pub surveys: Vec<SurveyArg>,
    /// Small, fast settings for a CPU.
    #[arg(long)]
    pub quick: bool,
    /// Recovery cutouts per survey, half with features (default 2000 with
    /// --quick, else 10000).
    #[arg(long)]
    pub n: Option<usize>,
    /// Training cutouts per survey when no --model (default 1200 with
    /// --quick, else 6000).
    #[arg(long)]
    pub n_train: Option<usize>,
    /// Pretraining preset when no --model.
    #[arg(long, value_enum, default_value = "quick")]
    pub preset: PresetArg,
    /// Pretraining epochs (default 8 with --quick, else 50).
    #[arg(long)]
    pub pretrain_epochs: Option<usize>,
    /// Changes to the preset's pretraining.
    #[command(flatten)]
    pub pretrain: PretrainOverrides,
    /// Fine-tuning epochs (default 12 with --quick, else 30).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Optimisation steps of fine-tuning, at least.
    #[arg(long, default_value_t = 500)]
    pub min_steps: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Cutouts simulated per second (5 bands, in memory, nothing written).
    Simulate(BenchSimulateArgs),
    /// Streams a generated tf.data file much larger than a batch through the
    /// shuffling loader; prints throughput and peak memory.
    Read(BenchReadArgs),
    /// Training and inference images per second of the encoder.
    Encoder(BenchEncoderArgs),
    /// Exact similarity search over many random embeddings.
    Search(BenchSearchArgs),
    /// `predict` throughput from npy, FITS cutouts and a coadd patch, its
    /// peak memory, and its share of the same model's pure inference.
    Predict(BenchPredictArgs),
}

/// Arguments of `tidalscope bench search`.
#[derive(Debug, Args)]
pub struct BenchSearchArgs {
    /// Number of embeddings.
    #[arg(long, default_value_t = 1_000_000)]
    pub n: usize,
    /// Dimensions.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Neighbours per query.
    #[arg(long, default_value_t = 20)]
    pub k: usize,
    /// Timed queries.
    #[arg(long, default_value_t = 10)]
    pub queries: usize,
    /// Also build the approximate (HNSW) index and report its build time,
    /// query time and recall@k against the exact search.
    #[arg(long)]
    pub approximate: bool,
    /// Embeddings drawn around this many cluster centres, as representations
    /// of similar galaxies are (0: isotropic noise, the hardest case).
    #[arg(long, default_value_t = 1000)]
    pub clusters: usize,
}

/// Arguments of `tidalscope bench predict`.
#[derive(Debug, Args)]
pub struct BenchPredictArgs {
    /// Objects (128×128×5), at least 100 times the model batch of 64 by default.
    #[arg(long, default_value_t = 6400)]
    pub n: usize,
    /// Classifier folder (default: an untrained classifier of --preset).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The untrained classifier's preset, when no --model is given.
    #[arg(long, value_enum, default_value = "quick")]
    pub preset: PresetArg,
    /// Folder for the generated inputs (default: the system's temporary folder).
    #[arg(long)]
    pub tmp: Option<PathBuf>,
}

/// Arguments of `tidalscope bench encoder`.
#[derive(Debug, Args)]
pub struct BenchEncoderArgs {
    /// Time the encoder as a pretraining preset runs it: its width, its
    /// view size and its batch (each can still be set below).
    #[arg(long, value_enum)]
    pub preset: Option<PresetArg>,
    /// Input side in pixels [default: 96, or the preset's view].
    #[arg(long)]
    pub size: Option<usize>,
    /// Batch size [default: 32, or the preset's batch].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Input channels (default 5, or the preset's: 5 bands times its
    /// channels, 15 for quick with its two residuals).
    #[arg(long)]
    pub bands: Option<usize>,
    /// Encoder width multiplier (1 = the paper's encoder) [default: 1, or
    /// the preset's].
    #[arg(long)]
    pub width: Option<f64>,
    /// Timed steps of each kind, after one warm-up step [default: as many
    /// as fill about 3 seconds, at least 5 and at most 2,000, counted from
    /// one more untimed step: a median over a few hundred milliseconds
    /// wanders by tens of percent on a busy machine].
    #[arg(long)]
    pub steps: Option<usize>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Which implementation to time on the CPU: `fast` (tidalscope's
    /// kernels, what the commands use), `burn` (burn's flex backend, the
    /// plain path) or `both`. A GPU always runs burn.
    #[arg(long, default_value = "both", value_parser = ["fast", "burn", "both"])]
    pub kernels: String,
}

/// Arguments of `tidalscope bench read`.
#[derive(Debug, Args)]
pub struct BenchReadArgs {
    /// Size of the generated dataset in MB (128×128×5 float32 images).
    #[arg(long, default_value_t = 500)]
    pub mb: usize,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Shuffle buffer (images).
    #[arg(long, default_value_t = 256)]
    pub shuffle_buffer: usize,
    /// Folder for the temporary dataset (default: the system's).
    #[arg(long)]
    pub tmp: Option<PathBuf>,
}

/// Arguments of `tidalscope bench simulate`.
#[derive(Debug, Args)]
pub struct BenchSimulateArgs {
    /// Number of cutouts to time.
    #[arg(long, default_value_t = 400)]
    pub n: usize,
    /// Cutout side in pixels.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Survey preset.
    #[arg(long, value_enum, default_value = "hsc-ud")]
    pub survey: SurveyArg,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// A score threshold: scores are probabilities, so one outside [0, 1] (or
/// NaN) would call every object, or none, tidal without saying so.
fn score_threshold(s: &str) -> Result<f64, String> {
    let t: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&t) {
        Ok(t)
    } else {
        Err(format!("{s} is not a score: give a number from 0 to 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fine_tuning_views_never_mask_what_the_classifier_sees_at_inference() {
        let strong = finetune_jitter(JitterArg::Strong);
        assert_eq!(strong.core_mask, 0.0);
        assert_eq!(strong.neighbours, 0.0);
        assert_eq!(strong.sky, 0.0, "fine-tuning's views keep pretraining's sky jitter off");
        assert!(strong.rotations && strong.flux > 0.0, "the rest of the strong views stays");
        assert_eq!(finetune_jitter(JitterArg::Reference), tidalscope_data::augment::ViewJitter::REFERENCE);
    }
}

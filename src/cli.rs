//! The command line: one struct per subcommand; each field's doc comment is
//! its `--help` text.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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
    /// Describe a dataset: count, shape, bands, keys, per-band statistics.
    Inspect(InspectArgs),
    /// Convert a dataset between npy, FITS and tf.data.
    Convert(ConvertArgs),
    /// Measure the speed of a part of tidalscope.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// How to read an input (shared by every command that reads data).
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Input format, when recognising it by content is not wanted:
    /// tfdata, npy, npz, fits, picture, catalog, simulated, folder.
    #[arg(long)]
    pub format: Option<String>,
    /// Pixel order of arrays: auto (band axis = the small one), hwc or chw.
    #[arg(long, default_value = "auto")]
    pub layout: String,
    /// Key (tf.data) or array name (npz) holding the image.
    #[arg(long, default_value = "image")]
    pub image_key: String,
    /// tf.data interleave cycle length for multi-shard datasets (default:
    /// the CPU count, as TensorFlow's Dataset.load).
    #[arg(long)]
    pub cycle_length: Option<usize>,
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

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Cutouts simulated per second (5 bands, in memory, nothing written).
    Simulate(BenchSimulateArgs),
    /// Streams a generated tf.data file much larger than a batch through the
    /// shuffling loader; prints throughput and peak memory.
    Read(BenchReadArgs),
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

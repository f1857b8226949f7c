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
    /// Measure the speed of a part of tidalscope.
    #[command(subcommand)]
    Bench(BenchCommand),
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

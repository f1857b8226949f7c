//! Training and evaluation loops, written openly (forward, loss, backward,
//! optimiser step) rather than through a training framework, because NNCLR's
//! support queue is state outside the model.
//!
//! * [`pretrain`]: self-supervised NNCLR pretraining of the encoder, with
//!   atomic checkpoints and exact resume;
//! * [`finetune`]: a frozen-encoder linear probe, or full fine-tuning, on a
//!   labelled split;
//! * [`representation`]: the spread of an encoder's representations over
//!   unlabelled images, which the probe whitens with;
//! * [`evaluate`]: scores, ROC, completeness at fixed contamination and
//!   plots on held-out objects.
//!
//! Every loop reports through a [`Reporter`] so the binary can draw progress
//! bars while tests stay quiet.
#![deny(missing_docs)]

pub mod config;
pub mod evaluate;
pub mod finetune;
pub mod labelled;
pub mod pretrain;
pub mod representation;

use std::path::Path;

/// Errors of training and evaluation.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading data.
    #[error(transparent)]
    Io(#[from] tidalscope_io::Error),
    /// Loading data for training.
    #[error(transparent)]
    Loader(#[from] tidalscope_data::loader::LoaderError),
    /// Normalisation.
    #[error(transparent)]
    Normalise(#[from] tidalscope_data::normalise::NormaliseError),
    /// Model folders.
    #[error(transparent)]
    Bundle(#[from] tidalscope_model::bundle::BundleError),
    /// Weights.
    #[error(transparent)]
    Store(#[from] tidalscope_model::store::StoreError),
    /// Splits.
    #[error(transparent)]
    Split(#[from] tidalscope_data::split::SplitError),
    /// Plots.
    #[error(transparent)]
    Plot(#[from] tidalscope_eval::plot::PlotError),
    /// Metrics.
    #[error(transparent)]
    Metrics(#[from] tidalscope_eval::metrics::MetricsError),
    /// Running a model.
    #[error(transparent)]
    Infer(#[from] tidalscope_model::infer::InferError),
    /// Making a training view.
    #[error(transparent)]
    View(#[from] tidalscope_data::augment::TooSmall),
    /// Anything else, said in words.
    #[error("{0}")]
    Other(String),
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;

/// What a loop tells the outside world while it runs.
pub trait Reporter: Sync {
    /// A phase with `total` steps begins.
    fn start(&self, _phase: &str, _total: u64) {}
    /// One step done; `message` carries loss and speed.
    fn step(&self, _done: u64, _message: &str) {}
    /// The phase ended.
    fn finish(&self) {}
    /// A line for the person running it. The loops do not also append
    /// these lines to the run's `log.txt` (they write there directly only
    /// what is for the file alone, such as each epoch's losses): a reporter
    /// that keeps the log, as the command line's does, writes them once.
    fn log(&self, _line: &str) {}
}

/// A reporter that says nothing.
pub struct Quiet;
impl Reporter for Quiet {}

/// Appends a line to a run's `log.txt` (best effort: logging never stops
/// training).
pub fn log_line(dir: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("log.txt")) {
        let _ = writeln!(f, "{line}");
    }
}

/// Writes a value as TOML atomically.
pub fn write_toml<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = toml::to_string_pretty(value).map_err(|e| TrainError::Other(format!("{}: {e}", path.display())))?;
    tidalscope_io::atomic::write(path, text.as_bytes())?;
    Ok(())
}

/// Writes a float32 vector as `.npy` atomically.
pub fn write_npy(path: &Path, values: &[f32], shape: &[usize]) -> Result<()> {
    let mut w = tidalscope_io::npy::NpyWriter::create(path, shape)?;
    w.write(values)?;
    w.finish()?;
    Ok(())
}

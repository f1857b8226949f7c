//! One module per subcommand; each turns raw arguments into validated
//! settings before doing any work.

mod bench;
mod collect;
mod convert;
mod demo;
mod experiment;
pub mod import;
pub mod infer;
mod inspect;
pub mod simulate;
pub mod train;

use crate::cli::{BenchCommand, Cli, Command, ExperimentCommand};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Simulate(args) => simulate::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Pretrain(args) => train::pretrain(args),
        Command::Finetune(args) => train::finetune(args),
        Command::Evaluate(args) => train::evaluate(args),
        Command::Predict(args) => infer::predict(args),
        Command::Collect(args) => collect::run(args),
        Command::Embed(args) => infer::embed(args),
        Command::Search(args) => infer::search(args),
        Command::ImportKeras(args) => import::run(args),
        Command::ExportKeras(args) => import::export(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Experiment(ExperimentCommand::Labels(args)) => experiment::labels(args),
        Command::Experiment(ExperimentCommand::Recovery(args)) => experiment::recovery(args),
        Command::Bench(BenchCommand::Simulate(args)) => bench::simulate(args),
        Command::Bench(BenchCommand::Read(args)) => bench::read(args),
        Command::Bench(BenchCommand::Encoder(args)) => bench::encoder(args),
        Command::Bench(BenchCommand::Search(args)) => bench::search(args),
        Command::Bench(BenchCommand::Predict(args)) => bench::predict(args),
    }
}

/// A run that finished but could not process some objects (listed in its
/// errors.csv): the binary exits with status 3.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} objects could not be processed; see {errors}")]
pub struct PartialFailure {
    /// Objects that failed.
    pub failed: usize,
    /// Objects attempted.
    pub total: usize,
    /// The errors file.
    pub errors: String,
}

/// Opens a dataset as the command line describes it.
pub fn open_source(
    path: &std::path::Path,
    args: &crate::cli::SourceArgs,
    label: Option<u8>,
) -> anyhow::Result<Box<dyn tidalscope_io::source::Source>> {
    use anyhow::Context;
    let opts = tidalscope_io::source::OpenOptions {
        format: args.format,
        layout: args.layout,
        image_key: args.image_key.clone(),
        cycle_length: args.cycle_length,
        label,
    };
    anyhow::ensure!(path.exists(), "{}: no such file or folder", path.display());
    tidalscope_io::source::open(path, &opts).with_context(|| format!("opening {}", path.display()))
}

pub use bench::peak_rss_mb;

/// A rayon pool of `jobs` threads (all cores when `None`).
pub fn thread_pool(jobs: Option<usize>) -> anyhow::Result<rayon::ThreadPool> {
    let mut b = rayon::ThreadPoolBuilder::new();
    if let Some(j) = jobs {
        anyhow::ensure!(j > 0, "--jobs must be at least 1");
        b = b.num_threads(j);
    }
    Ok(b.build()?)
}

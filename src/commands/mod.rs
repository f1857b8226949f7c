//! One module per subcommand; each turns raw arguments into validated
//! settings before doing any work.

mod bench;
mod simulate;

use crate::cli::{BenchCommand, Cli, Command};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Simulate(args) => simulate::run(args),
        Command::Bench(BenchCommand::Simulate(args)) => bench::simulate(args),
    }
}

/// A rayon pool of `jobs` threads (all cores when `None`).
pub fn thread_pool(jobs: Option<usize>) -> anyhow::Result<rayon::ThreadPool> {
    let mut b = rayon::ThreadPoolBuilder::new();
    if let Some(j) = jobs {
        anyhow::ensure!(j > 0, "--jobs must be at least 1");
        b = b.num_threads(j);
    }
    Ok(b.build()?)
}

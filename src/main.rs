//! `tidalscope`: find tidal features in deep multi-band survey images.
//!
//! `main` only parses the command line, runs the command and maps the result
//! to an exit status: 0 on success, 1 on error (with a one-line cause on
//! stderr), 2 for command-line mistakes (clap's own convention), 3 when a
//! run completed but some objects failed (listed in its errors.csv).

mod cli;
mod commands;
mod label;
mod manifest;
mod progress;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    // Before any arithmetic (and after --help, which needs no threads):
    // denormal floats as zero on this thread and on every thread of the
    // global pool (see tidalscope_core::denormal).
    tidalscope_core::denormal::flush_denormals();
    rayon::ThreadPoolBuilder::new()
        .start_handler(|_| {
            tidalscope_core::denormal::flush_denormals();
        })
        .build_global()
        .expect("the global thread pool is built once, before any command runs");
    let result = commands::run(args);
    if std::env::var_os("TIDALSCOPE_REPORT_PEAK_RSS").is_some() {
        // For `bench predict`, which runs commands as child processes.
        if let Some(mb) = commands::peak_rss_mb() {
            eprintln!("peak RSS MB: {mb:.0}");
        }
    }
    match result {
        Ok(()) => {}
        Err(e) => {
            // One line: the cause chain joined by ": ".
            eprintln!("error: {e:#}");
            let partial = e.downcast_ref::<commands::PartialFailure>().is_some();
            std::process::exit(if partial { 3 } else { 1 });
        }
    }
}

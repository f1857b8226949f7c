//! `tidalscope`: find tidal features in deep multi-band survey images.
//!
//! `main` only parses the command line, runs the command and maps the result
//! to an exit status: 0 on success, 1 on error (with a one-line cause on
//! stderr), 2 for command-line mistakes (clap's own convention).

mod cli;
mod commands;
mod manifest;
mod progress;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    match commands::run(args) {
        Ok(()) => {}
        Err(e) => {
            // One line: the cause chain joined by ": ".
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

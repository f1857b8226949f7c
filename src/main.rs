//! `tidalscope`: find tidal features in deep multi-band survey images.
//!
//! `main` only parses the command line, runs the command and maps the result
//! to an exit status: 0 on success, 1 on error (with a one-line cause on
//! stderr), 2 for command-line mistakes (clap's own convention), 3 when a
//! run completed but some objects failed (listed in its errors file).

mod cli;
mod commands;
mod label;
mod manifest;
mod progress;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if !matches!(args.command, cli::Command::Label(_)) {
        quiet_on_closed_pipe();
    }
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

/// A reader that stops early (`tidalscope inspect x | head`) ends the
/// program quietly, as it does any Unix tool: Rust ignores SIGPIPE, so
/// otherwise the next write to stdout panics with a backtrace. Not for the
/// labelling server, whose sockets must outlive a browser closing one.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any other thread exists;
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

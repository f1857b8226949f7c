//! Progress bars for long work (hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Mutex;

/// A bar counting `len` items of `unit` (e.g. "cutouts"), with rate and ETA.
pub fn bar(len: u64, what: &str, unit: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let template = format!("{what} [{{bar:32}}] {{pos}}/{{len}} {unit} · {{per_sec}} · ETA {{eta}}");
    pb.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
    pb
}

/// Reports training loops as a progress bar with their message (loss,
/// speed), and their log lines on stderr and in the run's `log.txt`.
pub struct BarReporter {
    bar: Mutex<Option<ProgressBar>>,
    log_dir: Option<std::path::PathBuf>,
    quiet: bool,
}

impl BarReporter {
    /// A reporter logging into `log_dir/log.txt` too.
    pub fn new(log_dir: Option<&std::path::Path>) -> Self {
        Self { bar: Mutex::new(None), log_dir: log_dir.map(|p| p.to_path_buf()), quiet: false }
    }

    /// A reporter that only writes the log file.
    pub fn quiet(log_dir: Option<&std::path::Path>) -> Self {
        Self { quiet: true, ..Self::new(log_dir) }
    }
}

impl tidalscope_train::Reporter for BarReporter {
    fn start(&self, phase: &str, total: u64) {
        if self.quiet {
            return;
        }
        let pb = ProgressBar::new(total);
        let template = format!("{phase:>9} [{{bar:28}}] {{pos}}/{{len}} steps · {{msg}} · ETA {{eta}}");
        pb.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
        *self.bar.lock().expect("bar lock") = Some(pb);
    }

    fn step(&self, done: u64, message: &str) {
        if let Some(pb) = self.bar.lock().expect("bar lock").as_ref() {
            pb.set_position(done);
            pb.set_message(message.to_string());
        }
    }

    fn finish(&self) {
        if let Some(pb) = self.bar.lock().expect("bar lock").take() {
            pb.finish_and_clear();
        }
    }

    fn log(&self, line: &str) {
        if !self.quiet {
            match self.bar.lock().expect("bar lock").as_ref() {
                Some(pb) => pb.println(line),
                None => eprintln!("{line}"),
            }
        }
        if let Some(d) = &self.log_dir {
            tidalscope_train::log_line(d, line);
        }
    }
}

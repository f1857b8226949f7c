//! Progress bars for long work (hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting `len` items of `unit` (e.g. "cutouts"), with rate and ETA.
pub fn bar(len: u64, what: &str, unit: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let template = format!("{what} [{{bar:32}}] {{pos}}/{{len}} {unit} · {{per_sec}} · ETA {{eta}}");
    pb.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
    pb
}

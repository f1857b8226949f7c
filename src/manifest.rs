//! The record every run writes next to its outputs: tool version, git
//! commit, the exact command line, the resolved configuration and the seed.

use anyhow::Context;
use serde::Serialize;
use std::path::Path;

/// Contents of `run.toml`.
#[derive(Debug, Serialize)]
pub struct Manifest<C: Serialize> {
    /// Always "tidalscope".
    pub tool: &'static str,
    /// Crate version.
    pub version: &'static str,
    /// Git commit of the build ("-dirty" when built from modified sources).
    pub git_commit: &'static str,
    /// Subcommand.
    pub command: &'static str,
    /// Full command line.
    pub args: Vec<String>,
    /// The folder the command ran in: relative paths in `args` and
    /// `config` are relative to it.
    pub working_directory: String,
    /// Start time, UTC (ISO 8601).
    pub started_utc: String,
    /// Wall time of the run in seconds.
    pub wall_seconds: f64,
    /// The resolved configuration, seed included.
    pub config: C,
}

impl<C: Serialize> Manifest<C> {
    /// A manifest for `command` run with `config`.
    pub fn new(command: &'static str, config: C, started: std::time::SystemTime, wall_seconds: f64) -> Self {
        Self {
            tool: "tidalscope",
            version: tidalscope_core::VERSION,
            git_commit: env!("TIDALSCOPE_GIT_COMMIT"),
            command,
            args: std::env::args().collect(),
            working_directory: std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
            started_utc: utc_iso8601(started),
            wall_seconds: (wall_seconds * 1000.0).round() / 1000.0,
            config,
        }
    }

    /// Writes `run.toml` into `dir` atomically.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        self.write_as(&dir.join("run.toml"))
    }

    /// Writes the manifest to `path` atomically.
    pub fn write_as(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(self).context("serialising the run manifest")?;
        tidalscope_io::atomic::write(path, text.as_bytes())?;
        Ok(())
    }
}

/// ISO 8601 UTC timestamp of a system time (civil-from-days, Hinnant's
/// algorithm), without a date-time dependency.
pub fn utc_iso8601(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_civil_dates() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        assert_eq!(utc_iso8601(t), "2026-11-18T11:06:40Z");
        assert_eq!(utc_iso8601(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}

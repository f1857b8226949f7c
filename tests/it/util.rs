//! Running the `tidalscope` binary in a temporary folder, ripgrep style:
//! a failure prints the command, its folder, stdout and stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary working folder for one test.
pub struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    /// A fresh empty folder.
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temporary folder") }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside it.
    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Runs `tidalscope ARGS` here and returns its output, whatever the exit.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tidalscope"))
            .args(args)
            .current_dir(self.path())
            .output()
            .expect("binary runs")
    }

    /// Runs `tidalscope ARGS` and panics with the full story unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        if !out.status.success() {
            panic!("{}", describe(self.path(), args, &out));
        }
        out
    }

    /// Runs `tidalscope ARGS`, expects failure with exit code 1, and returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        self.fails_with(args, 1)
    }

    /// Runs `tidalscope ARGS`, expects the command line to be refused
    /// before any work (exit code 2), and returns stderr.
    pub fn refused(&self, args: &[&str]) -> String {
        self.fails_with(args, 2)
    }

    fn fails_with(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        if out.status.code() != Some(code) {
            panic!("expected exit {code}\n{}", describe(self.path(), args, &out));
        }
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn describe(dir: &Path, args: &[&str], out: &Output) -> String {
    format!(
        "command: tidalscope {}\ncwd: {}\nstatus: {}\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Reads a CSV file into a header and rows.
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("").split(',').map(String::from).collect();
    let rows = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    (header, rows)
}

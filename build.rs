//! Records the git commit the binary was built from, so every run folder can
//! name the exact code that produced it.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let commit = if dirty && commit != "unknown" { format!("{commit}-dirty") } else { commit };
    println!("cargo:rustc-env=TIDALSCOPE_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
    // An edit to a tracked file makes the build dirty without touching the
    // index: watch the sources too (cargo scans directories recursively).
    // Only the crates' src and manifests: pytest writes caches elsewhere
    // under crates/, which would rebuild the binary after every test run.
    let mut watched = vec!["src".to_string(), "Cargo.toml".to_string(), "Cargo.lock".to_string()];
    if let Ok(crates) = std::fs::read_dir("crates") {
        for krate in crates.flatten() {
            for part in ["src", "Cargo.toml"] {
                let path = krate.path().join(part);
                if path.exists() {
                    watched.push(path.display().to_string());
                }
            }
        }
    }
    for path in watched {
        println!("cargo:rerun-if-changed={path}");
    }
}

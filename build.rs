//! Records the git commit the binary is built from, for `tollgate --version` (none when
//! built outside a git checkout of this repository, e.g. from a published crate).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `git ARGS` in `dir`, its standard output when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
}

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    // Only this package's own repository counts: a crate unpacked inside some other
    // repository (a vendor directory) must not claim that repository's commit.
    let ours = git(&here, &["rev-parse", "--show-toplevel"])
        .and_then(|top| std::fs::canonicalize(top.trim()).ok())
        .zip(std::fs::canonicalize(&here).ok())
        .is_some_and(|(top, here)| top == here);
    let commit = ours
        .then(|| git(&here, &["rev-parse", "--short=12", "HEAD"]))
        .flatten()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let dirty = commit.is_some()
        && git(&here, &["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|out| !out.trim().is_empty());
    let version = match commit {
        Some(c) if dirty => format!(
            "{} (commit {c}, with uncommitted changes)",
            env!("CARGO_PKG_VERSION")
        ),
        Some(c) => format!("{} (commit {c})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_string(),
    };
    println!("cargo:rustc-env=TOLLGATE_VERSION={version}");
    // Rebuild when HEAD moves (a commit, a checkout); the index covers staged changes.
    let dot_git = here.join(".git");
    for name in ["HEAD", "index"] {
        let path = dot_git.join(name);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    if let Ok(head) = std::fs::read_to_string(dot_git.join("HEAD"))
        && let Some(reference) = head.strip_prefix("ref: ")
    {
        let reference = dot_git.join(reference.trim());
        if reference.exists() {
            println!("cargo:rerun-if-changed={}", reference.display());
        }
    }
}

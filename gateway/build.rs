//! Gives the binary the commit it was built from, as `FERRY_GIT_HASH`:
//! a short hash with `-dirty` when tracked files had uncommitted changes,
//! or "unknown" where there is no git (a source tarball, a container build
//! without `.git`). A build never fails for want of git.
//!
//! `FERRY_GIT_HASH` set in the build's environment wins (a Docker build
//! passes it as a build argument, since its context has no `.git`).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=FERRY_GIT_HASH");
    // Only characters a hash or a tag has: the value goes into a cargo
    // directive line and into `ferry version`'s output.
    let given = std::env::var("FERRY_GIT_HASH")
        .ok()
        .map(|hash| {
            hash.chars()
                .filter(|c| c.is_ascii_alphanumeric() || "-._".contains(*c))
                .collect::<String>()
        })
        .filter(|hash| !hash.is_empty());
    let hash = given.or_else(from_git).unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=FERRY_GIT_HASH={hash}");
}

fn from_git() -> Option<String> {
    let hash = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Rebuilt when a commit is made or checked out, or files are staged;
    // an edit that is never staged keeps the mark of the last build. Only
    // files that exist are watched: cargo reruns a build script whose
    // watched file is missing on every build.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = ["HEAD", "index", "packed-refs"]
        .into_iter()
        .chain(branch.as_deref());
    for file in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", file])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo::rerun-if-changed={path}");
        }
    }
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

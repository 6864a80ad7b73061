//! Records the git commit the binary is built from, for `--version`. Outside a git checkout
//! (a source tarball, a container build without `.git`), `THOTH_GIT_COMMIT` may name it;
//! otherwise it is "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=THOTH_GIT_COMMIT");
    // Only files that exist: a missing one would make Cargo rerun this on every build.
    let watch = |path: String| {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    };
    watch(".git/HEAD".into());
    watch(".git/packed-refs".into());
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(reference) = head.strip_prefix("ref: ") {
            watch(format!(".git/{}", reference.trim()));
        }
    }
    let commit = std::env::var("THOTH_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=THOTH_GIT_COMMIT={commit}");
}

fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}

//! Finding the workspace's binaries (built by `cargo build --workspace --bins`) next to the running executable.

use std::path::PathBuf;

use anyhow::Context;

/// Path of a workspace binary such as `weft-operator`, from the same target directory and profile as the
/// running test or tool.
pub fn path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe.parent().context("executable has no directory")?.to_path_buf();
    // Integration tests run from target/<profile>/deps.
    if dir.ends_with("deps") {
        dir.pop();
    }
    let candidate = dir.join(name);
    anyhow::ensure!(
        candidate.is_file(),
        "{} not found; build the workspace binaries first: cargo build --workspace --bins",
        candidate.display()
    );
    Ok(candidate)
}

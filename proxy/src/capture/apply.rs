//! Installing a [`Ruleset`]: reads the nat table (`iptables-save -t nat`) to see which jumps exist, then feeds the
//! rules to `iptables-restore --noflush`, which leaves every other chain alone. The thin I/O edge of capture.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use super::Ruleset;

const SAVE: &str = "iptables-save";
const RESTORE: &str = "iptables-restore";

/// Why the rules could not be installed; one line each, for an init container's termination message.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{tool} not found: install iptables (e.g. apt-get install iptables) or put it on PATH")]
    NotFound { tool: &'static str },
    #[error("{tool}: not permitted ({detail}); weft-proxy init needs root or CAP_NET_ADMIN and CAP_NET_RAW")]
    NotPermitted { tool: &'static str, detail: String },
    #[error("{tool} failed ({status}): {detail}")]
    Failed { tool: &'static str, status: String, detail: String },
    #[error("running {tool}: {source}")]
    Io { tool: &'static str, source: std::io::Error },
}

/// Installs `ruleset` and returns the iptables-restore text that was applied.
pub fn apply(ruleset: &Ruleset) -> Result<String, ApplyError> {
    let saved = run(SAVE, &["-t", "nat"], None)?;
    let text = ruleset.restore_text(Some(&String::from_utf8_lossy(&saved.stdout)));
    run(RESTORE, &["--noflush"], Some(&text))?;
    Ok(text)
}

fn run(tool: &'static str, args: &[&str], input: Option<&str>) -> Result<Output, ApplyError> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ApplyError::NotFound { tool },
            _ => ApplyError::Io { tool, source },
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A tool that exits early closes the pipe; its exit status below says why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let output = child.wait_with_output().map_err(|source| ApplyError::Io { tool, source })?;
    if output.status.success() {
        return Ok(output);
    }
    Err(failure(tool, &output))
}

/// Classifies a failed run by what the tool printed.
fn failure(tool: &'static str, output: &Output) -> ApplyError {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let detail = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no output").to_string();
    let lower = stderr.to_ascii_lowercase();
    if ["permission denied", "must be root", "operation not permitted"].iter().any(|s| lower.contains(s)) {
        return ApplyError::NotPermitted { tool, detail };
    }
    ApplyError::Failed { tool, status: output.status.to_string(), detail }
}

//! How every Weft binary (`weft-operator`, `weft-webhook`, `weft-proxy`) behaves as a process, so they behave
//! alike: a bad flag exits 2 with one line naming it, a failure exits 1 with one line (the error and its causes),
//! logs are `tracing` with a RUST_LOG-style filter, and SIGTERM or Ctrl-C starts a graceful stop.

#![forbid(unsafe_code)]

pub mod duration;
pub mod log_writer;
pub mod telemetry;

use std::ffi::OsString;
use std::fmt::Display;
use std::process::ExitCode;

pub use duration::parse_duration;

/// Parses the command line (as given by `args`); on `--help`/`--version` prints and exits 0, on a bad flag prints
/// one line, `program: <what is wrong>`, and exits 2. The `Err` is the exit code to return from `main`.
pub fn parse_args<T: clap::Parser>(program: &str, args: impl IntoIterator<Item = OsString>) -> Result<T, ExitCode> {
    match T::try_parse_from(args) {
        Ok(parsed) => Ok(parsed),
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            Err(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("{program}: {}", first_paragraph(&err.to_string()));
            Err(ExitCode::from(2))
        }
    }
}

/// The exit code of a finished run: 0, or 1 after printing `program: <error: cause: cause>` on one line.
pub fn exit_code<E: Display>(program: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{program}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// clap's message up to its first blank line, on one line: keeps the list of missing flags and possible values.
fn first_paragraph(text: &str) -> String {
    let lines = text.lines().take_while(|line| !line.trim().is_empty()).map(str::trim);
    lines.collect::<Vec<_>>().join(" ").trim_start_matches("error: ").to_string()
}

/// A `--log` filter that is not valid RUST_LOG syntax.
#[derive(Debug, thiserror::Error)]
#[error("invalid --log filter {filter:?}: {reason}")]
pub struct LogFilterError {
    filter: String,
    reason: String,
}

/// Logs to stderr with `filter` (e.g. `info` or `weft_proxy=debug`), in colour only on a terminal, one line per
/// event (line breaks in logged values are escaped, see [`log_writer`]).
pub fn init_logging(filter: &str) -> Result<(), LogFilterError> {
    let env_filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| LogFilterError { filter: filter.to_string(), reason: e.to_string() })?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(env_filter).with_ansi(ansi).with_writer(log_writer::OneLineStderr).init();
    Ok(())
}

/// Most characters of client-supplied text echoed into a log line, an error reply or a status message.
pub const EXCERPT_CHARS: usize = 128;

/// An error and its sources on one line (`client error (Connect): tcp connect error: Connection refused`): where
/// tonic and hyper say what really went wrong.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// At most [`EXCERPT_CHARS`] characters of `text` (client input: a node id, a serde error quoting a value), marked
/// with the full length when cut, so that a client cannot make the process echo megabytes.
pub fn excerpt(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(EXCERPT_CHARS) {
        None => text.into(),
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()).into(),
    }
}

/// Completes on the first SIGTERM (how Kubernetes stops a container) or SIGINT (Ctrl-C), naming it.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            tracing::warn!("cannot listen for SIGTERM; only Ctrl-C stops the process gracefully");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Args {
        #[arg(long)]
        port: u16,
    }

    #[test]
    fn a_bad_flag_is_exit_code_2() {
        let parsed = parse_args::<Args>("t", ["t", "--port", "http"].map(OsString::from));
        assert_eq!(parsed.unwrap_err(), ExitCode::from(2));
        assert_eq!(parse_args::<Args>("t", ["t", "--port", "80"].map(OsString::from)).map(|a| a.port), Ok(80));
    }

    #[test]
    fn clap_errors_become_their_first_paragraph_on_one_line() {
        let text =
            "error: invalid value 'x' for '--port <PORT>': invalid digit\n\nFor more information, try '--help'.\n";
        assert_eq!(first_paragraph(text), "invalid value 'x' for '--port <PORT>': invalid digit");
        let missing = "error: the following required arguments were not provided:\n  --xds-address <URL>\n\nUsage: x\n";
        assert_eq!(first_paragraph(missing), "the following required arguments were not provided: --xds-address <URL>");
    }

    #[test]
    fn long_client_text_is_cut_and_marked() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(1000);
        let cut = excerpt(&long);
        assert!(cut.starts_with(&"é".repeat(EXCERPT_CHARS)) && cut.ends_with("... (2000 bytes)"), "{cut}");
    }

    #[test]
    fn failures_are_exit_code_1() {
        assert_eq!(exit_code::<String>("t", Err("boom".into())), ExitCode::FAILURE);
        assert_eq!(exit_code::<String>("t", Ok(())), ExitCode::SUCCESS);
    }
}

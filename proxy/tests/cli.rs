//! What users and init containers see from the binary: one-line errors with the right exit codes, and the rules
//! `init --dry-run` prints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn proxy(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft-proxy"));
    command.args(args).env_remove("WEFT_XDS_ADDRESS").env_remove("POD_NAME").env_remove("POD_NAMESPACE");
    command
}

/// Asserts a failure with exit code `code` and exactly one line on stderr; returns that line.
fn one_line_failure(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "expected one line, got:\n{stderr}");
    assert!(stderr.starts_with("weft-proxy: "), "{stderr}");
    stderr
}

#[test]
fn command_line_mistakes_are_one_line_with_exit_2() {
    for (args, needle) in [
        (&["--bogus"][..], "--bogus"),
        (&["run", "--pod-name", "p", "--pod-namespace", "n"], "--xds-address"),
        (&["init", "--exclude-outbound-ports", "5432,http"], "--exclude-outbound-ports"),
        (&["init", "--exclude-outbound-ip-ranges", "10.0.0.0/33"], "prefix must be a number from 0 to 32"),
        (&["wait", "--timeout", "soon"], "--timeout"),
        (
            &["--xds-address", "http://x:1", "--pod-name", "p", "--pod-namespace", "n", "--trace-sampling", "150"],
            "from 0 to 100",
        ),
        (
            &[
                "--xds-address",
                "http://x:1",
                "--pod-name",
                "p",
                "--pod-namespace",
                "n",
                "--inbound-listen",
                "0.0.0.0:1",
            ],
            "--transparent",
        ),
    ] {
        let line = one_line_failure(&proxy(args).output().unwrap(), 2);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
}

#[test]
fn a_bad_xds_address_is_one_line_with_exit_1() {
    for (address, needle) in [
        ("ftp://op:15010", "must start with http:// or https://"),
        ("https://op:15012", "https:// needs --trust-bundle"),
    ] {
        let output = proxy(&["--xds-address", address, "--pod-name", "p", "--pod-namespace", "n"]).output().unwrap();
        let line = one_line_failure(&output, 1);
        assert!(line.contains(needle), "{address}: {line}");
    }
}

#[test]
fn a_bad_trace_collector_is_one_line_with_exit_1() {
    let args = ["--xds-address", "http://op:15010", "--pod-name", "p", "--pod-namespace", "n"];
    let output = proxy(&[&args[..], &["--trace-collector", "https://otel:4317"]].concat()).output().unwrap();
    let line = one_line_failure(&output, 1);
    assert!(line.contains("--trace-collector") && line.contains("plaintext"), "{line}");
}

#[test]
fn init_dry_run_prints_the_rules_without_touching_iptables() {
    let output =
        proxy(&["init", "--exclude-outbound-ports", "5432", "--dry-run"]).env("PATH", "/nonexistent").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("*nat\n") && text.ends_with("COMMIT\n"), "{text}");
    assert!(text.contains("-A WEFT_OUTPUT -p tcp --dport 5432 -j RETURN\n"), "{text}");
    assert!(text.contains("-A PREROUTING -p tcp -j WEFT_INBOUND\n"), "{text}");
}

#[test]
fn init_without_iptables_says_so_in_one_line() {
    let output = proxy(&["init"]).env("PATH", "/nonexistent").output().unwrap();
    let line = one_line_failure(&output, 1);
    assert!(line.contains("iptables-save not found"), "{line}");
}

#[test]
fn init_without_privileges_says_so_in_one_line() {
    let has = |tool: &str| {
        Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
    };
    if !has("iptables-save") {
        eprintln!("skipping: iptables-save is not installed");
        return;
    }
    let root = rustix::process::geteuid().is_root();
    let output = if root {
        if !has("setpriv") {
            eprintln!("skipping: running as root and setpriv (util-linux) is missing to drop privileges");
            return;
        }
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_weft-proxy"), "init"]);
        command.output().unwrap()
    } else {
        proxy(&["init"]).output().unwrap()
    };
    let line = one_line_failure(&output, 1);
    assert!(line.contains("not permitted") && line.contains("CAP_NET_ADMIN"), "{line}");
}

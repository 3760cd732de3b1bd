//! The README's entry points as make runs them: `make demo` and `make bench` start what `make build` compiled,
//! instead of a `cargo run -p` that resolves features for one package and silently recompiles shared crates for
//! tens of seconds before the demo shows anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The commands `make -n target` would run.
fn dry_run(target: &str) -> Vec<String> {
    // Run as a top-level make even under `make test` (no "Entering directory" lines, no inherited flags).
    let output = Command::new("make")
        .args(["--no-print-directory", "-n", target])
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(output.status.success(), "make -n {target}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn demo_and_bench_run_the_binaries_build_made() {
    for (target, build, binary) in [
        ("demo", "build --workspace --bins", "debug/weft-demo"),
        ("bench", "build --release --workspace --bins", "release/weft-bench"),
    ] {
        let commands = dry_run(target);
        let is_cargo = |c: &&String| c.split_whitespace().next().is_some_and(|program| program.ends_with("cargo"));
        let cargo: Vec<&String> = commands.iter().filter(is_cargo).collect();
        assert_eq!(cargo.len(), 1, "make {target} runs cargo once, to build the workspace: {commands:#?}");
        assert!(cargo[0].contains(build), "{commands:#?}");
        let run = commands.last().unwrap();
        let program = run.split_whitespace().next().unwrap_or_default().trim_matches('"');
        assert!(program.ends_with(binary), "make {target} ends by running {binary}: {commands:#?}");
    }
    // What `make demo` runs is where the workspace build put it (this test's own target directory).
    let demo = dry_run("demo").last().unwrap().trim_matches('"').to_string();
    let tests_dir = std::env::current_exe().unwrap();
    let target = tests_dir.ancestors().nth(3).unwrap();
    assert_eq!(PathBuf::from(&demo), target.join("debug/weft-demo"));
}

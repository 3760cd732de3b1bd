//! Golden injection tests: every pod in `testdata/inject/<case>.yaml` is injected in both sidecar modes, and the pod
//! after applying the JSON patch is compared with `<case>.<mode>.injected` (or the file records that there was no
//! patch, or why the pod was rejected). Every injected pod must also be left alone when injected again.
//!
//! Regenerate after an intended change with `WEFT_UPDATE_GOLDEN=1 cargo test -p weft-webhook --test golden`,
//! then review the diff.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use weft_webhook::config::{InjectConfig, SidecarMode};
use weft_webhook::inject::inject;

const UPDATE_COMMAND: &str = "WEFT_UPDATE_GOLDEN=1 cargo test -p weft-webhook --test golden";

fn config(mode: SidecarMode) -> InjectConfig {
    InjectConfig::with_defaults("weft-proxy:golden", mode)
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/inject")
}

/// What the golden file of one case in one mode holds.
fn render(case: &str, input: &Value, mode: SidecarMode) -> String {
    let pod: Pod = serde_json::from_value(input.clone()).expect("input is a Pod");
    let header = format!("# {case}.yaml injected in {mode} mode. Regenerate: {UPDATE_COMMAND}\n");
    match inject(&pod, &config(mode)) {
        Err(err) => format!("{header}# rejected: {err}\n"),
        Ok(None) => format!("{header}# unchanged: no patch\n"),
        Ok(Some(patch)) => {
            let mut injected = input.clone();
            json_patch::patch(&mut injected, &patch).unwrap_or_else(|e| panic!("{case} {mode}: patch failed: {e}"));
            let again: Pod = serde_json::from_value(injected.clone()).expect("injected pod is a Pod");
            assert_eq!(inject(&again, &config(mode)).unwrap(), None, "{case} {mode}: injecting twice changed the pod");
            let yaml = serde_saphyr::to_string(&injected).unwrap();
            let reread: Value = serde_saphyr::from_str(&yaml).unwrap();
            assert_eq!(reread, injected, "{case} {mode}: YAML does not round-trip");
            format!("{header}{yaml}")
        }
    }
}

#[test]
fn injection_matches_golden_files() {
    let update = std::env::var_os("WEFT_UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    let mut expected_files = BTreeSet::new();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 9, "test cases are missing from {}", dir().display());
    for path in cases {
        let case = path.file_stem().unwrap().to_str().unwrap().to_string();
        let input: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for mode in [SidecarMode::Native, SidecarMode::Classic] {
            let golden = dir().join(format!("{case}.{mode}.injected"));
            expected_files.insert(golden.clone());
            let want = render(&case, &input, mode);
            if update {
                std::fs::write(&golden, &want).unwrap();
            } else if std::fs::read_to_string(&golden).ok().as_deref() != Some(want.as_str()) {
                stale.push(golden.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "injected") && !expected_files.contains(&path) {
            if update {
                std::fs::remove_file(&path).unwrap();
            } else {
                stale.push(format!("{} (no input case)", path.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    assert!(stale.is_empty(), "golden files are stale: {stale:?}\nreview the change, then run: {UPDATE_COMMAND}");
}

#[test]
fn expected_outcomes() {
    let outcome = |case: &str, mode: SidecarMode| {
        let text = std::fs::read_to_string(dir().join(format!("{case}.yaml"))).unwrap();
        let pod: Pod = serde_saphyr::from_str(&text).unwrap();
        inject(&pod, &config(mode)).map(|p| p.is_some())
    };
    for mode in [SidecarMode::Native, SidecarMode::Classic] {
        for case in ["plain", "exclusions", "resources", "init-containers", "access-log"] {
            assert_eq!(outcome(case, mode), Ok(true), "{case} {mode}");
        }
        for case in ["opt-out", "host-network", "already-injected"] {
            assert_eq!(outcome(case, mode), Ok(false), "{case} {mode}");
        }
        for case in ["bad-exclusion", "bad-resources"] {
            assert!(outcome(case, mode).is_err(), "{case} {mode}");
        }
    }
}

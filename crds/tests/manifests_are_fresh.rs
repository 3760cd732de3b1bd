//! The committed CRD YAML must equal what the Rust types generate, and must be a structural schema.

// Test helpers panic on broken fixtures: that is a test failure with a clear location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

#[test]
fn committed_manifests_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests");
    for (name, rendered) in weft_crds::manifests::render_all().unwrap() {
        let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            committed == rendered,
            "crds/manifests/{name} is stale: run `cargo run -p weft-crds --bin crdgen` and commit the result"
        );
    }
}

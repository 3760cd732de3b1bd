//! Writes the CRD manifests of every Weft kind into `crds/manifests/` (or the folder given as the first argument).
//! `cargo run -p weft-crds --bin crdgen` after changing a type; a test fails while the committed files are stale.

use std::path::PathBuf;

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests"));
    if let Err(err) = weft_crds::manifests::write_all(&dir) {
        eprintln!("crdgen: {err}");
        std::process::exit(1);
    }
    println!("wrote CRD manifests to {}", dir.display());
}

//! Writes the CRD manifests of every Weft kind into `crds/manifests/` (or the folder given as the first argument),
//! and the same CRDs as Helm templates into `charts/weft-crds/templates/` (or the folder given as the second).
//! `cargo run -p weft-crds --bin crdgen` after changing a type; a test fails while the committed files are stale.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let manifests = args.next().unwrap_or_else(|| crate_dir.join("manifests"));
    let chart = args.next().unwrap_or_else(|| crate_dir.join("../charts/weft-crds/templates"));
    if let Err(err) = weft_crds::manifests::write_all(&manifests) {
        eprintln!("crdgen: {err}");
        std::process::exit(1);
    }
    println!("wrote CRD manifests to {}", manifests.display());
    if let Err(err) = weft_crds::manifests::write_chart_templates(&chart) {
        eprintln!("crdgen: {err}");
        std::process::exit(1);
    }
    println!("wrote CRD chart templates to {}", chart.display());
}

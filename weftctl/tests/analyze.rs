//! `weftctl analyze` on a directory holding many kinds of problems: all are reported in one run, in file order,
//! one line each with file, line, object and field path, and the exit code says there were errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn analyze(paths: &[&Path]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weftctl"));
    command.arg("analyze");
    for path in paths {
        command.arg("-f").arg(path);
    }
    let output = command.output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

#[test]
fn every_problem_of_a_directory_is_reported_in_file_order() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/analyze");
    let (code, out, err) = analyze(&[&dir]);
    assert_eq!(code, 1, "errors found: exit 1\n{out}{err}");
    let at = |file: &str| format!("[{}/{file}", dir.display());
    let expected = [
        (at("01-namespaces.yaml:5]"), "Warning", "namespace legacy has 1 pod(s) but no weft.dev/inject=enabled label"),
        (at("02-workloads.yaml:6]"), "Warning", "(Pod shop/reviews-1) pod has no weft-proxy sidecar"),
        (
            at("03-rules.yaml:1]"),
            "Warning",
            "spec.http[0].route[0].destination.subset: reviews.shop.svc.cluster.local has no subset \"v3\"",
        ),
        (
            at("03-rules.yaml:10]"),
            "Warning",
            "(VirtualService shop/reviews-copy) host reviews.shop.svc.cluster.local is also routed by VirtualService shop/reviews",
        ),
        (at("03-rules.yaml:17]"), "Error", "spec.http[0].timeout: duration \"soon\""),
        (at("03-rules.yaml:27]"), "Error", "apiVersion: DestinationRule of \"networking.istio.io/v1\" is Istio's"),
        (at("03-rules.yaml:32]"), "Error", "invalid YAML"),
        (at("04-more.yaml:1]"), "Warning", "spec.hosts[0]: no Service payments.shop.svc.cluster.local"),
        (
            at("04-more.yaml:1]"),
            "Warning",
            "spec.http[0].route[0].destination.host: no Service payments.shop.svc.cluster.local",
        ),
    ];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), expected.len(), "one line per problem:\n{out}");
    for (line, (place, level, message)) in lines.iter().zip(&expected) {
        assert!(line.starts_with(&format!("{level} {place}")), "expected {level} {place}, got:\n{line}\n\n{out}");
        assert!(line.contains(message), "expected {message:?} in:\n{line}");
    }
}

#[test]
fn files_without_problems_pass() {
    let dir = tempfile::tempdir().unwrap();
    let good = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: 80}]}\n---\n\
        apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: web, namespace: shop}\n\
        spec: {hosts: [web], http: [{route: [{destination: {host: web}}], timeout: 2s}]}\n";
    std::fs::write(dir.path().join("good.yaml"), good).unwrap();
    let (code, out, _) = analyze(&[dir.path()]);
    assert_eq!((code, out.as_str()), (0, "No problems found in 1 file(s).\n"));
    let (code, _, err) = analyze(&[&dir.path().join("missing.yaml")]);
    assert_eq!(code, 1);
    assert!(err.starts_with("weftctl: ") && err.ends_with("missing.yaml: no such file or directory\n"), "{err}");
}

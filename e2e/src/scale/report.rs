//! The scale benchmark's tables: one row per cell, and how each cost grows between cells (with S at a fixed P,
//! with P at a fixed S). Pure formatting.

use std::fmt::Write as _;
use std::time::Duration;

use super::{CellResult, ChangeCost};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(((last as f64) * p).round() as usize).copied()
}

fn latency(cost: &ChangeCost, p: f64) -> String {
    percentile(&cost.latencies, p).map_or("-".into(), |d| format!("{:.0}", ms(d)))
}

fn change_row(cost: &ChangeCost) -> String {
    format!(
        "{:>9.1} {:>8.0} {:>10.0} {:>7} {:>7} {:>7} {:>5}/{:<5} {:>6}",
        ms(cost.cpu),
        cost.sent.messages,
        cost.sent.bytes / 1024.0,
        latency(cost, 0.5),
        latency(cost, 0.99),
        latency(cost, 1.0),
        cost.latencies.len(),
        cost.proxies,
        cost.other_responses,
    )
}

/// Every table for `results`.
pub fn tables(results: &[CellResult]) -> String {
    let mut out = String::new();
    startup_table(&mut out, results);
    probe_table(&mut out, results);
    change_tables(&mut out, results);
    churn_table(&mut out, results);
    out.push_str(&growth(results));
    out
}

/// The operator's startup and memory, and what each proxy holds.
fn startup_table(out: &mut String, results: &[CellResult]) {
    let _ = writeln!(
        out,
        "\nstartup\n{:>6} {:>6} {:>10} {:>9} {:>9} {:>14} {:>18}",
        "S", "P", "ready (s)", "RSS MiB", "peak MiB", "proxies ready (s)", "clusters per proxy"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:>6} {:>6} {:>10.2} {:>9.0} {:>9.0} {:>14.2} {:>18.0}",
            r.spec.services,
            r.spec.proxies,
            r.startup.as_secs_f64(),
            r.rss_mib,
            r.peak_mib,
            r.all_ready.as_secs_f64(),
            r.clusters_per_proxy
        );
    }
}

/// What the real proxy's first requests cost.
fn probe_table(out: &mut String, results: &[CellResult]) {
    let _ = writeln!(
        out,
        "\nprobe: a real weft-proxy calling {} Services it holds no config for\n{:>6} {:>6} {:>14} {:>14} {:>10} {:>9} {:>13}",
        super::probe::CALLED,
        "S",
        "P",
        "first max ms",
        "later p50 ms",
        "added ms",
        "clusters",
        "proxy RSS MiB"
    );
    for r in results {
        let first = r.probe.first.iter().max().copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:>6} {:>6} {:>14.2} {:>14.2} {:>10.2} {:>9} {:>13.1}",
            r.spec.services,
            r.spec.proxies,
            ms(first),
            ms(r.probe.later),
            ms(first.saturating_sub(r.probe.later)),
            r.probe.clusters,
            r.probe.rss_mib
        );
    }
}

/// One VirtualService edit and one endpoint change.
fn change_tables(out: &mut String, results: &[CellResult]) {
    let header = format!(
        "{:>6} {:>6} {:>9} {:>8} {:>10} {:>7} {:>7} {:>7} {:>11} {:>6}",
        "S", "P", "CPU ms", "msgs", "KiB sent", "p50 ms", "p99 ms", "max ms", "reached", "other"
    );
    for (title, pick) in [
        (
            "one VirtualService edit (time until each proxy has the new routes)",
            (|r: &CellResult| &r.edit) as fn(&CellResult) -> &ChangeCost,
        ),
        ("one endpoint change (time until each proxy has the new endpoints; other = responses of other types)", |r| {
            &r.endpoint
        }),
    ] {
        let _ = writeln!(out, "\n{title}\n{header}");
        for r in results {
            let _ = writeln!(out, "{:>6} {:>6} {}", r.spec.services, r.spec.proxies, change_row(pick(r)));
        }
    }
}

/// A churn of edits.
fn churn_table(out: &mut String, results: &[CellResult]) {
    if results.iter().any(|r| r.churn.is_some()) {
        let _ = writeln!(
            out,
            "\nchurn (edits of one VirtualService)\n{:>6} {:>6} {:>6} {:>14} {:>11} {:>12}",
            "S", "P", "edits", "CPU/edit ms", "converged", "max lag ms"
        );
        for r in results {
            if let Some(c) = &r.churn {
                let _ = writeln!(
                    out,
                    "{:>6} {:>6} {:>6} {:>14.1} {:>5}/{:<5} {:>12.0}",
                    r.spec.services,
                    r.spec.proxies,
                    c.edits,
                    ms(c.cpu_per_edit),
                    c.converged,
                    c.proxies,
                    ms(c.max_lag)
                );
            }
        }
    }
}

type Metric = fn(&CellResult) -> f64;

#[derive(Clone, Copy)]
enum Axis {
    Services,
    Proxies,
}

/// `(size along the axis, size along the other one)`.
fn sizes(cell: &CellResult, axis: Axis) -> (usize, usize) {
    match axis {
        Axis::Services => (cell.spec.services, cell.spec.proxies),
        Axis::Proxies => (cell.spec.proxies, cell.spec.services),
    }
}

/// The next larger cell along `axis`, the other size being the same.
fn next_larger<'a>(results: &'a [CellResult], from: &CellResult, axis: Axis) -> Option<&'a CellResult> {
    let (size, other) = sizes(from, axis);
    results.iter().filter(|c| sizes(c, axis).1 == other && sizes(c, axis).0 > size).min_by_key(|c| sizes(c, axis).0)
}

/// How costs grow from one cell to the next larger one along S (same P) and along P (same S).
pub fn growth(results: &[CellResult]) -> String {
    let metrics: [(&str, Metric); 5] = [
        ("operator RSS", |r| r.rss_mib),
        ("CPU per VirtualService edit", |r| ms(r.edit.cpu)),
        ("bytes per VirtualService edit", |r| r.edit.sent.bytes),
        ("CPU per endpoint change", |r| ms(r.endpoint.cpu)),
        ("bytes per endpoint change", |r| r.endpoint.sent.bytes),
    ];
    let mut out = String::from("\ngrowth (x = ratio to the previous size)\n");
    for (name, metric) in metrics {
        let mut steps = Vec::new();
        for a in results {
            for axis in [Axis::Services, Axis::Proxies] {
                let Some(b) = next_larger(results, a, axis) else { continue };
                let ratio = if metric(a) > 0.0 { format!("x{:.1}", metric(b) / metric(a)) } else { "-".into() };
                let ((from, other), (to, _)) = (sizes(a, axis), sizes(b, axis));
                let (along, fixed) = match axis {
                    Axis::Services => ("S", "P"),
                    Axis::Proxies => ("P", "S"),
                };
                steps.push(format!("{along} {from}->{to} at {fixed}={other}: {ratio}"));
            }
        }
        if !steps.is_empty() {
            let _ = writeln!(out, "  {name}: {}", steps.join(", "));
        }
    }
    out
}

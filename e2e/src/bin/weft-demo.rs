//! `make demo`: a local mesh on loopback with a canary you can watch. Starts the standalone operator, two
//! versions of `reviews` and a proxy, sends steady traffic through the proxy, and moves the canary
//! 100/0 -> 90/10 -> 50/50 -> 0/100 by editing the VirtualService file, drawing the live split. Ctrl-C stops
//! everything it started.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Parser;
use weft_e2e::canary::{Event, StepReport, run_steps};
use weft_e2e::load::LoadLoop;
use weft_e2e::mesh::{HOST, LocalMesh};

#[derive(Debug, Parser)]
#[command(name = "weft-demo")]
struct Args {
    /// Seconds to hold each canary step.
    #[arg(long, default_value_t = 4.0)]
    hold: f64,
    /// Client connections sending requests.
    #[arg(long, default_value_t = 4)]
    clients: usize,
}

const STEPS: [[u32; 2]; 4] = [[100, 0], [90, 10], [50, 50], [0, 100]];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.hold > 0.0 && args.hold < 3600.0, "--hold must be between 0 and 3600 seconds");
    let paint = Paint(std::io::stdout().is_terminal());
    println!("{}", paint.bold("Weft demo: a canary rollout on a local mesh"));
    println!("starting the operator (standalone), reviews v1 + v2 (127.0.10.1, 127.0.10.2) and a proxy ...");
    let mesh = LocalMesh::start(STEPS[0]).await?;
    println!("  config dir  {}   (edit reviews-vs.yaml yourself while it runs)", mesh.config_dir().display());
    println!("  xDS {}   proxy outbound {}   admin {}/config_dump", mesh.xds, mesh.outbound, mesh.admin);
    println!("  traffic: {} clients sending GET http://{HOST}/ through the proxy\n", args.clients);
    let load = LoadLoop::start(mesh.client(), HOST, args.clients, Some(Duration::from_millis(2)));
    let totals = load.totals();
    let hold = Duration::from_secs_f64(args.hold);
    let rollout = run_steps(&mesh, &totals, &STEPS, hold, Duration::from_millis(500), |e| print_event(&paint, e));
    let reports = tokio::select! {
        reports = rollout => reports?,
        _ = tokio::signal::ctrl_c() => {
            println!("\ninterrupted; stopping everything");
            return Ok(());
        }
    };
    load.stop().await;
    print_summary(&paint, &reports);
    Ok(())
}

fn print_event(paint: &Paint, event: &Event) {
    match event {
        Event::Edited { weights } => {
            println!("{} reviews-vs.yaml: v1 weight {}, v2 weight {}", paint.bold("edit"), weights[0], weights[1])
        }
        Event::Applied { after, .. } => {
            println!("      the proxy applied it {:.0} ms after the edit", after.as_secs_f64() * 1000.0)
        }
        Event::Window { weights, counts, length } => {
            let ok = counts[0] + counts[1];
            let share = |n: u64| if ok == 0 { 0.0 } else { n as f64 / ok as f64 };
            println!(
                "  [{:>3}/{:<3}] v1 {} {:>5.1}%  v2 {} {:>5.1}%  {:>5.0} req/s  {}",
                weights[0],
                weights[1],
                paint.blue(&bar(share(counts[0]), 20)),
                share(counts[0]) * 100.0,
                paint.green(&bar(share(counts[1]), 20)),
                share(counts[1]) * 100.0,
                (ok + counts[2]) as f64 / length.as_secs_f64(),
                if counts[2] == 0 { "0 errors".to_string() } else { paint.red(&format!("{} errors", counts[2])) },
            );
        }
    }
}

fn print_summary(paint: &Paint, reports: &[StepReport]) {
    println!("\n{}", paint.bold("summary"));
    println!("  target   observed v1 / v2   requests  failed  took effect");
    for r in reports {
        println!(
            "  {:<7}  {:>5.1}% / {:>5.1}%  {:>9}  {:>6}  {:>7.0} ms",
            format!("{}/{}", r.weights[0], r.weights[1]),
            (1.0 - r.v2_share()) * 100.0,
            r.v2_share() * 100.0,
            r.requests(),
            r.failures,
            r.took_effect.as_secs_f64() * 1000.0
        );
    }
}

/// A bar of `width` cells filled to `share` (0..1), with eighth-cell resolution.
fn bar(share: f64, width: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (share.clamp(0.0, 1.0) * width as f64 * 8.0).round() as usize;
    let mut out = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        out.push(PARTS[eighths % 8]);
    }
    format!("{out:<width$}")
}

/// ANSI colours when writing to a terminal.
struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.0 { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
    }
    fn bold(&self, t: &str) -> String {
        self.wrap("1", t)
    }
    fn blue(&self, t: &str) -> String {
        self.wrap("34", t)
    }
    fn green(&self, t: &str) -> String {
        self.wrap("32", t)
    }
    fn red(&self, t: &str) -> String {
        self.wrap("31", t)
    }
}

//! `make bench-scale`: what the control plane costs as the mesh grows. For each cell of the grid (S Services x P
//! proxies) a fresh standalone operator (release build) serves P light ADS clients; the benchmark measures its
//! startup and memory, one VirtualService edit, one endpoint change and a churn of edits, and prints how each
//! cost grows with S and P. A benchmark, not a test: nothing is asserted.

use std::time::Duration;

use clap::Parser;
use weft_e2e::scale::{CellSpec, Protocol, ProxyScope, report, run_cell};

#[derive(Debug, Parser)]
#[command(name = "weft-scale")]
struct Args {
    /// Numbers of Services, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    services: Vec<usize>,
    /// Numbers of proxies, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    proxies: Vec<usize>,
    /// Namespaces the Services and proxies are spread over.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// Edits per second in the churn phase.
    #[arg(long, default_value_t = 10)]
    churn_rate: u32,
    /// Seconds of churn per cell; 0 skips it.
    #[arg(long, default_value_t = 30)]
    churn_seconds: u64,
    /// Longest wait for any phase of a cell before it is reported as not converged.
    #[arg(long, default_value_t = 120)]
    patience_seconds: u64,
    /// What the proxies speak: delta (as weft-proxy does) or sotw (state of the world, as some xDS clients do).
    #[arg(long, default_value = "delta", value_parser = ["delta", "sotw"])]
    protocol: String,
    /// The operator's --proxy-scope: namespace (each proxy holds its namespace and what its rules name) or mesh.
    #[arg(long, default_value = "namespace", value_parser = ["namespace", "mesh"])]
    proxy_scope: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.namespaces > 0, "--namespaces must be positive");
    let mut results = Vec::new();
    for &services in &args.services {
        for &proxies in &args.proxies {
            let churn =
                (args.churn_seconds > 0).then(|| (args.churn_rate.max(1), Duration::from_secs(args.churn_seconds)));
            let spec = CellSpec {
                services,
                proxies,
                namespaces: args.namespaces,
                churn,
                patience: Duration::from_secs(args.patience_seconds),
                protocol: if args.protocol == "sotw" { Protocol::StateOfTheWorld } else { Protocol::Delta },
                scope: if args.proxy_scope == "mesh" { ProxyScope::Mesh } else { ProxyScope::Namespace },
            };
            eprintln!("cell S={services} P={proxies} ...");
            match run_cell(spec).await {
                Ok(result) => {
                    print!("{}", report::tables(std::slice::from_ref(&result)));
                    results.push(result);
                }
                Err(err) => println!("cell S={services} P={proxies}: {err:#}"),
            }
        }
    }
    println!("\n==== all cells ====");
    print!("{}", report::tables(&results));
    Ok(())
}

//! `weft-proxy`: the Weft sidecar. `run` (the default) runs the proxy, `init` installs the iptables capture
//! rules, `wait` blocks until the proxy is ready. Errors are one line on stderr; the exit code is 0 on success
//! (also after a graceful drain), 1 on failure, 2 on a command-line error.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use weft_proxy::cli::{Cli, Command, InitArgs, RunArgs, WaitArgs, with_default_subcommand};

// jemalloc with its background thread rather than glibc's malloc: after a burst of connections closes, glibc
// keeps the memory they used (about 115 MB for 2500 in `make bench`) where jemalloc's background thread hands it
// back within seconds (17 MB 12 s later), at the same CPU per request. mimalloc kept it too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match weft_process::parse_args::<Cli>("weft-proxy", with_default_subcommand(std::env::args_os())) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Init(args) => init(&args),
        Command::Wait(args) => wait(&args),
    };
    weft_process::exit_code("weft-proxy", result)
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    weft_process::init_logging(&args.log)?;
    if let Err(err) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %err, "jemalloc's background thread did not start: memory freed after bursts returns later");
    }
    let settings = args.settings();
    settings.xds_endpoint()?;
    // One worker (a sidecar's default) runs on the current thread: no scheduler hand-offs between a worker and the
    // thread that waits for it.
    let mut builder = match args.workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        workers => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
    };
    let runtime = builder.enable_all().build().context("starting the async runtime")?;
    runtime.block_on(weft_proxy::app::run(settings, weft_process::shutdown_signal()))?;
    // Connections cut by the drain timeout are abandoned here, not waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

fn init(args: &InitArgs) -> anyhow::Result<()> {
    let settings = args.settings();
    settings.validate()?;
    let ruleset = settings.ruleset();
    if args.dry_run {
        print!("{}", ruleset.restore_text(None));
        return Ok(());
    }
    let applied = weft_proxy::capture::apply::apply(&ruleset)?;
    print!("{applied}");
    Ok(())
}

fn wait(args: &WaitArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(weft_proxy::wait::wait_ready(&args.url, args.timeout))?;
    Ok(())
}

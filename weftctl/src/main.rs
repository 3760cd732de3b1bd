//! `weftctl`: parses the command line on the workspace's conventions (a bad flag: one line, exit 2; a failure:
//! one line, exit 1) and runs the command.

use std::process::ExitCode;

use weftctl::cli::{Cli, Outcome, run};

fn main() -> ExitCode {
    let cli = match weft_process::parse_args::<Cli>("weftctl", std::env::args_os()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return weft_process::exit_code("weftctl", Err(anyhow::Error::from(e))),
    };
    match runtime.block_on(run(cli)) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::FAILURE,
        Err(e) => weft_process::exit_code("weftctl", Err(e)),
    }
}

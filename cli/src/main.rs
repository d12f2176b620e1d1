//! `switchyard`: the operator CLI. `switchyard dev` runs both planes in one
//! process on embedded defaults; `switchyard traces` reads the trace store;
//! `switchyard keys` manages API keys.
#![expect(clippy::print_stdout, reason = "a CLI talks to its user on stdout")]

mod connect;
mod credentials;
mod dev;
mod keys;
mod output;
mod traces;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Switchyard: an LLM routing gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a control plane and a data plane in this process: SQLite, no etcd,
    /// simulated providers, and real providers whose keys are set.
    Dev(dev::DevArgs),
    /// List, show and aggregate execution traces through a control plane.
    Traces(traces::TracesArgs),
    /// Create, list, rotate and revoke API keys through a control plane.
    Keys(keys::KeysArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Dev(args) => dev::run(args).await,
        Command::Traces(args) => traces::run(args).await,
        Command::Keys(args) => keys::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain in one line, without a backtrace: this is for people.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

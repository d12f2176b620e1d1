//! `switchyard`: the operator CLI. `switchyard dev` runs both planes in one
//! process on embedded defaults.
#![expect(clippy::print_stdout, reason = "a CLI talks to its user on stdout")]

mod dev;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dev(args) => dev::run(args).await,
    }
}

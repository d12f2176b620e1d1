//! `switchyard-control-plane`: the control-plane server.

use clap::Parser;
use switchyard_control_plane::{ControlPlaneArgs, ControlPlaneConfig, LogArgs};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard-control-plane",
    version,
    about = "Switchyard control plane"
)]
struct Cli {
    #[command(flatten)]
    control_plane: ControlPlaneArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    switchyard_telemetry::init_logging(cli.log.log_format);
    let config = ControlPlaneConfig::try_from(cli.control_plane)?;
    let shutdown = CancellationToken::new();
    let running = switchyard_control_plane::start(config, shutdown.clone()).await?;
    switchyard_telemetry::shutdown_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    running.wait().await;
    Ok(())
}

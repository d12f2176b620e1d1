//! `switchyard-control-plane`: the control-plane server.

use clap::Parser;
use switchyard_control_plane::{
    ControlPlaneArgs, ControlPlaneConfig, LogArgs, RunningControlPlane,
};
use switchyard_telemetry::OtlpArgs;
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
    #[command(flatten)]
    otlp: OtlpArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let otlp = cli.otlp.resolve("switchyard-control-plane");
    let telemetry = switchyard_telemetry::init(cli.log.log_format, otlp.as_ref())?;
    let bootstrap = cli.control_plane.bootstrap.clone();
    let config = ControlPlaneConfig::try_from(cli.control_plane)?;
    let shutdown = CancellationToken::new();
    let running = switchyard_control_plane::start(config, shutdown.clone()).await?;
    switchyard_telemetry::until_shutdown(async || reapply(&running, bootstrap.as_deref()).await)
        .await;
    tracing::info!("shutting down");
    shutdown.cancel();
    running.wait().await;
    // Last: the spans of the requests drained above are flushed too.
    telemetry.shutdown().await;
    Ok(())
}

/// SIGHUP: reads the bootstrap file again and applies it. A file that does
/// not read or validate changes nothing; the error is logged.
async fn reapply(running: &RunningControlPlane, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        tracing::info!("SIGHUP: no --bootstrap file to read again");
        return;
    };
    let config = match switchyard_control_plane::config::read_bootstrap(path) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: bootstrap file not applied");
            return;
        }
    };
    match running.reapply_bootstrap(&config).await {
        Ok(version) => {
            tracing::info!(path = %path.display(), snapshot_version = version, "SIGHUP: bootstrap file applied again")
        }
        Err(e) => tracing::error!(error = %e, "SIGHUP: applying the bootstrap file failed"),
    }
}

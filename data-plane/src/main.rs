//! `switchyard-data-plane`: the data-plane server.

use clap::Parser;
use switchyard_data_plane::{DataPlaneArgs, DataPlaneConfig};
use switchyard_telemetry::{LogFormat, OtlpArgs};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard-data-plane",
    version,
    about = "Switchyard data plane"
)]
struct Cli {
    #[command(flatten)]
    data_plane: DataPlaneArgs,
    /// json (for collectors) or text (for terminals).
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", default_value = "json")]
    log_format: LogFormat,
    #[command(flatten)]
    otlp: OtlpArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let otlp = cli.otlp.resolve("switchyard-data-plane");
    let telemetry = switchyard_telemetry::init(cli.log_format, otlp.as_ref())?;
    let config = DataPlaneConfig::try_from(cli.data_plane)?;
    let shutdown = CancellationToken::new();
    let running = switchyard_data_plane::start(config, shutdown.clone()).await?;
    switchyard_telemetry::until_shutdown(async || running.reload_credentials()).await;
    tracing::info!("shutting down: draining requests and flushing traces");
    shutdown.cancel();
    running.wait().await;
    // Last: the spans of the requests drained above are flushed too.
    telemetry.shutdown().await;
    Ok(())
}

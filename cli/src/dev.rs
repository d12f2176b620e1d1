//! `switchyard dev`: both planes in one process, talking gRPC over loopback
//! exactly as separate processes would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use switchyard_control_plane::AggregationConfig;
use switchyard_control_plane::ControlPlaneConfig;
use switchyard_control_plane::admin::AdminToken;
use switchyard_data_plane::DataPlaneConfig;
use switchyard_domain::{BootstrapConfig, SecretRef, TracePayload};
use switchyard_telemetry::{LogFormat, OtlpArgs};
use tokio_util::sync::CancellationToken;

use crate::credentials;

/// The example registry, built in so `switchyard dev` works from any directory.
const EXAMPLE_CONFIG: &str = include_str!("../../examples/switchyard.yaml");

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the SQLite database and the data plane's state live.
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = ".switchyard")]
    data_dir: PathBuf,
    /// Registry to load instead of the built-in example.
    #[arg(long, env = "SWITCHYARD_BOOTSTRAP")]
    config: Option<PathBuf>,
    #[arg(long, env = "SWITCHYARD_CP_LISTEN", default_value = "127.0.0.1:50051")]
    cp_listen: SocketAddr,
    /// Serve the control plane's metrics at this address's /metrics (off
    /// unless given; the data plane's are on its HTTP port).
    #[arg(long, env = "SWITCHYARD_CP_METRICS_LISTEN")]
    cp_metrics_listen: Option<SocketAddr>,
    #[arg(
        long,
        env = "SWITCHYARD_DP_HTTP_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    http_listen: SocketAddr,
    #[arg(
        long,
        env = "SWITCHYARD_DP_GRPC_LISTEN",
        default_value = "127.0.0.1:50061"
    )]
    grpc_listen: SocketAddr,
    /// text (for terminals) or json.
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    otlp: OtlpArgs,
}

/// Real providers join only when their key is in this environment.
fn keep_if_key_is_set(config: &mut BootstrapConfig) {
    config.retain_providers(|provider| match provider.secret_ref() {
        Some(SecretRef::Env(name)) if std::env::var_os(&name).is_none_or(|v| v.is_empty()) => {
            tracing::info!(provider = %provider.name, "skipping provider: {name} is not set");
            false
        }
        _ => true,
    });
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let otlp = args.otlp.resolve("switchyard");
    let telemetry = switchyard_telemetry::init(args.log_format, otlp.as_ref())?;
    let text = match &args.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => EXAMPLE_CONFIG.to_owned(),
    };
    let mut bootstrap = BootstrapConfig::from_yaml(&text).context("invalid registry config")?;
    keep_if_key_is_set(&mut bootstrap);

    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let credentials = credentials::Dev::load_or_create(&args.data_dir)?;
    bootstrap.api_keys.push(credentials.bootstrap_key());
    // Two tokens: the data plane stops first and flushes its traces into a
    // control plane that is still there to store them.
    let cp_shutdown = CancellationToken::new();
    let dp_shutdown = CancellationToken::new();
    let control_plane = switchyard_control_plane::start(
        ControlPlaneConfig {
            listen: args.cp_listen,
            metrics_listen: args.cp_metrics_listen,
            database_url: switchyard_control_plane::config::sqlite_url(&args.data_dir),
            bootstrap: Some(bootstrap),
            node_id: "dev-cp".into(),
            default_strategy: switchyard_domain::DEFAULT_STRATEGY.into(),
            registry_poll: Duration::from_secs(1),
            relay_poll: Duration::from_millis(100),
            trace_retention: Some(Duration::from_secs(30 * 86_400)),
            // One machine, its own traffic: keep requests whole so replays work.
            trace_payload: TracePayload::Full,
            // One machine's traffic: the breakdown rows cost nothing noticeable.
            trace_candidate_rows: true,
            replay_via: Some(format!("http://{}", args.http_listen)),
            election: None,
            aggregation: AggregationConfig::default(),
            mass_removal_hold: Duration::from_secs(30),
            admin_token: AdminToken::new(&credentials.admin_token),
            // Loopback only: plaintext.
            tls: None,
            replay_ca: None,
        },
        cp_shutdown.clone(),
    )
    .await
    .context("starting the control plane")?;
    let data_plane = switchyard_data_plane::start(
        DataPlaneConfig {
            http_listen: args.http_listen,
            grpc_listen: args.grpc_listen,
            control_planes: vec![format!("http://{}", control_plane.local_addr)],
            node_id: "dev-dp".into(),
            region: "local".into(),
            max_attempts: 3,
            fallback_chain: 3,
            retries_per_target: 1,
            first_token_timeout: Duration::from_secs(15),
            max_body_bytes: 4 << 20,
            state_dir: args.data_dir.join("data-plane"),
            trace_spool: 1_000_000,
            trace_spool_memory: 10_000,
            health_window: Duration::from_secs(2),
            // One node: limits are enforced in process.
            limiter: switchyard_data_plane::limits::LimiterConfig::new(None),
            // Ctrl-C: nothing balances load in front of it; streams get a few seconds.
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(10),
            tls: None,
            control_plane_tls: switchyard_tls::ClientTls::default(),
        },
        dp_shutdown.clone(),
    )
    .await
    .context("starting the data plane")?;

    // The data plane serves once its first snapshot has arrived.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while data_plane.snapshot_version().is_none() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the data plane received no snapshot within 10s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    print_banner(
        control_plane.local_addr,
        data_plane.http_addr,
        data_plane.grpc_addr,
        &credentials,
    );

    switchyard_telemetry::shutdown_signal().await;
    tracing::info!("shutting down");
    dp_shutdown.cancel();
    data_plane.wait().await;
    cp_shutdown.cancel();
    control_plane.wait().await;
    telemetry.shutdown().await;
    Ok(())
}

fn print_banner(
    cp: SocketAddr,
    http: SocketAddr,
    grpc: SocketAddr,
    credentials: &credentials::Dev,
) {
    let (key, admin) = (&credentials.api_key, &credentials.admin_token);
    println!(
        r#"
Switchyard is running.
  OpenAI-compatible HTTP   http://{http}/v1
  Data-plane gRPC          {grpc}   (switchyard.v1.InferenceService)
  Control-plane gRPC       {cp}   (registry, snapshots, traces)
  API key (workspace "default")   {key}
  Admin token                     {admin}
  ({origin})

Try it, in another terminal:
  export SWITCHYARD_API_KEY={key} SWITCHYARD_ADMIN_TOKEN={admin}
  curl -s http://{http}/v1/chat/completions -H "authorization: Bearer $SWITCHYARD_API_KEY" \
    -H 'content-type: application/json' \
    -d '{{"model":"auto","messages":[{{"role":"user","content":"Hello!"}}]}}'

  grpcurl -plaintext {cp} list
  grpcurl -plaintext -H "authorization: Bearer $SWITCHYARD_ADMIN_TOKEN" -d '{{"page_size":5}}' \
    {cp} switchyard.v1.TraceService/ListTraces

Press Ctrl-C to stop.
"#,
        origin = credentials.origin,
    );
}

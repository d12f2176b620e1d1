//! Data-plane configuration: flags with `SWITCHYARD_*` environment fallbacks,
//! validated into [`DataPlaneConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_tls::{CaFile, ClientTls, KeyPairFiles, ServerTls, TlsError};

use crate::limits::{LimiterArgs, LimiterConfig, LimiterError};

#[derive(Debug, Clone, clap::Args)]
pub struct DataPlaneArgs {
    /// OpenAI-compatible HTTP listen address.
    #[arg(
        long,
        env = "SWITCHYARD_DP_HTTP_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub http_listen: SocketAddr,
    /// InferenceService gRPC listen address.
    #[arg(
        long,
        env = "SWITCHYARD_DP_GRPC_LISTEN",
        default_value = "0.0.0.0:50061"
    )]
    pub grpc_listen: SocketAddr,
    /// Control-plane gRPC URLs, comma-separated: any replica serves snapshots
    /// and takes traces, and each stream moves to the next one after a failure.
    #[arg(
        long,
        env = "SWITCHYARD_CONTROL_PLANE",
        default_value = "http://127.0.0.1:50051"
    )]
    pub control_plane: String,
    /// This node's identity in traces and cluster status.
    #[arg(long, env = "SWITCHYARD_NODE_ID")]
    pub node_id: Option<String>,
    /// Region this node runs in.
    #[arg(long, env = "SWITCHYARD_REGION", default_value = "")]
    pub region: String,
    /// Most provider attempts per request, across the fallback chain.
    #[arg(long, env = "SWITCHYARD_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: usize,
    /// Retries of one target within a request after a transient failure (429, 5xx,
    /// timeout), with back-off and jitter, before moving down the chain.
    #[arg(long, env = "SWITCHYARD_RETRIES_PER_TARGET", default_value_t = 1)]
    pub retries_per_target: usize,
    /// Time a streamed attempt may take to produce its first token before the
    /// next target is tried (still within the request's timeout profile).
    #[arg(long, env = "SWITCHYARD_FIRST_TOKEN_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub first_token_timeout: Duration,
    /// Targets in each request's fallback chain (the primary and its backups).
    #[arg(long, env = "SWITCHYARD_FALLBACK_CHAIN", default_value_t = 3)]
    pub fallback_chain: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "SWITCHYARD_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Where this node keeps its last good snapshot and its trace spool; one
    /// data plane per directory.
    #[arg(
        long,
        env = "SWITCHYARD_STATE_DIR",
        default_value = ".switchyard/data-plane"
    )]
    pub state_dir: PathBuf,
    /// Most traces kept while waiting for the control plane's ack, in memory
    /// and on disk together.
    #[arg(long, env = "SWITCHYARD_TRACE_SPOOL", default_value_t = 1_000_000)]
    pub trace_spool: usize,
    /// Unacked traces kept in memory; later ones spill to the state directory.
    #[arg(long, env = "SWITCHYARD_TRACE_SPOOL_MEMORY", default_value_t = 10_000)]
    pub trace_spool_memory: usize,
    /// How often per-target health windows close and go to the control plane.
    #[arg(long, env = "SWITCHYARD_HEALTH_WINDOW", default_value = "2s", value_parser = humantime::parse_duration)]
    pub health_window: Duration,
    #[command(flatten)]
    pub limits: LimiterArgs,
    /// After SIGTERM: how long this node keeps serving with readiness false
    /// before it stops accepting connections, so load balancers notice first.
    #[arg(long, env = "SWITCHYARD_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,
    /// After SIGTERM and the drain delay: how long requests under way (long
    /// streams too) may take to finish; those still running are then cut,
    /// traced as cancelled, and their clients told to retry.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// PEM certificate chain: serve HTTPS and gRPC over TLS on both
    /// listeners (needs --tls-key).
    #[arg(long, env = "SWITCHYARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SWITCHYARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) that sign the control plane's certificate, for
    /// https:// control-plane URLs (the system's roots without it).
    #[arg(long, env = "SWITCHYARD_CONTROL_PLANE_CA")]
    pub control_plane_ca: Option<PathBuf>,
    /// PEM client certificate this node presents to the control plane (mTLS;
    /// needs --control-plane-key).
    #[arg(
        long,
        env = "SWITCHYARD_CONTROL_PLANE_CERT",
        requires = "control_plane_key"
    )]
    pub control_plane_cert: Option<PathBuf>,
    /// PEM private key of --control-plane-cert.
    #[arg(
        long,
        env = "SWITCHYARD_CONTROL_PLANE_KEY",
        requires = "control_plane_cert"
    )]
    pub control_plane_key: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    pub http_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    /// Never empty.
    pub control_planes: Vec<String>,
    pub node_id: String,
    pub region: String,
    pub max_attempts: usize,
    pub retries_per_target: usize,
    pub first_token_timeout: Duration,
    pub fallback_chain: usize,
    pub max_body_bytes: usize,
    pub state_dir: PathBuf,
    pub trace_spool: usize,
    pub trace_spool_memory: usize,
    pub health_window: Duration,
    pub limiter: LimiterConfig,
    pub drain_delay: Duration,
    pub shutdown_grace: Duration,
    /// None: plaintext HTTP and gRPC.
    pub tls: Option<ServerTls>,
    /// Trust and client certificate for https:// control-plane URLs.
    pub control_plane_tls: ClientTls,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--control-plane {0:?}: must be an http:// or https:// URL")]
    ControlPlane(String),
    #[error("--max-attempts: must be between 1 and 10")]
    MaxAttempts,
    #[error("--fallback-chain: must be between 1 and 10")]
    FallbackChain,
    #[error("--retries-per-target: must be at most 5")]
    RetriesPerTarget,
    #[error("--first-token-timeout: must be between 100ms and 10m")]
    FirstTokenTimeout,
    #[error("--max-body-bytes: must be between 1 KiB and 64 MiB")]
    MaxBodyBytes,
    #[error("--trace-spool: must be at least 1000")]
    TraceSpool,
    #[error("--trace-spool-memory: must be at least 1000 and at most --trace-spool")]
    TraceSpoolMemory,
    #[error("--state-dir: must not be empty")]
    StateDir,
    #[error("--health-window: must be between 100ms and 1m")]
    HealthWindow,
    #[error(transparent)]
    Limiter(#[from] LimiterError),
    #[error("--drain-delay and --shutdown-grace: each at most 10m")]
    Shutdown,
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "--control-plane {0:?}: --control-plane-ca and --control-plane-cert apply to https:// URLs only; use https:// for every control plane"
    )]
    PlaintextControlPlane(String),
}

impl TryFrom<DataPlaneArgs> for DataPlaneConfig {
    type Error = ConfigError;

    fn try_from(args: DataPlaneArgs) -> Result<Self, Self::Error> {
        let control_planes = control_planes(&args.control_plane)?;
        if !(1..=10).contains(&args.max_attempts) {
            return Err(ConfigError::MaxAttempts);
        }
        if !(1..=10).contains(&args.fallback_chain) {
            return Err(ConfigError::FallbackChain);
        }
        if args.retries_per_target > 5 {
            return Err(ConfigError::RetriesPerTarget);
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(600))
            .contains(&args.first_token_timeout)
        {
            return Err(ConfigError::FirstTokenTimeout);
        }
        if !(1024..=64 << 20).contains(&args.max_body_bytes) {
            return Err(ConfigError::MaxBodyBytes);
        }
        if args.trace_spool < 1000 {
            return Err(ConfigError::TraceSpool);
        }
        if !(1000..=args.trace_spool).contains(&args.trace_spool_memory) {
            return Err(ConfigError::TraceSpoolMemory);
        }
        if args.state_dir.as_os_str().is_empty() {
            return Err(ConfigError::StateDir);
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&args.health_window) {
            return Err(ConfigError::HealthWindow);
        }
        if args.drain_delay > Duration::from_secs(600)
            || args.shutdown_grace > Duration::from_secs(600)
        {
            return Err(ConfigError::Shutdown);
        }
        let tls = KeyPairFiles::load_optional(
            args.tls_cert.as_deref(),
            args.tls_key.as_deref(),
            ("--tls-cert", "--tls-key"),
        )?
        .map(|identity| ServerTls {
            identity,
            client_ca: None,
        });
        let control_plane_tls = ClientTls {
            ca: args
                .control_plane_ca
                .as_deref()
                .map(CaFile::load)
                .transpose()?,
            identity: KeyPairFiles::load_optional(
                args.control_plane_cert.as_deref(),
                args.control_plane_key.as_deref(),
                ("--control-plane-cert", "--control-plane-key"),
            )?,
        };
        // A certificate meant for the control plane must never be skipped
        // silently by a plaintext connection.
        if !control_plane_tls.is_empty()
            && let Some(plain) = control_planes.iter().find(|url| url.starts_with("http://"))
        {
            return Err(ConfigError::PlaintextControlPlane(plain.clone()));
        }
        Ok(Self {
            http_listen: args.http_listen,
            grpc_listen: args.grpc_listen,
            control_planes,
            node_id: args.node_id.unwrap_or_else(|| {
                let short = uuid::Uuid::new_v4().simple().to_string();
                format!("dp-{}", &short[..8])
            }),
            region: args.region,
            max_attempts: args.max_attempts,
            fallback_chain: args.fallback_chain,
            retries_per_target: args.retries_per_target,
            first_token_timeout: args.first_token_timeout,
            max_body_bytes: args.max_body_bytes,
            state_dir: args.state_dir,
            trace_spool: args.trace_spool,
            trace_spool_memory: args.trace_spool_memory,
            health_window: args.health_window,
            limiter: LimiterConfig::try_from(args.limits)?,
            drain_delay: args.drain_delay,
            shutdown_grace: args.shutdown_grace,
            tls,
            control_plane_tls,
        })
    }
}

/// Splits the comma-separated list and checks every address (an empty one too,
/// so a stray comma is an error rather than a silently shorter list).
fn control_planes(list: &str) -> Result<Vec<String>, ConfigError> {
    let urls: Vec<String> = list.split(',').map(|url| url.trim().to_owned()).collect();
    for url in &urls {
        let valid = url.parse::<http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
        });
        if !valid {
            return Err(ConfigError::ControlPlane(url.clone()));
        }
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: DataPlaneArgs,
    }

    fn parse(flags: &[&str]) -> Result<DataPlaneConfig, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("dp").chain(flags.iter().copied())).unwrap();
        DataPlaneConfig::try_from(cli.args)
    }

    #[test]
    fn several_control_planes_are_accepted_in_order() {
        let config = parse(&[
            "--control-plane",
            "http://cp-0:50051, https://cp-1.example:443,http://10.0.0.7:50051",
        ])
        .unwrap();
        assert_eq!(
            config.control_planes,
            [
                "http://cp-0:50051",
                "https://cp-1.example:443",
                "http://10.0.0.7:50051"
            ]
        );
    }

    #[test]
    fn a_bad_address_in_the_list_is_refused_by_name() {
        for (list, bad) in [
            ("http://cp-0:50051,cp-1:50051", "cp-1:50051"),
            ("http://cp-0:50051,,http://cp-2:50051", ""),
            ("ftp://cp-0:21", "ftp://cp-0:21"),
            ("http://", "http://"),
        ] {
            match parse(&["--control-plane", list]) {
                Err(ConfigError::ControlPlane(url)) => assert_eq!(url, bad, "{list}"),
                other => panic!("{list}: expected a bad address, got {other:?}"),
            }
        }
        let message = parse(&["--control-plane", "http://a:1,b:2"])
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"b:2\""), "{message}");
    }

    #[test]
    fn tls_files_are_checked_at_start_and_never_skipped_over_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let missing = missing.to_str().unwrap();
        let message = parse(&["--tls-cert", missing, "--tls-key", missing])
            .unwrap_err()
            .to_string();
        assert!(message.contains("missing.pem"), "{message}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let message = parse(&["--control-plane-ca", garbage.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("garbage.pem") && message.contains("no PEM certificate"),
            "{message}"
        );
        let pki = switchyard_testkit::pki::Pki::generate();
        let files = pki.write_to(dir.path());
        assert!(matches!(
            parse(&["--control-plane-ca", files.ca.to_str().unwrap()]),
            Err(ConfigError::PlaintextControlPlane(url)) if url == "http://127.0.0.1:50051"
        ));
        let config = parse(&[
            "--control-plane",
            "https://127.0.0.1:50051",
            "--control-plane-ca",
            files.ca.to_str().unwrap(),
            "--control-plane-cert",
            files.client_cert.to_str().unwrap(),
            "--control-plane-key",
            files.client_key.to_str().unwrap(),
            "--tls-cert",
            files.server_cert.to_str().unwrap(),
            "--tls-key",
            files.server_key.to_str().unwrap(),
        ])
        .unwrap();
        assert!(config.tls.is_some() && config.control_plane_tls.identity.is_some());
        // A key that is not the certificate's.
        let message = parse(&[
            "--tls-cert",
            files.server_cert.to_str().unwrap(),
            "--tls-key",
            files.client_key.to_str().unwrap(),
        ])
        .unwrap_err()
        .to_string();
        assert!(message.contains("does not fit"), "{message}");
    }

    #[test]
    fn the_memory_spool_fits_inside_the_total() {
        let config = parse(&[]).unwrap();
        assert_eq!(
            (config.trace_spool_memory, config.trace_spool),
            (10_000, 1_000_000)
        );
        assert_eq!(config.state_dir, PathBuf::from(".switchyard/data-plane"));
        assert!(matches!(
            parse(&["--trace-spool", "5000", "--trace-spool-memory", "6000"]),
            Err(ConfigError::TraceSpoolMemory)
        ));
    }
}

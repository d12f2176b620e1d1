//! Control-plane configuration: flags with `SWITCHYARD_*` environment fallbacks,
//! validated into [`ControlPlaneConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_domain::{
    BootstrapConfig, DEFAULT_STRATEGY, MIN_SECRET_LEN, TracePayload, validate_secret,
};
use switchyard_telemetry::LogFormat;
use switchyard_tls::{CaFile, KeyPairFiles, ServerTls, TlsError};

use crate::admin::AdminToken;
use crate::aggregation::AggregationConfig;
use crate::election::ElectionConfig;
use crate::health::HealthConfig;
use crate::quality::QualityConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct ControlPlaneArgs {
    /// gRPC listen address.
    #[arg(
        long = "listen",
        env = "SWITCHYARD_CP_LISTEN",
        default_value = "0.0.0.0:50051"
    )]
    pub listen: SocketAddr,
    /// Plain HTTP listen address of `GET /metrics` (Prometheus text format,
    /// no admin token), apart from the gRPC port.
    #[arg(
        long,
        env = "SWITCHYARD_CP_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,
    /// postgres://… or sqlite://…; defaults to a SQLite file in the data directory.
    #[arg(long, env = "SWITCHYARD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory for the embedded SQLite database.
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = ".switchyard")]
    pub data_dir: PathBuf,
    /// YAML file of providers, models and strategies to create or update at start.
    #[arg(long, env = "SWITCHYARD_BOOTSTRAP")]
    pub bootstrap: Option<PathBuf>,
    /// This replica's identity in cluster status and logs.
    #[arg(long, env = "SWITCHYARD_NODE_ID")]
    pub node_id: Option<String>,
    /// Strategy for requests that name none.
    #[arg(long, env = "SWITCHYARD_DEFAULT_STRATEGY", default_value = DEFAULT_STRATEGY)]
    pub default_strategy: String,
    /// How often strategy effectiveness is recomputed from stored traces.
    #[arg(long, env = "SWITCHYARD_QUALITY_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub quality_interval: Duration,
    /// How far back strategy effectiveness looks.
    #[arg(long, env = "SWITCHYARD_QUALITY_WINDOW", default_value = "5m", value_parser = humantime::parse_duration)]
    pub quality_window: Duration,
    /// How long data planes may trust telemetry before they fall back to priors.
    #[arg(long, env = "SWITCHYARD_TELEMETRY_STALE_AFTER", default_value = "60s", value_parser = humantime::parse_duration)]
    pub telemetry_stale_after: Duration,
    /// How often the leader looks for registry writes made through other replicas.
    #[arg(long, env = "SWITCHYARD_REGISTRY_POLL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub registry_poll: Duration,
    /// etcd endpoints (comma-separated) for leader election among replicas;
    /// without them this replica is the only one and leads.
    #[arg(long, env = "SWITCHYARD_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// etcd key prefix of the election and the replica registry; replicas
    /// sharing it elect one leader.
    #[arg(
        long,
        env = "SWITCHYARD_ELECTION_PREFIX",
        default_value = "switchyard/control-plane"
    )]
    pub election_prefix: String,
    /// Leader lease time-to-live: a leader that dies is replaced after about
    /// this long; one cut off from etcd steps down after two thirds of it.
    #[arg(long, env = "SWITCHYARD_LEASE_TTL", default_value = "3s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
    /// Traces received longer ago than this are deleted (by the leader); 0 keeps them all.
    #[arg(long, env = "SWITCHYARD_TRACE_RETENTION", default_value = "30days", value_parser = humantime::parse_duration)]
    pub trace_retention: Duration,
    /// What traces keep of requests and answers: none, hash (SHA-256 of each)
    /// or full (both whole, so ReplayTrace can run them again).
    #[arg(long, env = "SWITCHYARD_TRACE_PAYLOAD", default_value = "hash", value_parser = trace_payload)]
    pub trace_payload: TracePayload,
    /// Also store every trace's score breakdown as rows of `trace_candidates`
    /// (one per scored candidate) for SQL of your own; costs ingestion speed.
    #[arg(long, env = "SWITCHYARD_TRACE_CANDIDATE_ROWS")]
    pub trace_candidate_rows: bool,
    /// A data plane's OpenAI-compatible HTTP URL that ReplayTrace sends
    /// stored requests through (e.g. the data planes' Service); without it,
    /// replays are refused.
    #[arg(long, env = "SWITCHYARD_REPLAY_VIA")]
    pub replay_via: Option<String>,
    /// How often a follower looks for the leader's newest snapshot to relay.
    #[arg(long, env = "SWITCHYARD_RELAY_POLL", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub relay_poll: Duration,
    /// How often every target's health is judged from the data planes' windows.
    #[arg(long, env = "SWITCHYARD_HEALTH_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,
    /// First ejection of a failing target; each ejection in a row doubles it.
    #[arg(long, env = "SWITCHYARD_EJECTION_BASE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub ejection_base: Duration,
    /// Longest ejection.
    #[arg(long, env = "SWITCHYARD_EJECTION_MAX", default_value = "5m", value_parser = humantime::parse_duration)]
    pub ejection_max: Duration,
    /// How often the fleet as a whole probes each idle or ejected target (each
    /// data plane probes that often times the number of data planes); 0 turns probes off.
    #[arg(long, env = "SWITCHYARD_PROBE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub probe_interval: Duration,
    /// A target with no traffic for this long is probed.
    #[arg(long, env = "SWITCHYARD_PROBE_IDLE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub probe_idle: Duration,
    /// A snapshot that removes most targets at once is published only after
    /// the registry has said so for this long.
    #[arg(long, env = "SWITCHYARD_MASS_REMOVAL_HOLD", default_value = "30s", value_parser = humantime::parse_duration)]
    pub mass_removal_hold: Duration,
    /// The admin credential (at least 32 characters) that every RPC but the
    /// data planes' own needs, as `authorization: Bearer <token>`. Prefer the
    /// environment or --admin-token-file to a flag other users can see.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A file holding the admin token (trailing newline ignored), e.g. a mounted Secret.
    #[arg(
        long,
        env = "SWITCHYARD_ADMIN_TOKEN_FILE",
        conflicts_with = "admin_token"
    )]
    pub admin_token_file: Option<PathBuf>,
    /// PEM certificate chain: serve gRPC over TLS (needs --tls-key).
    #[arg(long, env = "SWITCHYARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SWITCHYARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) for mTLS: the data planes' RPCs (Sync, Report)
    /// then need a client certificate signed by it. Admin RPCs still take the
    /// admin token with or without one. Needs --tls-cert.
    #[arg(long, env = "SWITCHYARD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for an https:// --replay-via (the
    /// system's roots without it).
    #[arg(long, env = "SWITCHYARD_REPLAY_CA", requires = "replay_via")]
    pub replay_ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    pub listen: SocketAddr,
    /// `GET /metrics` over plain HTTP; None serves no metrics.
    pub metrics_listen: Option<SocketAddr>,
    pub database_url: String,
    pub bootstrap: Option<BootstrapConfig>,
    pub node_id: String,
    pub default_strategy: String,
    pub registry_poll: Duration,
    pub relay_poll: Duration,
    /// None: traces are kept forever.
    pub trace_retention: Option<Duration>,
    pub trace_payload: TracePayload,
    pub trace_candidate_rows: bool,
    /// Data-plane HTTP URL for replays.
    pub replay_via: Option<String>,
    /// None without etcd: the single replica leads.
    pub election: Option<ElectionConfig>,
    pub aggregation: AggregationConfig,
    pub mass_removal_hold: Duration,
    pub admin_token: AdminToken,
    /// None: plaintext gRPC.
    pub tls: Option<ServerTls>,
    /// Extra trust for an https:// replay_via.
    pub replay_ca: Option<CaFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--bootstrap {path}: {source}")]
    BootstrapRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--bootstrap {path}: {source}")]
    BootstrapInvalid {
        path: PathBuf,
        source: switchyard_domain::ValidationError,
    },
    #[error("--data-dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no admin token: set SWITCHYARD_ADMIN_TOKEN or --admin-token-file (at least {min} characters, e.g. `openssl rand -hex 32`)",
        min = MIN_SECRET_LEN
    )]
    AdminTokenMissing,
    #[error("--admin-token-file {path}: {source}")]
    AdminTokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("admin token: {0}")]
    AdminTokenInvalid(switchyard_domain::ValidationError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("--metrics-listen: {0} is the gRPC port (--listen); metrics need their own")]
    MetricsListen(SocketAddr),
    #[error("--registry-poll: must be between 100ms and 1h")]
    RegistryPoll,
    #[error("--relay-poll: must be between 10ms and 10s")]
    RelayPoll,
    #[error("--trace-retention: must be 0 (keep all) or at least 1h")]
    TraceRetention,
    #[error("--replay-via {0:?}: must be an http:// or https:// URL")]
    ReplayVia(String),
    #[error(
        "--lease-ttl: must be whole seconds between 2s and 60s (etcd counts leases in seconds)"
    )]
    LeaseTtl,
    #[error("--etcd-endpoints: {0:?} is not an http:// or https:// URL")]
    EtcdEndpoint(String),
    #[error("--election-prefix: must be non-empty, without a trailing '/'")]
    ElectionPrefix,
    #[error(
        "--quality-interval, --quality-window and --telemetry-stale-after: need 100ms <= interval < stale-after and interval <= window <= 24h"
    )]
    Quality,
    #[error(
        "--health-interval, --ejection-base, --ejection-max, --probe-idle: need 100ms <= health-interval <= 1m, 1s <= ejection-base <= ejection-max <= 1h, probe-idle >= 1s"
    )]
    Health,
}

impl TryFrom<ControlPlaneArgs> for ControlPlaneConfig {
    type Error = ConfigError;

    fn try_from(args: ControlPlaneArgs) -> Result<Self, Self::Error> {
        let bootstrap = args.bootstrap.as_deref().map(read_bootstrap).transpose()?;
        let election = election_config(&args)?;
        let admin_token = admin_token(&args)?;
        if !args.trace_retention.is_zero() && args.trace_retention < Duration::from_secs(3600) {
            return Err(ConfigError::TraceRetention);
        }
        if let Some(url) = &args.replay_via
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::ReplayVia(url.clone()));
        }
        let tls = match KeyPairFiles::load_optional(
            args.tls_cert.as_deref(),
            args.tls_key.as_deref(),
            ("--tls-cert", "--tls-key"),
        )? {
            Some(identity) => Some(ServerTls {
                identity,
                client_ca: args
                    .tls_client_ca
                    .as_deref()
                    .map(CaFile::load)
                    .transpose()?,
            }),
            None => None,
        };
        let replay_ca = args.replay_ca.as_deref().map(CaFile::load).transpose()?;
        let database_url = match args.database_url {
            Some(url) => url,
            None => {
                std::fs::create_dir_all(&args.data_dir).map_err(|source| ConfigError::DataDir {
                    path: args.data_dir.clone(),
                    source,
                })?;
                sqlite_url(&args.data_dir)
            }
        };
        if args.metrics_listen == args.listen && args.listen.port() != 0 {
            return Err(ConfigError::MetricsListen(args.metrics_listen));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&args.registry_poll) {
            return Err(ConfigError::RegistryPoll);
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&args.relay_poll) {
            return Err(ConfigError::RelayPoll);
        }

        let quality = QualityConfig {
            interval: args.quality_interval,
            window: args.quality_window,
            stale_after: args.telemetry_stale_after,
        };
        let sane = quality.interval >= Duration::from_millis(100)
            && quality.interval < quality.stale_after
            && quality.interval <= quality.window
            && quality.window <= Duration::from_secs(86_400);
        if !sane {
            return Err(ConfigError::Quality);
        }
        let health = HealthConfig {
            base_ejection: args.ejection_base,
            max_ejection: args.ejection_max,
            ..HealthConfig::default()
        };
        let health_sane = (Duration::from_millis(100)..=Duration::from_secs(60))
            .contains(&args.health_interval)
            && Duration::from_secs(1) <= health.base_ejection
            && health.base_ejection <= health.max_ejection
            && health.max_ejection <= Duration::from_secs(3600)
            && args.probe_idle >= Duration::from_secs(1);
        if !health_sane {
            return Err(ConfigError::Health);
        }
        Ok(Self {
            aggregation: AggregationConfig {
                interval: args.health_interval,
                probe_interval: args.probe_interval,
                probe_idle: args.probe_idle,
                health,
                quality,
            },
            mass_removal_hold: args.mass_removal_hold,
            listen: args.listen,
            metrics_listen: Some(args.metrics_listen),
            database_url,
            bootstrap,
            node_id: args.node_id.unwrap_or_else(default_node_id),
            default_strategy: args.default_strategy,
            registry_poll: args.registry_poll,
            relay_poll: args.relay_poll,
            trace_retention: (!args.trace_retention.is_zero()).then_some(args.trace_retention),
            trace_payload: args.trace_payload,
            trace_candidate_rows: args.trace_candidate_rows,
            replay_via: args.replay_via,
            election,
            admin_token,
            tls,
            replay_ca,
        })
    }
}

/// Reads and validates a bootstrap file.
pub fn read_bootstrap(path: &std::path::Path) -> Result<BootstrapConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::BootstrapRead {
        path: path.to_path_buf(),
        source,
    })?;
    BootstrapConfig::from_yaml(&text).map_err(|source| ConfigError::BootstrapInvalid {
        path: path.to_path_buf(),
        source,
    })
}

fn admin_token(args: &ControlPlaneArgs) -> Result<AdminToken, ConfigError> {
    let token = match (&args.admin_token, &args.admin_token_file) {
        (Some(token), _) => token.trim().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|source| ConfigError::AdminTokenFile {
                path: path.clone(),
                source,
            })?
            .trim()
            .to_owned(),
        (None, None) => return Err(ConfigError::AdminTokenMissing),
    };
    validate_secret(&token).map_err(ConfigError::AdminTokenInvalid)?;
    Ok(AdminToken::new(&token))
}

fn trace_payload(text: &str) -> Result<TracePayload, String> {
    TracePayload::parse(text).ok_or_else(|| "expected none, hash or full".to_owned())
}

fn election_config(args: &ControlPlaneArgs) -> Result<Option<ElectionConfig>, ConfigError> {
    let endpoints: Vec<String> = args
        .etcd_endpoints
        .iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        return Ok(None);
    }
    if let Some(bad) = endpoints
        .iter()
        .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
    {
        return Err(ConfigError::EtcdEndpoint(bad.clone()));
    }
    let ttl = args.lease_ttl;
    if !(Duration::from_secs(2)..=Duration::from_secs(60)).contains(&ttl) || ttl.subsec_nanos() != 0
    {
        return Err(ConfigError::LeaseTtl);
    }
    if args.election_prefix.is_empty() || args.election_prefix.ends_with('/') {
        return Err(ConfigError::ElectionPrefix);
    }
    Ok(Some(ElectionConfig {
        endpoints,
        prefix: args.election_prefix.clone(),
        lease_ttl: ttl,
    }))
}

/// The embedded database: a SQLite file created on first use.
pub fn sqlite_url(data_dir: &std::path::Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("switchyard.db").display()
    )
}

fn default_node_id() -> String {
    let short = uuid::Uuid::new_v4().simple().to_string();
    format!("cp-{}", &short[..8])
}

/// Log format flag shared by the control-plane binary.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// json (for collectors) or text (for terminals).
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
}

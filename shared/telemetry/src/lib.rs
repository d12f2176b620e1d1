//! Logging, tracing and metrics setup shared by both planes: structured logs
//! (JSON for machines, compact text for people), OTLP span export and W3C
//! trace-context propagation, and Prometheus text encoding.
//!
//! Owns process-wide telemetry wiring only; it must never depend on either plane
//! or on the domain model.

use std::fmt;
use std::str::FromStr;

use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub mod context;
mod otlp;

pub use otlp::{OtlpArgs, OtlpConfig, TelemetryError};

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines, for a terminal.
    Text,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            other => Err(format!(
                "unknown log format {other:?}: expected \"json\" or \"text\""
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
            Self::Text => "text",
        })
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides the default filter.
/// Calling it twice keeps the first subscriber (tests start several servers).
pub fn init_logging(format: LogFormat) {
    let _already_installed = fmt_only(format).try_init();
}

fn log_filter() -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,h2=warn,hyper=warn,sqlx=warn"))
}

fn fmt_only(format: LogFormat) -> Box<dyn tracing::Subscriber + Send + Sync> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .finish(),
        ),
        LogFormat::Text => Box::new(builder.compact().finish()),
    }
}

/// Installs the global subscriber, as [`init_logging`] does, plus span export
/// when `otlp` is given; the returned handle flushes the spans at shutdown.
/// Must be called within a Tokio runtime. Without export, logging is exactly
/// what [`init_logging`] sets up and spans cost what `tracing` alone costs.
pub fn init(format: LogFormat, otlp: Option<&OtlpConfig>) -> Result<Telemetry, TelemetryError> {
    let Some(config) = otlp else {
        init_logging(format);
        return Ok(Telemetry { provider: None });
    };
    let provider = otlp::tracer_provider(config)?;
    // Logs keep their own filter (RUST_LOG); spans are exported whatever the log level.
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt: Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync> =
        match format {
            LogFormat::Json => fmt
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_filter(log_filter())
                .boxed(),
            LogFormat::Text => fmt.compact().with_filter(log_filter()).boxed(),
        };
    let layers = vec![fmt, otlp::layer(&provider).boxed()];
    let installed = tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok();
    if installed {
        EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(endpoint = %config.endpoint, "exporting spans over OTLP");
    }
    Ok(Telemetry {
        provider: installed.then_some(provider),
    })
}

static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports spans: spans that only OpenTelemetry would
/// see (and their attributes) need not be made otherwise.
pub fn exports_spans() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Makes [`exports_spans`] true without an exporter, for benchmarks that
/// install their own OpenTelemetry layer.
#[doc(hidden)]
pub fn assume_exporting_spans() {
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Process-wide telemetry that needs closing: the span exporter, if any.
#[derive(Debug)]
#[must_use = "call shutdown() after the servers stop, or buffered spans are lost"]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exports_spans(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still buffered; call once the servers have stopped.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            otlp::shutdown(provider).await;
        }
    }
}

/// Renders a registry in the Prometheus text exposition format.
pub fn encode_metrics(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// The content type of [`encode_metrics`]'s output.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A `GET /metrics` answer: the exposition with its content type, or a bare
/// 500 if encoding fails.
pub fn metrics_response(registry: &Registry) -> http::Response<String> {
    let (status, content_type, body) = match encode_metrics(registry) {
        Ok(text) => (http::StatusCode::OK, METRICS_CONTENT_TYPE, text),
        Err(_) => (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            "metrics could not be encoded".to_owned(),
        ),
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// Resolves on SIGTERM or Ctrl-C, whichever comes first.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Runs `on_reload` on every SIGHUP (the conventional "read your
/// configuration again") until SIGTERM or Ctrl-C.
pub async fn until_shutdown(mut on_reload: impl AsyncFnMut()) {
    let mut reload = ReloadSignal::listen();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = reload.recv() => on_reload().await,
        }
    }
}

/// SIGHUP. Each call to [`ReloadSignal::recv`] resolves once per signal; it
/// never resolves where the signal cannot be listened for.
#[derive(Debug)]
struct ReloadSignal {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl ReloadSignal {
    /// Listens from now on; a SIGHUP no longer ends the process.
    fn listen() -> Self {
        Self {
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(hangup) = &mut self.hangup
            && hangup.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}

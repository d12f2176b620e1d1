//! OTLP export of spans over gRPC, off unless an endpoint is configured.
//!
//! The endpoint comes from `--otlp-endpoint`, else the standard
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`;
//! the service name from `--otel-service-name` / `OTEL_SERVICE_NAME`, else
//! `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else the binary's own name.
//! Sampling follows the SDK's `OTEL_TRACES_SAMPLER` (parent-based, always on
//! by default). Only Switchyard's own spans are exported.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::Targets;

/// The variable the SDK falls back on when `--otlp-endpoint` and the
/// traces-only variable are unset.
const GENERAL_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Set to `true` to switch export off whatever else is set (the SDK's switch).
const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// What the SDK names a service nobody named.
const UNKNOWN_SERVICE: &str = "unknown_service";

/// Span export settings, shared by both planes' command lines.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OtlpArgs {
    /// OTLP/gRPC collector that receives spans (e.g. http://otel-collector:4317).
    /// Falls back on OTEL_EXPORTER_OTLP_ENDPOINT; no spans are exported when
    /// neither is set.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans; defaults to the binary's name.
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,
}

impl OtlpArgs {
    /// The export settings, or `None` when export is off. `default_service`
    /// names the service when nothing else does.
    pub fn resolve(&self, default_service: &str) -> Option<OtlpConfig> {
        let disabled = std::env::var(SDK_DISABLED).is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        if disabled {
            return None;
        }
        let endpoint = self
            .otlp_endpoint
            .clone()
            .or_else(|| std::env::var(GENERAL_ENDPOINT).ok())
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())?;
        Some(OtlpConfig {
            endpoint,
            service_name: self.otel_service_name.clone().filter(|s| !s.is_empty()),
            default_service: default_service.to_owned(),
        })
    }
}

/// Where spans go and under which service name.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    pub endpoint: String,
    /// Set explicitly; else the SDK's environment detection, else `default_service`.
    pub service_name: Option<String>,
    pub default_service: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// A batch exporter to the collector. Must be called within a Tokio runtime
/// (the gRPC client lives on it).
pub(crate) fn tracer_provider(config: &OtlpConfig) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.endpoint.clone())
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: config.endpoint.clone(),
            source,
        })?;
    let detected = Resource::builder().build();
    let detected_name = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .map(|v| v.to_string())
        .filter(|name| !name.starts_with(UNKNOWN_SERVICE));
    let service_name = config
        .service_name
        .clone()
        .or(detected_name)
        .unwrap_or_else(|| config.default_service.clone());
    let resource = Resource::builder().with_service_name(service_name).build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

/// The layer that turns Switchyard's `tracing` spans into OpenTelemetry
/// spans, and the filter that keeps everyone else's (h2, hyper, tonic) out.
pub(crate) fn layer(
    provider: &SdkTracerProvider,
) -> impl tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static {
    use tracing_subscriber::Layer as _;
    let tracer = provider.tracer("switchyard");
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(Targets::new().with_target("switchyard", tracing::Level::INFO))
}

/// Flushes what is buffered and stops the exporter; spans ended after this
/// are dropped. Waits at most the SDK's export timeout.
pub(crate) async fn shutdown(provider: SdkTracerProvider) {
    // The SDK blocks this thread until its exporter thread is done, and
    // that thread needs the runtime to send: keep it off the async workers.
    let result = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "flushing spans to the OTLP collector failed"),
        Err(e) => tracing::warn!(error = %e, "flushing spans to the OTLP collector failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_is_off_without_an_endpoint_and_on_with_the_flag() {
        let off = OtlpArgs::default();
        // The general variable may be set where tests run; the flag always wins.
        if std::env::var_os(GENERAL_ENDPOINT).is_none() && std::env::var_os(SDK_DISABLED).is_none()
        {
            assert!(off.resolve("svc").is_none());
        }
        let on = OtlpArgs {
            otlp_endpoint: Some(" http://127.0.0.1:4317 ".into()),
            otel_service_name: None,
        };
        if std::env::var_os(SDK_DISABLED).is_none() {
            let config = on.resolve("svc");
            assert_eq!(
                config.as_ref().map(|c| c.endpoint.as_str()),
                Some("http://127.0.0.1:4317")
            );
            assert_eq!(config.map(|c| c.default_service), Some("svc".to_owned()));
        }
    }
}

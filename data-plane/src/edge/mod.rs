//! The data plane's two faces: OpenAI-compatible HTTP and the `InferenceService`
//! gRPC API. Both validate into one [`ChatRequest`] and share routing.

mod auth;
mod error;
pub mod grpc;
pub mod http;
pub mod openai;
pub mod tls_listener;
mod validation;

use std::sync::Arc;

pub use error::{ApiError, ErrorKind};

use crate::breaker::Breakers;
use crate::engine::Engine;
use crate::health::LocalSignals;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::request::{ChatRequest, DEFAULT_WORKSPACE};
use crate::scoring::{self, RoutePlan};
use crate::snapshot::{LiveSnapshot, SnapshotCell};

/// What both edges share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub snapshot: SnapshotCell,
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    /// Targets in each request's fallback chain.
    pub fallback_chain: usize,
    /// This node's circuit breakers, shared with the engine.
    pub breakers: Arc<Breakers>,
    /// This node's view of each target's speed and load, fed by the engine.
    pub signals: Arc<LocalSignals>,
    /// Rate limits per key and workspace, shared through Redis when configured.
    pub limiter: Arc<Limiter>,
    /// Workspaces' spend caps, shared through the same Redis.
    pub budgets: Arc<crate::budget::Budgets>,
    /// Set when a shutdown begins: readiness turns false so load balancers
    /// stop sending new requests while those under way finish.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    /// Checks the request against its key's and workspace's rate limits
    /// and its workspace's budgets.
    pub async fn admit(
        &self,
        grant: &switchyard_domain::KeyGrant,
        snapshot: &LiveSnapshot,
        request: &ChatRequest,
        plan: &RoutePlan,
    ) -> Result<crate::admission::Admitted, ApiError> {
        crate::admission::admit(&self.limiter, &self.budgets, snapshot, grant, request, plan).await
    }

    /// Counts an error answered over gRPC and turns it into its status.
    pub fn reject(&self, error: ApiError) -> tonic::Status {
        self.metrics.error(error.kind());
        error.to_status()
    }

    /// The grant of the API key in `headers`, from the current snapshot.
    /// `authorization`: the raw `Authorization` value, if any.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<switchyard_domain::KeyGrant, ApiError> {
        let snapshot = self.snapshot.load_full().ok_or(ApiError::NotReady)?;
        auth::authenticate(&snapshot, authorization)
    }

    /// Loads the snapshot once, so the whole request sees one version, and plans the route.
    pub fn route(&self, request: &ChatRequest) -> Result<(Arc<LiveSnapshot>, RoutePlan), ApiError> {
        let snapshot = self.snapshot.load_full().ok_or(ApiError::NotReady)?;
        let plan = scoring::plan(
            &snapshot,
            request,
            self.fallback_chain,
            &self.breakers,
            &self.signals,
        )?;
        Ok((snapshot, plan))
    }
}

/// Intent and timeout profile a client asked for, parsed; errors name the field.
fn overrides(
    intent: Option<String>,
    timeout: Option<String>,
) -> Result<crate::workload::Overrides, ApiError> {
    let intent = intent
        .filter(|i| !i.is_empty())
        .map(|i| {
            i.parse()
                .map_err(|e| ApiError::invalid("intent", format!("{e}")))
        })
        .transpose()?;
    let timeout = timeout
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse()
                .map_err(|e| ApiError::invalid("timeout_profile", format!("{e}")))
        })
        .transpose()?;
    Ok(crate::workload::Overrides { intent, timeout })
}

/// A printable, bounded id, generated when the client sends none.
fn request_id(given: Option<String>) -> Result<String, ApiError> {
    match given.filter(|id| !id.is_empty()) {
        None => Ok(uuid::Uuid::new_v4().to_string()),
        Some(id) if id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) => Ok(id),
        Some(_) => Err(ApiError::invalid(
            "request_id",
            "must be at most 128 printable ASCII characters",
        )),
    }
}

fn workspace(given: Option<String>) -> Result<String, ApiError> {
    match given.filter(|w| !w.is_empty()) {
        None => Ok(DEFAULT_WORKSPACE.to_owned()),
        Some(w)
            if w.len() <= 63
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(w)
        }
        Some(_) => Err(ApiError::invalid(
            "workspace",
            "must be at most 63 characters of letters, digits, '-' or '_'",
        )),
    }
}

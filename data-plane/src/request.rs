//! The data plane's one request type. Both edges (OpenAI HTTP and gRPC) produce a
//! [`ChatRequest`]: routing knobs parsed out, plus the OpenAI-shaped body that
//! OpenAI-compatible providers receive with only the model swapped.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::workload::WorkloadProfile;

/// When a request arrived, on both clocks: wall time for traces, monotonic for durations.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub at: Instant,
    pub unix_ms: i64,
}

impl Received {
    pub fn now() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            at: Instant::now(),
            unix_ms: i64::try_from(unix.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Wall-clock time of a later instant, in Unix milliseconds.
    pub fn unix_ms_at(&self, later: Instant) -> i64 {
        let elapsed =
            i64::try_from(later.saturating_duration_since(self.at).as_millis()).unwrap_or(i64::MAX);
        self.unix_ms.saturating_add(elapsed)
    }
}

pub use switchyard_domain::DEFAULT_WORKSPACE;

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub received: Received,
    pub request_id: String,
    /// Id of this request's execution trace (UUIDv7), known before routing so
    /// streamed responses can carry it in their headers.
    pub trace_id: String,
    pub workspace: String,
    /// Model name, target id, alias or "auto".
    pub model: String,
    /// Strategy the client asked for; None means the snapshot's default.
    pub strategy: Option<String>,
    pub stream: bool,
    pub max_tokens: Option<u32>,
    /// The OpenAI chat-completions body, validated, without routing-only fields.
    pub body: Map<String, Value>,
    /// What the request needs: intent, tokens, capabilities, timeout profile.
    pub workload: WorkloadProfile,
    /// Trace id of the request this one replays (a control plane's ReplayTrace).
    pub replay_of: Option<String>,
    /// The caller's W3C trace context (`traceparent`, `tracestate`), if it sent one.
    pub trace_context: switchyard_telemetry::context::RemoteContext,
}

/// A request as the scorer and engine see it, for tests.
#[cfg(test)]
pub fn test_request(model: &str, strategy: Option<&str>, workload: WorkloadProfile) -> ChatRequest {
    ChatRequest {
        trace_context: Default::default(),
        replay_of: None,
        received: Received::now(),
        request_id: "r".into(),
        trace_id: "t".into(),
        workspace: DEFAULT_WORKSPACE.into(),
        model: model.into(),
        strategy: strategy.map(str::to_owned),
        stream: workload.capabilities.streaming,
        max_tokens: u32::try_from(workload.output_tokens).ok(),
        body: Map::new(),
        workload,
    }
}

/// A chat workload with these token counts and no special needs, for tests.
#[cfg(test)]
pub fn test_workload(input_tokens: u64, output_tokens: u64) -> WorkloadProfile {
    use crate::workload::{Intent, RequiredCapabilities, Source, TimeoutProfile};
    WorkloadProfile {
        intent: Intent::Chat,
        intent_source: Source::Classified,
        input_tokens,
        output_tokens,
        capabilities: RequiredCapabilities::default(),
        timeout: TimeoutProfile::Standard,
        timeout_source: Source::Classified,
        intent_reason: "chat: test".into(),
    }
}

//! The data plane's one request type. Both edges (OpenAI HTTP and gRPC) produce a
//! [`ChatRequest`]: routing knobs parsed out, plus the OpenAI-shaped body that
//! OpenAI-compatible providers receive with only the model swapped.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

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

/// Workspace of requests that name none.
pub const DEFAULT_WORKSPACE: &str = "default";

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
    pub estimated_input_tokens: u64,
}

impl ChatRequest {
    /// Output tokens to plan for: the request's cap or a conservative default.
    pub fn estimated_output_tokens(&self) -> u64 {
        u64::from(self.max_tokens.unwrap_or(256))
    }
}

/// A rough token estimate (about four characters a token) used until a real
/// tokenizer is wired in; it only feeds cost estimates and context checks.
pub fn estimate_tokens(text: &str) -> u64 {
    let chars = u64::try_from(text.chars().count()).unwrap_or(u64::MAX);
    chars.div_ceil(4).max(1)
}

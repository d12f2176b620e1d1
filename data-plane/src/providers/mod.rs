//! Provider adapters: each turns a [`ChatRequest`] into a call to one provider and
//! normalises the answer, so the engine never sees a provider's dialect.

mod anthropic;
mod framed;
mod http;
pub mod ndjson;
mod ollama;
mod openai;
pub mod replay;
mod simulated;
pub mod sse;
#[cfg(test)]
mod tool_call_tests;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use secrecy::SecretString;
use switchyard_domain::{ProviderKind, ProviderSpec, SecretRef, SimulatedParams};
use switchyard_proto::v1 as pb;

use crate::request::ChatRequest;

/// Why an attempt failed; decides whether the engine moves on or gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    Transient,
    RateLimited,
    Timeout,
    Auth,
    Content,
    ProviderDown,
    Protocol,
    Cancelled,
    Configuration,
    /// The prompt does not fit the target's context window.
    ContextLength,
}

impl ErrorClass {
    /// From an HTTP status of a provider's error response.
    pub fn from_status(status: u16) -> Self {
        match status {
            429 => Self::RateLimited,
            401 | 403 => Self::Auth,
            408 => Self::Timeout,
            400 | 404 | 409 | 413 | 415 | 422 => Self::Content,
            _ => Self::Transient,
        }
    }

    /// Whether the failure says the target is unwell (and counts towards opening
    /// its circuit breaker). Saturation, bad requests and clients leaving do not.
    pub fn trips_breaker(self) -> bool {
        matches!(
            self,
            Self::Transient | Self::Timeout | Self::ProviderDown | Self::Protocol | Self::Auth
        )
    }

    /// Whether the same target is worth another try after a back-off.
    pub fn retry_same_target(self) -> bool {
        matches!(self, Self::Transient | Self::RateLimited | Self::Timeout)
    }

    /// A provider's rejection of the request, told apart from the rest when it
    /// says the prompt is too long for the model: a larger window may take it.
    pub fn refine_content(self, message: &str) -> Self {
        const TOO_LONG: [&str; 6] = [
            "context length",
            "context_length",
            "context window",
            "maximum context",
            "prompt is too long",
            "too many tokens",
        ];
        let lower = message.to_ascii_lowercase();
        if self == Self::Content && TOO_LONG.iter().any(|p| lower.contains(p)) {
            Self::ContextLength
        } else {
            self
        }
    }

    /// Whether another target may succeed where this one failed.
    pub fn try_next_target(self) -> bool {
        !matches!(self, Self::Content | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::Auth => "auth",
            Self::Content => "content",
            Self::ProviderDown => "provider_down",
            Self::Protocol => "protocol",
            Self::Cancelled => "cancelled",
            Self::Configuration => "configuration",
            Self::ContextLength => "context_length",
        }
    }
}

impl From<ErrorClass> for pb::ErrorClass {
    fn from(class: ErrorClass) -> Self {
        match class {
            ErrorClass::Transient => Self::Transient,
            ErrorClass::RateLimited => Self::RateLimited,
            ErrorClass::Timeout => Self::Timeout,
            ErrorClass::Auth => Self::Auth,
            ErrorClass::Content => Self::Content,
            ErrorClass::ProviderDown => Self::ProviderDown,
            ErrorClass::Protocol => Self::Protocol,
            ErrorClass::Cancelled => Self::Cancelled,
            ErrorClass::Configuration => Self::Configuration,
            ErrorClass::ContextLength => Self::ContextLength,
        }
    }
}

/// A failed call to a provider. The message is safe to show a client: no keys,
/// no URLs.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{class:?}: {message}")]
pub struct ProviderError {
    pub class: ErrorClass,
    /// HTTP status from the provider; 0 when there was none.
    pub http_status: u16,
    pub message: String,
    /// How long the provider asked us to wait before trying again (`Retry-After`).
    pub retry_after: Option<Duration>,
}

/// Longest `Retry-After` honoured; a provider asking for more is moved past.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A `Retry-After` header in delta-seconds (the form providers send), bounded.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds).min(MAX_RETRY_AFTER))
}

impl ProviderError {
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }
    /// A provider's error response: its class from the status (and, for a
    /// rejected request, the message), the message kept for the client.
    pub fn from_status(status: u16, class: ErrorClass, message: String) -> Self {
        Self {
            class: class.refine_content(&message),
            http_status: status,
            retry_after: None,
            message,
        }
    }

    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            http_status: 0,
            retry_after: None,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A function call the model asked for, in OpenAI's terms: arguments are JSON text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// An id for a tool call whose provider gives none (Ollama): clients send it
/// back with the call's result.
pub fn new_tool_call_id() -> String {
    format!("call_{}", uuid::Uuid::new_v4().simple())
}

/// A piece of a streamed tool call, as OpenAI streams them: the first piece of
/// call `index` carries its id and name, later ones more argument text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCallDelta {
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: String,
    pub usage: Option<Usage>,
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Delta(String),
    ToolCall(ToolCallDelta),
    /// The provider finished cleanly.
    Finish {
        finish_reason: String,
        usage: Option<Usage>,
    },
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// A provider of the snapshot, ready to call on this node: its secret resolved
/// from the node's own environment or files.
#[derive(Debug, Clone)]
pub enum Endpoint {
    OpenAi(openai::OpenAiEndpoint),
    Anthropic(anthropic::AnthropicEndpoint),
    Ollama(ollama::OllamaEndpoint),
    Simulated(simulated::SimulatedEndpoint),
    /// Known to the registry but not callable here; the reason is shown in routing explanations.
    Unavailable(String),
}

impl Endpoint {
    /// False for a provider this node cannot call (its secret is missing).
    pub fn is_callable(&self) -> bool {
        !matches!(self, Self::Unavailable(_))
    }

    pub fn prepare(spec: &ProviderSpec) -> Self {
        let api_key = match spec.secret_ref().map(|r| resolve_secret(&r)).transpose() {
            Ok(key) => key,
            Err(reason) => return Self::Unavailable(reason),
        };
        let headers = || spec.headers.clone().into_iter().collect::<BTreeMap<_, _>>();
        match spec.kind {
            ProviderKind::Openai => Self::OpenAi(openai::OpenAiEndpoint::new(
                &spec.base_url,
                api_key,
                headers(),
            )),
            ProviderKind::Anthropic => Self::Anthropic(anthropic::AnthropicEndpoint::new(
                &spec.base_url,
                api_key,
                headers(),
            )),
            ProviderKind::Ollama => Self::Ollama(ollama::OllamaEndpoint::new(
                &spec.base_url,
                api_key,
                headers(),
            )),
            ProviderKind::Simulated => {
                let params: SimulatedParams = spec.simulated.clone().unwrap_or(SimulatedParams {
                    seed: 0,
                    first_token_latency_ms: 50,
                    tokens_per_second: 200,
                    failure_rate: 0.0,
                    output_tokens: 16,
                });
                Self::Simulated(simulated::SimulatedEndpoint::new(params))
            }
        }
    }

    /// A simulated provider's configuration: its speed is known, not guessed.
    pub fn simulated_params(&self) -> Option<&SimulatedParams> {
        match self {
            Self::Simulated(e) => Some(e.params()),
            _ => None,
        }
    }

    pub fn unavailable_reason(&self) -> Option<&str> {
        match self {
            Self::Unavailable(reason) => Some(reason),
            _ => None,
        }
    }

    pub async fn complete(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest,
        model: &str,
        timeout: Duration,
    ) -> Result<Completion, ProviderError> {
        match self {
            Self::OpenAi(e) => e.complete(client, request, model, timeout).await,
            Self::Anthropic(e) => e.complete(client, request, model, timeout).await,
            Self::Ollama(e) => e.complete(client, request, model, timeout).await,
            Self::Simulated(e) => e.complete(request).await,
            Self::Unavailable(reason) => Err(ProviderError::new(
                ErrorClass::Configuration,
                reason.clone(),
            )),
        }
    }

    /// Resolves once the provider has accepted the request (status checked);
    /// events follow on the returned stream.
    pub async fn stream(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest,
        model: &str,
        timeout: Duration,
    ) -> Result<EventStream, ProviderError> {
        match self {
            Self::OpenAi(e) => e.stream(client, request, model, timeout).await,
            Self::Anthropic(e) => e.stream(client, request, model, timeout).await,
            Self::Ollama(e) => e.stream(client, request, model, timeout).await,
            Self::Simulated(e) => e.stream(request).await,
            Self::Unavailable(reason) => Err(ProviderError::new(
                ErrorClass::Configuration,
                reason.clone(),
            )),
        }
    }
}

fn resolve_secret(reference: &SecretRef) -> Result<SecretString, String> {
    match reference {
        SecretRef::Env(name) => std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(SecretString::from)
            .ok_or_else(|| format!("credentials missing: environment variable {name} is not set")),
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|v| SecretString::from(v.trim_end().to_owned()))
            .map_err(|e| format!("credentials missing: cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify_as_designed() {
        assert_eq!(ErrorClass::from_status(429), ErrorClass::RateLimited);
        assert_eq!(ErrorClass::from_status(503), ErrorClass::Transient);
        assert_eq!(ErrorClass::from_status(500), ErrorClass::Transient);
        assert_eq!(ErrorClass::from_status(401), ErrorClass::Auth);
        assert_eq!(ErrorClass::from_status(403), ErrorClass::Auth);
        assert_eq!(ErrorClass::from_status(400), ErrorClass::Content);
        assert!(!ErrorClass::Content.try_next_target());
        assert!(ErrorClass::Auth.try_next_target());
    }

    #[test]
    fn a_prompt_too_long_is_told_apart_from_other_rejections() {
        let too_long = [
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
            "prompt is too long: 210000 tokens > 200000 maximum",
            "input length exceeds the context length",
        ];
        for message in too_long {
            let e = ProviderError::from_status(400, ErrorClass::from_status(400), message.into());
            assert_eq!(e.class, ErrorClass::ContextLength, "{message}");
            assert!(e.class.try_next_target() && !e.class.retry_same_target());
        }
        let e = ProviderError::from_status(400, ErrorClass::Content, "messages: bad role".into());
        assert_eq!(e.class, ErrorClass::Content);
        // Only rejections are refined: a 503 mentioning context stays transient.
        let e = ProviderError::from_status(503, ErrorClass::Transient, "context length".into());
        assert_eq!(e.class, ErrorClass::Transient);
    }

    #[test]
    fn missing_env_secret_makes_the_endpoint_unavailable() {
        let spec = ProviderSpec {
            name: "p".into(),
            kind: ProviderKind::Openai,
            base_url: "http://127.0.0.1:1/v1".into(),
            api_key_ref: "env:SWITCHYARD_TEST_SURELY_UNSET_KEY".into(),
            headers: Default::default(),
            enabled: true,
            simulated: None,
        };
        let reason = Endpoint::prepare(&spec)
            .unavailable_reason()
            .map(str::to_owned);
        assert_eq!(
            reason.as_deref(),
            Some(
                "credentials missing: environment variable SWITCHYARD_TEST_SURELY_UNSET_KEY is not set"
            )
        );
    }
}

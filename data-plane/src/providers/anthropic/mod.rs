//! Anthropic Messages API. The client's OpenAI chat-completions body is
//! translated: system and developer messages become the top-level `system`,
//! tools and tool calls become `tool_use`/`tool_result` blocks, consecutive
//! turns of one role are merged, and `max_tokens`, which Anthropic requires,
//! always gets a value. Answers and stream events are normalised back.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::http::{self, truncate};
use super::{Completion, ErrorClass, EventStream, ProviderError};
use crate::request::ChatRequest;

/// The API version every request pins; extra headers may override it.
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic's sampling temperature tops out at 1; OpenAI's at 2.
const MAX_TEMPERATURE: f64 = 1.0;

#[derive(Debug, Clone)]
pub struct AnthropicEndpoint {
    url: String,
    api_key: Option<SecretString>,
    headers: HeaderMap,
}

impl AnthropicEndpoint {
    pub fn new(
        base_url: &str,
        api_key: Option<SecretString>,
        extra_headers: BTreeMap<String, String>,
    ) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // Extra headers go last so they may override the version (or add a beta flag).
        headers.extend(http::extra_headers(extra_headers));
        Self {
            url: format!("{}/messages", base_url.trim_end_matches('/')),
            api_key,
            headers,
        }
    }

    fn request(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest,
        model: &str,
        stream: bool,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let body = build_body(request, model, stream)?;
        let mut headers = self.headers.clone();
        headers.extend(http::trace_headers(request));
        if let Some(key) = &self.api_key {
            let mut value = HeaderValue::from_str(key.expose_secret()).map_err(|_| {
                ProviderError::new(
                    ErrorClass::Configuration,
                    "the provider's API key is not a valid header value",
                )
            })?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static("x-api-key"), value);
        }
        let body = serde_json::to_vec(&body).map_err(|e| {
            ProviderError::new(
                ErrorClass::Content,
                format!("request cannot be encoded: {e}"),
            )
        })?;
        Ok(client.post(&self.url).headers(headers).body(body))
    }

    pub async fn complete(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest,
        model: &str,
        timeout: Duration,
    ) -> Result<Completion, ProviderError> {
        let body = http::call(
            self.request(client, request, model, false)?,
            timeout,
            status_error,
        )
        .await?;
        parse_message(&body)
    }

    pub async fn stream(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest,
        model: &str,
        timeout: Duration,
    ) -> Result<EventStream, ProviderError> {
        let response = http::open(
            self.request(client, request, model, true)?,
            timeout,
            status_error,
        )
        .await?;
        Ok(Box::pin(sse_events(
            Box::pin(response.bytes_stream()),
            timeout,
        )))
    }
}

// ---------------------------------------------------------------------------
// Transport and errors.

/// `{"type":"error","error":{"type":..,"message":..}}`, as a body or a stream event.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

fn status_error(status: u16, body: &[u8]) -> ProviderError {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.error.message)
        .unwrap_or_else(|| format!("provider answered HTTP {status}"));
    let class = match status {
        // Anthropic's "overloaded": busy, not broken.
        529 => ErrorClass::Transient,
        _ => ErrorClass::from_status(status),
    };
    ProviderError::from_status(status, class, truncate(message))
}

/// The class of an error Anthropic reports inside a stream, by its type.
fn error_type_class(kind: &str) -> ErrorClass {
    match kind {
        "rate_limit_error" => ErrorClass::RateLimited,
        "authentication_error" | "permission_error" | "billing_error" => ErrorClass::Auth,
        "invalid_request_error" | "not_found_error" | "request_too_large" => ErrorClass::Content,
        "timeout_error" => ErrorClass::Timeout,
        // overloaded_error, api_error and anything new: worth another try.
        _ => ErrorClass::Transient,
    }
}

mod request;
mod response;
pub(super) mod stream;
#[cfg(test)]
mod tests;

use request::*;
use response::*;
use stream::*;

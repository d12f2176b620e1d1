//! What every HTTP provider adapter shares: a call bounded by a deadline, a
//! bounded response body, transport failures classified, `Retry-After` kept,
//! and provider error messages kept short.

use std::time::Duration;

use futures::StreamExt;

use super::{ErrorClass, ProviderError, retry_after};
use crate::request::ChatRequest;

/// Largest non-streamed response body read from a provider.
const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Longest provider error message passed on to clients and traces.
pub const MAX_ERROR_MESSAGE: usize = 500;

/// The registry's extra headers for a provider. They were validated there;
/// anything else is skipped rather than sent mangled.
pub fn extra_headers(
    extra: std::collections::BTreeMap<String, String>,
) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in extra {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    headers
}

/// `traceparent` and `tracestate` for a call made by the current attempt:
/// the attempt span's context when spans are exported, else the caller's
/// own, passed through; empty when there is neither.
pub fn trace_headers(request: &ChatRequest) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    switchyard_telemetry::context::inject(
        &tracing::Span::current(),
        &request.trace_context,
        &mut headers,
    );
    headers
}

/// Turns a provider's non-2xx status and body into an error.
pub type StatusError = fn(u16, &[u8]) -> ProviderError;

pub fn transport_error(e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::new(ErrorClass::Timeout, "provider timed out")
    } else if e.is_connect() {
        ProviderError::new(ErrorClass::ProviderDown, "cannot connect to provider")
    } else if e.is_decode() || e.is_body() {
        ProviderError::new(
            ErrorClass::Protocol,
            "provider response was cut off or unreadable",
        )
    } else {
        ProviderError::new(ErrorClass::ProviderDown, "request to provider failed")
    }
}

pub fn no_response_within(timeout: Duration) -> ProviderError {
    ProviderError::new(
        ErrorClass::Timeout,
        format!("no response within {}s", timeout.as_secs()),
    )
}

pub async fn read_limited(response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(transport_error)?;
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ProviderError::new(
                ErrorClass::Protocol,
                "provider response too large",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Cuts a provider's message to a length fit for clients and traces.
pub fn truncate(mut message: String) -> String {
    if message.len() > MAX_ERROR_MESSAGE {
        let mut cut = MAX_ERROR_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// Sends the request and reads the whole answer within `timeout`.
pub async fn call(
    builder: reqwest::RequestBuilder,
    timeout: Duration,
    status_error: StatusError,
) -> Result<Vec<u8>, ProviderError> {
    let call = async {
        let response = builder.send().await.map_err(transport_error)?;
        let status = response.status();
        let wait = retry_after(response.headers());
        let body = read_limited(response).await?;
        if !status.is_success() {
            return Err(status_error(status.as_u16(), &body).with_retry_after(wait));
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| no_response_within(timeout))?
}

/// Sends the request and waits for a successful status within `timeout`; the
/// body is left to stream.
pub async fn open(
    builder: reqwest::RequestBuilder,
    timeout: Duration,
    status_error: StatusError,
) -> Result<reqwest::Response, ProviderError> {
    let response = tokio::time::timeout(timeout, builder.send())
        .await
        .map_err(|_| no_response_within(timeout))?
        .map_err(transport_error)?;
    let status = response.status();
    if !status.is_success() {
        let wait = retry_after(response.headers());
        let body = read_limited(response).await?;
        return Err(status_error(status.as_u16(), &body).with_retry_after(wait));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let message = "é".repeat(400);
        let cut = truncate(message);
        assert!(cut.len() <= MAX_ERROR_MESSAGE + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short".into()), "short");
    }
}

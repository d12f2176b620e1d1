//! OpenAI chat completions, and every server that speaks it (vLLM, Together,
//! custom endpoints with extra headers). The client's body is forwarded as is,
//! with only the model swapped, so fields we do not model still reach the provider.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::Stream;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::framed::{self, ByteStream, Dialect, Ready};
use super::http::{self, truncate};
use super::sse::SseDecoder;
use super::{
    Completion, ErrorClass, EventStream, ProviderError, StreamEvent, ToolCall, ToolCallDelta, Usage,
};
use crate::request::ChatRequest;

#[derive(Debug, Clone)]
pub struct OpenAiEndpoint {
    url: String,
    api_key: Option<SecretString>,
    headers: HeaderMap,
}

impl OpenAiEndpoint {
    pub fn new(
        base_url: &str,
        api_key: Option<SecretString>,
        extra_headers: BTreeMap<String, String>,
    ) -> Self {
        let headers = http::extra_headers(extra_headers);
        Self {
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
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
    ) -> reqwest::RequestBuilder {
        let mut body = request.body.clone();
        body.insert("model".into(), Value::String(model.to_owned()));
        body.insert("stream".into(), Value::Bool(stream));
        if stream {
            body.insert("stream_options".into(), json!({ "include_usage": true }));
        } else {
            body.remove("stream_options");
        }
        let mut builder = client
            .post(&self.url)
            .headers(self.headers.clone())
            .headers(http::trace_headers(request))
            .json(&body);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key.expose_secret());
        }
        builder
    }

    pub async fn complete(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest,
        model: &str,
        timeout: Duration,
    ) -> Result<Completion, ProviderError> {
        let body = http::call(
            self.request(client, request, model, false),
            timeout,
            status_error,
        )
        .await?;
        parse_completion(&body)
    }

    pub async fn stream(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest,
        model: &str,
        timeout: Duration,
    ) -> Result<EventStream, ProviderError> {
        let response = http::open(
            self.request(client, request, model, true),
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

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

fn status_error(status: u16, body: &[u8]) -> ProviderError {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.error.message)
        .unwrap_or_else(|| format!("provider answered HTTP {status}"));
    ProviderError::from_status(status, ErrorClass::from_status(status), truncate(message))
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Self {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}

#[derive(Deserialize)]
struct WireCompletion {
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: String,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: String,
}

fn parse_completion(body: &[u8]) -> Result<Completion, ProviderError> {
    let wire: WireCompletion = serde_json::from_slice(body).map_err(|e| {
        ProviderError::new(
            ErrorClass::Protocol,
            format!("provider returned invalid JSON: {e}"),
        )
    })?;
    let choice =
        wire.choices.into_iter().next().ok_or_else(|| {
            ProviderError::new(ErrorClass::Protocol, "provider returned no choices")
        })?;
    let tool_calls = choice.message.tool_calls.unwrap_or_default();
    Ok(Completion {
        content: choice.message.content.unwrap_or_default(),
        tool_calls: tool_calls
            .into_iter()
            .map(|call| ToolCall {
                id: call.id,
                name: call.function.name,
                arguments: call.function.arguments,
            })
            .collect(),
        finish_reason: choice.finish_reason.unwrap_or_else(|| "stop".into()),
        usage: wire.usage.map(Usage::from),
    })
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    delta: Option<WireDelta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCallDelta>>,
}

/// A streamed piece of a tool call: id and name come first, then argument text.
#[derive(Deserialize)]
struct WireToolCallDelta {
    #[serde(default)]
    index: u32,
    id: Option<String>,
    function: Option<WireFunctionDelta>,
}

#[derive(Deserialize)]
struct WireFunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

/// OpenAI's chunk stream: what has been seen so far of the finish.
#[derive(Default)]
struct Chunks {
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl Dialect for Chunks {
    const UNFINISHED: &'static str = "provider stream ended before [DONE]";

    fn take(&mut self, data: &str, ready: &mut Ready) -> bool {
        if data == "[DONE]" {
            let finish_reason = self.finish_reason.take().unwrap_or_else(|| "stop".into());
            ready.push_back(Ok(StreamEvent::Finish {
                finish_reason,
                usage: self.usage.take(),
            }));
            return false;
        }
        let chunk: WireChunk = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(e) => {
                let error = ProviderError::new(
                    ErrorClass::Protocol,
                    format!("provider sent an invalid stream event: {e}"),
                );
                ready.push_back(Err(error));
                return false;
            }
        };
        if let Some(error) = chunk.error {
            let message = truncate(
                error
                    .message
                    .unwrap_or_else(|| "provider reported an error mid-stream".into()),
            );
            ready.push_back(Err(ProviderError::new(ErrorClass::Transient, message)));
            return false;
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    ready.push_back(Ok(StreamEvent::Delta(text)));
                }
                for call in delta.tool_calls.unwrap_or_default() {
                    let (name, arguments) = call
                        .function
                        .map(|f| (f.name, f.arguments.unwrap_or_default()))
                        .unwrap_or_default();
                    let piece = ToolCallDelta {
                        index: call.index,
                        id: call.id.filter(|id| !id.is_empty()),
                        name: name.filter(|n| !n.is_empty()),
                        arguments,
                    };
                    if piece.id.is_some() || piece.name.is_some() || !piece.arguments.is_empty() {
                        ready.push_back(Ok(StreamEvent::ToolCall(piece)));
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
        }
        true
    }
}

pub(super) fn sse_events(
    body: ByteStream,
    idle_timeout: Duration,
) -> impl Stream<Item = Result<StreamEvent, ProviderError>> {
    framed::events(body, idle_timeout, SseDecoder::default(), Chunks::default())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::StreamExt;

    use super::*;

    async fn events_of(raw: &'static [u8]) -> Vec<Result<StreamEvent, ProviderError>> {
        let body: ByteStream = Box::pin(futures::stream::iter(vec![Ok(Bytes::from_static(raw))]));
        sse_events(body, Duration::from_secs(5)).collect().await
    }

    #[tokio::test]
    async fn deltas_finish_and_usage_are_parsed() {
        let events = events_of(
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
              data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
              data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n\
              data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n\
              data: [DONE]\n\n",
        )
        .await;
        let events: Vec<StreamEvent> = events.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            events,
            vec![
                StreamEvent::Delta("Hi".into()),
                StreamEvent::Finish {
                    finish_reason: "length".into(),
                    usage: Some(Usage {
                        input_tokens: 3,
                        output_tokens: 1
                    }),
                },
            ]
        );
    }

    /// A very long stream (50,000 chunks, about 5 MB) read in 64 KB pieces:
    /// every delta comes out, in order, and the finish after them.
    #[tokio::test]
    async fn a_very_long_stream_comes_through_whole() {
        const CHUNKS: usize = 50_000;
        let mut raw = Vec::new();
        for i in 0..CHUNKS {
            raw.extend_from_slice(
                format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"w{i} \"}},\"finish_reason\":null}}]}}\n\n")
                    .as_bytes(),
            );
        }
        raw.extend_from_slice(
            b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
        );
        let pieces: Vec<reqwest::Result<Bytes>> = raw
            .chunks(64 << 10)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let body: ByteStream = Box::pin(futures::stream::iter(pieces));
        let events: Vec<StreamEvent> = sse_events(body, Duration::from_secs(5))
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(events.len(), CHUNKS + 1);
        for (i, event) in events[..CHUNKS].iter().enumerate() {
            assert_eq!(event, &StreamEvent::Delta(format!("w{i} ")));
        }
        assert!(
            matches!(&events[CHUNKS], StreamEvent::Finish { finish_reason, .. } if finish_reason == "stop")
        );
    }

    #[tokio::test]
    async fn garbage_and_dropped_streams_are_errors() {
        let events = events_of(b"data: {garbage\n\n").await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].as_ref().unwrap_err().class, ErrorClass::Protocol);

        let events = events_of(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n").await;
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].as_ref().unwrap_err().class, ErrorClass::Protocol);
    }

    #[test]
    fn error_bodies_keep_the_provider_message_and_class() {
        let e = status_error(
            429,
            br#"{"error":{"message":"slow down","type":"requests"}}"#,
        );
        assert_eq!(
            (e.class, e.http_status, e.message.as_str()),
            (ErrorClass::RateLimited, 429, "slow down")
        );
        let e = status_error(502, b"<html>bad gateway</html>");
        assert_eq!(e.message, "provider answered HTTP 502");
        assert!(parse_completion(b"{not json").is_err());
        assert_eq!(
            parse_completion(br#"{"choices":[]}"#).unwrap_err().class,
            ErrorClass::Protocol
        );
    }
}

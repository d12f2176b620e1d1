//! Anthropic Messages SSE events -> stream events.

use crate::providers::http::truncate;
use crate::providers::sse::SseDecoder;
use crate::providers::{ErrorClass, ProviderError, StreamEvent, Usage};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use super::*;

// ---------------------------------------------------------------------------
// Streams.

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WireEvent {
    MessageStart {
        message: WireStartMessage,
    },
    ContentBlockDelta {
        delta: WireDelta,
    },
    MessageDelta {
        delta: WireMessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: ErrorDetail,
    },
    /// ping, content_block_start, content_block_stop and anything newer.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
pub(super) struct WireStartMessage {
    pub(super) usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WireDelta {
    TextDelta {
        text: String,
    },
    /// Tool input JSON, thinking, signatures, citations.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
pub(super) struct WireMessageDelta {
    pub(super) stop_reason: Option<String>,
}

pub(super) type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

pub(super) struct SseState {
    pub(super) body: ByteStream,
    pub(super) decoder: SseDecoder,
    pub(super) ready: VecDeque<Result<StreamEvent, ProviderError>>,
    pub(super) stop_reason: Option<String>,
    pub(super) input_tokens: Option<u64>,
    pub(super) output_tokens: Option<u64>,
    pub(super) ended: bool,
    pub(super) idle_timeout: Duration,
}

impl SseState {
    /// Takes one SSE data payload; returns false when the stream is over.
    fn take(&mut self, data: &str) -> bool {
        let event: WireEvent = match serde_json::from_str(data) {
            Ok(event) => event,
            Err(e) => {
                self.ready.push_back(Err(ProviderError::new(
                    ErrorClass::Protocol,
                    format!("provider sent an invalid stream event: {e}"),
                )));
                return false;
            }
        };
        match event {
            WireEvent::MessageStart { message } => {
                if let Some(usage) = message.usage {
                    self.count(&usage);
                }
            }
            WireEvent::ContentBlockDelta {
                delta: WireDelta::TextDelta { text },
            } if !text.is_empty() => self.ready.push_back(Ok(StreamEvent::Delta(text))),
            WireEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(usage) = usage {
                    self.count(&usage);
                }
            }
            WireEvent::MessageStop => {
                let usage =
                    (self.input_tokens.is_some() || self.output_tokens.is_some()).then(|| Usage {
                        input_tokens: self.input_tokens.unwrap_or(0),
                        output_tokens: self.output_tokens.unwrap_or(0),
                    });
                self.ready.push_back(Ok(StreamEvent::Finish {
                    finish_reason: finish_reason(self.stop_reason.as_deref()),
                    usage,
                }));
                return false;
            }
            WireEvent::Error { error } => {
                let class = error_type_class(error.kind.as_deref().unwrap_or(""));
                let message = truncate(
                    error
                        .message
                        .unwrap_or_else(|| "provider reported an error mid-stream".into()),
                );
                self.ready
                    .push_back(Err(ProviderError::new(class, message)));
                return false;
            }
            WireEvent::ContentBlockDelta { .. } | WireEvent::Other => {}
        }
        true
    }

    /// Usage figures are running totals: later ones replace earlier ones.
    fn count(&mut self, usage: &WireUsage) {
        if let Some(input) = usage.input() {
            self.input_tokens = Some(input);
        }
        if let Some(output) = usage.output_tokens {
            self.output_tokens = Some(output);
        }
    }
}

/// Pull-based, so dropping the stream drops the connection to the provider at once.
pub(super) fn sse_events(
    body: ByteStream,
    idle_timeout: Duration,
) -> impl Stream<Item = Result<StreamEvent, ProviderError>> {
    let state = SseState {
        body,
        decoder: SseDecoder::default(),
        ready: VecDeque::new(),
        stop_reason: None,
        input_tokens: None,
        output_tokens: None,
        ended: false,
        idle_timeout,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.ready.pop_front() {
                return Some((item, st));
            }
            if st.ended {
                return None;
            }
            let error = match tokio::time::timeout(st.idle_timeout, st.body.next()).await {
                Err(_) => ProviderError::new(
                    ErrorClass::Timeout,
                    format!("provider sent nothing for {}s", st.idle_timeout.as_secs()),
                ),
                Ok(None) => ProviderError::new(
                    ErrorClass::Protocol,
                    "provider stream ended before message_stop",
                ),
                Ok(Some(Err(_))) => {
                    ProviderError::new(ErrorClass::Transient, "provider stream was interrupted")
                }
                Ok(Some(Ok(bytes))) => match st.decoder.push(&bytes) {
                    Err(e) => ProviderError::new(ErrorClass::Protocol, e.to_string()),
                    Ok(events) => {
                        for event in events {
                            if !st.take(&event.data) {
                                st.ended = true;
                                break;
                            }
                        }
                        continue;
                    }
                },
            };
            st.ended = true;
            return Some((Err(error), st));
        }
    })
}

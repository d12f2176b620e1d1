//! Anthropic Messages SSE events -> stream events.

pub(super) use crate::providers::framed::ByteStream;
use crate::providers::framed::{self, Dialect, Ready};
use crate::providers::http::truncate;
use crate::providers::sse::SseDecoder;
use crate::providers::{ErrorClass, ProviderError, StreamEvent, Usage};
use futures::Stream;
use serde::Deserialize;
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

/// Anthropic's event stream: the stop reason and running usage seen so far.
#[derive(Default)]
pub(super) struct Events {
    stop_reason: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl Dialect for Events {
    const UNFINISHED: &'static str = "provider stream ended before message_stop";

    fn take(&mut self, data: &str, ready: &mut Ready) -> bool {
        let event: WireEvent = match serde_json::from_str(data) {
            Ok(event) => event,
            Err(e) => {
                ready.push_back(Err(ProviderError::new(
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
            } if !text.is_empty() => ready.push_back(Ok(StreamEvent::Delta(text))),
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
                ready.push_back(Ok(StreamEvent::Finish {
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
                ready.push_back(Err(ProviderError::new(class, message)));
                return false;
            }
            WireEvent::ContentBlockDelta { .. } | WireEvent::Other => {}
        }
        true
    }
}

impl Events {
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

pub(super) fn sse_events(
    body: ByteStream,
    idle_timeout: Duration,
) -> impl Stream<Item = Result<StreamEvent, ProviderError>> {
    framed::events(body, idle_timeout, SseDecoder::default(), Events::default())
}

//! Anthropic Messages SSE events -> stream events.

pub(super) use crate::providers::framed::ByteStream;
use crate::providers::framed::{self, Dialect, Ready};
use crate::providers::http::truncate;
use crate::providers::sse::SseDecoder;
use crate::providers::{ErrorClass, ProviderError, StreamEvent, ToolCallDelta, Usage};
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
    ContentBlockStart {
        #[serde(default)]
        index: u32,
        content_block: WireStartBlock,
    },
    ContentBlockDelta {
        #[serde(default)]
        index: u32,
        delta: WireDelta,
    },
    ContentBlockStop {
        #[serde(default)]
        index: u32,
    },
    MessageDelta {
        delta: WireMessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: ErrorDetail,
    },
    /// ping and anything newer.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
pub(super) struct WireStartMessage {
    pub(super) usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WireStartBlock {
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: serde_json::Value,
    },
    /// Text (its text comes in deltas), thinking and anything newer.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WireDelta {
    TextDelta {
        text: String,
    },
    /// A piece of a tool call's input, as JSON text.
    InputJsonDelta {
        partial_json: String,
    },
    /// Thinking, signatures, citations.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
pub(super) struct WireMessageDelta {
    pub(super) stop_reason: Option<String>,
}

/// Anthropic's event stream: the stop reason and running usage seen so far,
/// and which content blocks are tool calls.
#[derive(Default)]
pub(super) struct Events {
    stop_reason: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    tool_blocks: Vec<ToolBlock>,
}

/// A `tool_use` content block, numbered among the tool calls as OpenAI numbers them.
struct ToolBlock {
    block: u32,
    call: u32,
    sent_arguments: bool,
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
            WireEvent::ContentBlockStart {
                index,
                content_block: WireStartBlock::ToolUse { id, name, input },
            } => {
                let call = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
                // Streams start tools with an empty input and send it in deltas.
                let arguments = match input {
                    serde_json::Value::Object(o) if o.is_empty() => String::new(),
                    serde_json::Value::Null => String::new(),
                    input => input.to_string(),
                };
                self.tool_blocks.push(ToolBlock {
                    block: index,
                    call,
                    sent_arguments: !arguments.is_empty(),
                });
                ready.push_back(Ok(StreamEvent::ToolCall(ToolCallDelta {
                    index: call,
                    id: Some(id),
                    name: Some(name),
                    arguments,
                })));
            }
            WireEvent::ContentBlockDelta {
                delta: WireDelta::TextDelta { text },
                ..
            } if !text.is_empty() => ready.push_back(Ok(StreamEvent::Delta(text))),
            WireEvent::ContentBlockDelta {
                index,
                delta: WireDelta::InputJsonDelta { partial_json },
            } if !partial_json.is_empty() => {
                if let Some(tool) = self.tool_blocks.iter_mut().find(|t| t.block == index) {
                    tool.sent_arguments = true;
                    ready.push_back(Ok(StreamEvent::ToolCall(ToolCallDelta {
                        index: tool.call,
                        arguments: partial_json,
                        ..ToolCallDelta::default()
                    })));
                }
            }
            // A tool without arguments still has an input: the empty object.
            WireEvent::ContentBlockStop { index } => {
                if let Some(tool) = self
                    .tool_blocks
                    .iter_mut()
                    .find(|t| t.block == index && !t.sent_arguments)
                {
                    tool.sent_arguments = true;
                    ready.push_back(Ok(StreamEvent::ToolCall(ToolCallDelta {
                        index: tool.call,
                        arguments: "{}".to_owned(),
                        ..ToolCallDelta::default()
                    })));
                }
            }
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
            WireEvent::ContentBlockStart { .. }
            | WireEvent::ContentBlockDelta { .. }
            | WireEvent::Other => {}
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

pub(crate) fn sse_events(
    body: ByteStream,
    idle_timeout: Duration,
) -> impl Stream<Item = Result<StreamEvent, ProviderError>> {
    framed::events(body, idle_timeout, SseDecoder::default(), Events::default())
}

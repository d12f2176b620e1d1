//! One attempt on one target, in two phases: the *head* (up to the first
//! output: the whole answer, or a stream's first event) and the *delivery* of
//! the rest to the client. Hedging races two heads; whichever wins is delivered.

use std::time::Duration;

use super::client_link::ClientLink;
use futures::StreamExt;
use tokio::time::Instant;

use super::trace::{AttemptId, TraceBuilder};
use super::{EngineEvent, fill_usage, output_tokens};
use crate::providers::{
    Completion, Endpoint, ErrorClass, EventStream, ProviderError, StreamEvent, ToolCall,
    ToolCallDelta, Usage,
};
use crate::request::ChatRequest;
use crate::tool_args::{InvalidToolCall, ToolSchemas};
use crate::workload::count_tokens;

/// An attempt that got as far as its first output.
pub enum Head {
    /// A non-streamed answer, whole.
    Whole(Completion),
    /// A stream and its first event.
    Stream {
        events: EventStream,
        first: StreamEvent,
    },
}

pub enum AttemptResult {
    Done {
        content: String,
        tool_calls: Vec<ToolCall>,
        finish_reason: String,
        usage: Usage,
        /// The answer's tool calls (streamed or not) that do not match the
        /// request's tools.
        invalid_tool_calls: Vec<InvalidToolCall>,
    },
    /// Failed after output reached the client; `output_tokens` were streamed.
    Partial {
        error: ProviderError,
        output_tokens: u64,
    },
    /// The client left; `output_tokens` had been streamed (and are billed).
    Cancelled { output_tokens: u64 },
}

/// Calls `endpoint` until its first output. A stream must produce its first
/// event within `first_token_limit`, so a stalled target is left while a
/// backup still has time to answer; a whole answer has `remaining`.
pub async fn head(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    request: &ChatRequest,
    model: &str,
    remaining: Duration,
    first_token_limit: Duration,
) -> Result<Head, ProviderError> {
    if !request.stream {
        return endpoint
            .complete(client, request, model, remaining)
            .await
            .map(Head::Whole);
    }
    let limit = remaining.min(first_token_limit);
    let opened = async {
        let mut events = endpoint.stream(client, request, model, limit).await?;
        match events.next().await {
            Some(Ok(first)) => Ok(Head::Stream { events, first }),
            Some(Err(e)) => Err(e),
            None => Err(ProviderError::new(
                ErrorClass::Protocol,
                "provider stream ended without finishing",
            )),
        }
    };
    tokio::time::timeout(limit, opened)
        .await
        .unwrap_or_else(|_| {
            Err(ProviderError::new(
                ErrorClass::Timeout,
                "no first token in time",
            ))
        })
}

/// Hands a head and what follows it to the client; `deadline` bounds the rest
/// of a stream. The answer's tool calls are checked against `tools`.
#[expect(
    clippy::too_many_arguments,
    reason = "one attempt's context, borrowed field by field from the run"
)]
pub async fn deliver(
    head: Head,
    model: &str,
    request: &ChatRequest,
    deadline: Instant,
    tools: &ToolSchemas,
    trace: &mut TraceBuilder,
    id: AttemptId,
    tx: &ClientLink,
) -> AttemptResult {
    match head {
        Head::Whole(c) => {
            trace.first_token(id);
            trace.keep_output(&c.content, &c.tool_calls);
            let usage = fill_usage(c.usage.unwrap_or_default(), request, || {
                output_tokens(&c.content, &c.tool_calls)
            });
            AttemptResult::Done {
                invalid_tool_calls: tools.check(&c.tool_calls),
                content: c.content,
                tool_calls: c.tool_calls,
                finish_reason: c.finish_reason,
                usage,
            }
        }
        Head::Stream { events, first } => {
            let answering = EngineEvent::Answering {
                model: model.to_owned(),
            };
            if tx.send(answering).await.is_err() {
                return AttemptResult::Cancelled { output_tokens: 0 };
            }
            pump(events, first, deadline, tools, trace, id, tx).await
        }
    }
}

/// Streams events to the client as they come. What streamed (text, tool
/// names and arguments) is kept, so a stream that ends without the
/// provider's usage (cut short, abandoned, or from a provider that reports
/// none) is billed on its tokens; they are counted once, at the end, and only
/// then.
async fn pump(
    mut events: EventStream,
    first: StreamEvent,
    deadline: Instant,
    tools: &ToolSchemas,
    trace: &mut TraceBuilder,
    id: AttemptId,
    tx: &ClientLink,
) -> AttemptResult {
    let mut output = String::new();
    // The answer as the client assembles it, for the trace, if it keeps any.
    let keep_answer = trace.keeps_output();
    let mut text = String::new();
    // The calls as the client assembles them, for the trace and the check.
    let keep_calls = keep_answer || !tools.is_empty();
    let mut calls = StreamedCalls::default();
    let mut next = Some(Ok(first));
    let mut sent_any = false;
    loop {
        let event = match next {
            Some(Ok(StreamEvent::Delta(delta))) => {
                output.push_str(&delta);
                if keep_answer {
                    text.push_str(&delta);
                }
                EngineEvent::Delta(delta)
            }
            Some(Ok(StreamEvent::ToolCall(piece))) => {
                output.push_str(piece.name.as_deref().unwrap_or_default());
                output.push_str(&piece.arguments);
                if keep_calls {
                    calls.add(&piece);
                }
                EngineEvent::ToolCall(piece)
            }
            Some(Ok(StreamEvent::Finish {
                finish_reason,
                usage,
            })) => {
                if !sent_any {
                    trace.first_token(id);
                }
                let mut usage = usage.unwrap_or_default();
                if usage.output_tokens == 0 {
                    usage.output_tokens = count_tokens(&output);
                }
                let calls = calls.finish();
                trace.keep_output(&text, &calls);
                return AttemptResult::Done {
                    content: String::new(),
                    tool_calls: Vec::new(),
                    finish_reason,
                    usage,
                    invalid_tool_calls: tools.check(&calls),
                };
            }
            // The first event went out before any error could come.
            Some(Err(error)) => {
                return AttemptResult::Partial {
                    error,
                    output_tokens: count_tokens(&output),
                };
            }
            None => {
                let error = ProviderError::new(
                    ErrorClass::Protocol,
                    "provider stream ended without finishing",
                );
                return AttemptResult::Partial {
                    error,
                    output_tokens: count_tokens(&output),
                };
            }
        };
        if !sent_any {
            trace.first_token(id);
            sent_any = true;
        }
        if tx.send(event).await.is_err() {
            return AttemptResult::Cancelled {
                output_tokens: count_tokens(&output),
            };
        }
        next = tokio::select! {
            () = tx.closed() => {
                return AttemptResult::Cancelled { output_tokens: count_tokens(&output) };
            }
            next = tokio::time::timeout_at(deadline, events.next()) => match next {
                Ok(next) => next,
                Err(_) => Some(Err(ProviderError::new(
                    ErrorClass::Timeout,
                    "request deadline reached mid-stream",
                ))),
            },
        };
    }
}

/// Tool calls assembled from their streamed pieces, by index, as clients do.
#[derive(Default)]
struct StreamedCalls(std::collections::BTreeMap<u32, ToolCall>);

impl StreamedCalls {
    fn add(&mut self, piece: &ToolCallDelta) {
        let call = self.0.entry(piece.index).or_default();
        if let Some(id) = &piece.id {
            call.id.clone_from(id);
        }
        if let Some(name) = &piece.name {
            call.name.push_str(name);
        }
        call.arguments.push_str(&piece.arguments);
    }

    fn finish(self) -> Vec<ToolCall> {
        self.0.into_values().collect()
    }
}

//! OpenAI chat completion wire shapes, built exactly as OpenAI sends them so
//! that real parsers are exercised.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The model reported when a request names none.
pub(crate) const MOCK_MODEL: &str = "mock-model";

/// Per-request fields shared by every body of one reply.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    id: String,
    created: u64,
    model: String,
    prompt_tokens: u64,
    include_usage: bool,
}

impl Reply {
    /// `seq` makes the completion id unique per request.
    pub(crate) fn for_request(request: &Value, seq: usize) -> Self {
        let include_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Self {
            id: format!("chatcmpl-mock{seq:06}"),
            created: unix_now(),
            model: request
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(MOCK_MODEL)
                .to_owned(),
            prompt_tokens: prompt_tokens(request),
            include_usage,
        }
    }

    /// A non-streaming `chat.completion` carrying `text`.
    pub(crate) fn completion(&self, text: &str) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": self.usage(word_count(text)),
        })
    }

    /// A non-streaming `chat.completion` in which the model calls `name`.
    pub(crate) fn tool_completion(&self, name: &str, arguments: &str) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "id": self.call_id(),
                        "type": "function",
                        "function": { "name": name, "arguments": arguments },
                    }],
                },
                "logprobs": null,
                "finish_reason": "tool_calls",
            }],
            "usage": self.usage(word_count(arguments)),
        })
    }

    /// The chunks of a streamed tool call after the role chunk: id and name
    /// first, then the arguments in pieces, then the finish.
    pub(crate) fn tool_chunks(&self, name: &str, arguments: &str) -> Vec<Value> {
        let mut chunks = vec![self.chunk(
            json!({ "tool_calls": [{
                "index": 0,
                "id": self.call_id(),
                "type": "function",
                "function": { "name": name, "arguments": "" },
            }] }),
            Value::Null,
        )];
        chunks.extend(
            crate::behavior::argument_pieces(arguments)
                .iter()
                .map(|piece| {
                    self.chunk(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] }),
                Value::Null,
            )
                }),
        );
        chunks.push(self.chunk(json!({}), json!("tool_calls")));
        chunks.extend(self.usage_chunk(word_count(arguments)));
        chunks
    }

    fn call_id(&self) -> String {
        format!("call_{}", self.id.trim_start_matches("chatcmpl-"))
    }

    /// The first stream chunk, announcing the assistant role.
    pub(crate) fn role_chunk(&self) -> Value {
        self.chunk(json!({ "role": "assistant", "content": "" }), Value::Null)
    }

    pub(crate) fn content_chunk(&self, piece: &str) -> Value {
        self.chunk(json!({ "content": piece }), Value::Null)
    }

    pub(crate) fn stop_chunk(&self) -> Value {
        self.chunk(json!({}), json!("stop"))
    }

    /// The trailing usage chunk, sent only when the request asked for it.
    pub(crate) fn usage_chunk(&self, completion_tokens: u64) -> Option<Value> {
        self.include_usage.then(|| {
            json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.usage(completion_tokens),
            })
        })
    }

    fn chunk(&self, delta: Value, finish_reason: Value) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        });
        // OpenAI sends `"usage": null` on every chunk once usage is requested.
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    fn usage(&self, completion_tokens: u64) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        })
    }
}

/// Splits `text` into one stream piece per word, each followed by a space
/// except the last.
pub(crate) fn stream_pieces(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let last = words.len().saturating_sub(1);
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i < last {
                format!("{w} ")
            } else {
                (*w).to_owned()
            }
        })
        .collect()
}

pub(crate) fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// An OpenAI error body; `type` and `code` follow what OpenAI uses for the
/// common statuses so clients can classify errors the usual way.
pub(crate) fn error_body(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        400..=499 => ("invalid_request_error", None),
        _ => ("server_error", None),
    };
    json!({
        "error": { "message": message, "type": kind, "param": null, "code": code }
    })
}

/// The `GET /v1/models` body.
pub(crate) fn model_list() -> Value {
    json!({
        "object": "list",
        "data": [{
            "id": MOCK_MODEL,
            "object": "model",
            "created": 1_700_000_000,
            "owned_by": "switchyard-testkit",
        }],
    })
}

/// Rough prompt size: whitespace-separated words over all message contents,
/// at least 1. Handles both string content and arrays of text parts.
fn prompt_tokens(request: &Value) -> u64 {
    let messages = request.get("messages").and_then(Value::as_array);
    let words: u64 = messages
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("content"))
        .map(content_words)
        .sum();
    words.max(1)
}

/// Words of a message content: a string, or an array of parts whose `text`
/// counts.
pub(crate) fn content_words(content: &Value) -> u64 {
    match content {
        Value::String(s) => word_count(s),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(word_count)
            .sum(),
        _ => 0,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

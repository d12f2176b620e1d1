//! Anthropic Messages response -> a completion.

use crate::providers::{Completion, ErrorClass, ProviderError, ToolCall, Usage};
use serde::Deserialize;

// ---------------------------------------------------------------------------
// Responses.

#[derive(Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub(super) input_tokens: Option<u64>,
    #[serde(default)]
    pub(super) output_tokens: Option<u64>,
    #[serde(default)]
    pub(super) cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub(super) cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// The whole prompt: Anthropic counts cache writes and reads apart from
    /// `input_tokens`, OpenAI's `prompt_tokens` includes them. Saturating:
    /// the figures come from outside.
    pub(super) fn input(&self) -> Option<u64> {
        let parts = [
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ];
        parts.iter().any(Option::is_some).then(|| {
            parts
                .iter()
                .flatten()
                .fold(0, |sum, &n| u64::saturating_add(sum, n))
        })
    }
}

#[derive(Deserialize)]
pub(super) struct WireMessage {
    pub(super) content: Vec<WireBlock>,
    pub(super) stop_reason: Option<String>,
    pub(super) usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WireBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: serde_json::Value,
    },
    /// thinking and anything newer: not carried by [`Completion`].
    #[serde(other)]
    Other,
}

/// Anthropic's stop reason in OpenAI's words.
pub(super) fn finish_reason(stop_reason: Option<&str>) -> String {
    match stop_reason {
        None | Some("end_turn" | "stop_sequence" | "pause_turn") => "stop",
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        Some(other) => other,
    }
    .to_owned()
}

/// A `tool_use` input object as OpenAI's JSON-text arguments.
pub(super) fn tool_arguments(input: serde_json::Value) -> String {
    match input {
        serde_json::Value::Null => "{}".to_owned(),
        input => input.to_string(),
    }
}

pub(super) fn parse_message(body: &[u8]) -> Result<Completion, ProviderError> {
    let wire: WireMessage = serde_json::from_slice(body).map_err(|e| {
        ProviderError::new(
            ErrorClass::Protocol,
            format!("provider returned invalid JSON: {e}"),
        )
    })?;
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for block in wire.content {
        match block {
            WireBlock::Text { text } => content.push_str(&text),
            WireBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                name,
                arguments: tool_arguments(input),
            }),
            WireBlock::Other => {}
        }
    }
    Ok(Completion {
        content,
        tool_calls,
        finish_reason: finish_reason(wire.stop_reason.as_deref()),
        usage: wire.usage.map(|u| Usage {
            input_tokens: u.input().unwrap_or(0),
            output_tokens: u.output_tokens.unwrap_or(0),
        }),
    })
}

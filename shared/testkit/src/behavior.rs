//! Behaviours a test queues on the mock provider, one per chat request.

use std::time::Duration;

/// What the mock provider does with one chat completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// 200 with a completion whose content is `text` (JSON, or SSE when the
    /// request sets `"stream": true`).
    Reply { text: String },
    /// Same as [`Behavior::Reply`] with [`Behavior::DEFAULT_TEXT`].
    Ok,
    /// 200 with the model calling function `name` with `arguments` (JSON text
    /// of an object), in the provider's own shape; streamed, the arguments
    /// arrive in several pieces.
    ToolCall { name: String, arguments: String },
    /// `status` with an OpenAI-shaped error body
    /// `{"error":{"message","type","param","code"}}`, plus a `Retry-After`
    /// header when `retry_after_secs` is set. Statuses that are not valid
    /// HTTP codes become 500.
    Status {
        status: u16,
        message: String,
        retry_after_secs: Option<u64>,
    },
    /// Wait `delay` before sending the response headers, then behave as `then`.
    Delay {
        delay: Duration,
        then: Box<Behavior>,
    },
    /// Behave as `then`, but hold its body back for `delay` after sending
    /// the headers: a stream that opens at once and is slow to its first token.
    SlowFirstToken {
        delay: Duration,
        then: Box<Behavior>,
    },
    /// 200 with a body that is not JSON under `Content-Type: application/json`.
    /// For streams: a `data: {garbage` event, then `[DONE]`, so the malformed
    /// event is the only defect.
    Garbage,
    /// Streams: the role chunk and `chunks` content chunks, then the
    /// connection is dropped without `[DONE]`. Non-stream requests get a
    /// truncated JSON body before the connection is dropped.
    DropStreamAfter { chunks: usize },
    /// Streams (OpenAI-compatible only): the role chunk, then `chunks`
    /// content chunks `every` apart, then a normal end: a long answer.
    SlowStream { chunks: usize, every: Duration },
}

impl Behavior {
    /// The completion text of [`Behavior::Ok`].
    pub const DEFAULT_TEXT: &str = "Hello from the mock provider.";

    pub fn tool_call(name: &str, arguments: &str) -> Self {
        Self::ToolCall {
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        }
    }
}

/// Splits a tool call's arguments into three streamed pieces, cut on
/// character boundaries.
pub(crate) fn argument_pieces(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    let third = chars.len().div_ceil(3).max(1);
    chars.chunks(third).map(|c| c.iter().collect()).collect()
}

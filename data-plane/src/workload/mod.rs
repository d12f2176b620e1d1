//! The workload profile of a request: what it is for (intent), how many tokens
//! go in and are likely to come out, which capabilities a target must have, and
//! how long it may take. The scorer filters and ranks targets on it, and the
//! trace shows it, so it is transparent (every intent comes with the rule that
//! chose it), deterministic (same body, same profile) and fast (one pass over
//! the messages; a 2 KB prompt is profiled in tens of microseconds).
//!
//! # Intent rules
//!
//! A client may name the intent (and the timeout profile); otherwise the rules
//! below are tried in order over the last user message, the system prompt, the
//! token count and the tools, and the first that matches wins.
//!
//! | # | intent | rule |
//! |---|---|---|
//! | 1 | autocomplete | a fill-in-the-middle `suffix` field, or FIM markers (`<\|fim_prefix\|>`, `<fim_suffix>`, …) in the last user message |
//! | 2 | autocomplete | one user message (a system prompt allowed, no assistant or tool turns), no tools, `max_tokens` ≤ 64 and at most 2,000 input tokens |
//! | 3 | autocomplete | the same single turn, mostly code, with no fence, ending mid-line (not after `;` `{` `}` `)` `:` `.` `,` …) |
//! | 4 | deep_reasoning | the last user message asks for reasoning: "prove", "proof", "derive", "analyze", "step by step", "think carefully", … |
//! | 5 | deep_reasoning | the system prompt asks for reasoning: "step by step", "think carefully", "chain of thought", "explain your reasoning", … |
//! | 6 | quick_edit | the last user message is under 300 tokens, has code (a block, a code-like line or an inline span) and its prose has an edit verb: fix, rename, refactor, change, add, remove, replace, … |
//! | 7 | coding | a fenced code block in the last user message |
//! | 8 | coding | code-like lines in the last user message (two or more, or no fewer than prose lines) |
//! | 9 | coding | tools (or legacy functions) are declared |
//! | 10 | deep_reasoning | more than 4,000 input tokens |
//! | 11 | chat | none of the above |
//!
//! A line is code-like when it starts with a code-only word (`fn `, `def `,
//! `impl `, `#include`, …), starts with a keyword (`class`, `import`, `let`,
//! `return`, `if`, …) and has code punctuation, is an assignment (`x = …`),
//! ends in `;`, `{` or `}`, or has an operator prose does not use (`=>`, `->`,
//! `::`, `==`, `&&`, …). Words match whole and in any case.
//!
//! # Defaults per intent
//!
//! | intent | output tokens without `max_tokens` | timeout profile |
//! |---|---|---|
//! | autocomplete | 64 | fast (5 s) |
//! | quick_edit | 256 | fast (5 s) |
//! | chat | 512 | standard (30 s) |
//! | coding | 1,024 | standard (30 s) |
//! | deep_reasoning | 2,048 | deep (120 s) |
//!
//! Input tokens are counted with a real tokenizer; see [`tokens`].

mod content;
mod intent;
mod signals;
#[cfg(test)]
mod tests;
mod timeout;
pub mod tokens;

use serde_json::{Map, Value};

pub use intent::{
    AUTOCOMPLETE_MAX_INPUT, AUTOCOMPLETE_MAX_OUTPUT, DEEP_REASONING_MIN_INPUT, Intent,
    QUICK_EDIT_MAX_TOKENS,
};
pub use timeout::{MAX_CUSTOM_TIMEOUT, MIN_CUSTOM_TIMEOUT, TimeoutProfile};
pub use tokens::{count_tokens, warm_up};

/// A bad intent or timeout profile from a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    #[error(
        "unknown intent {given:?}: expected one of autocomplete, quick_edit, chat, coding, deep_reasoning"
    )]
    UnknownIntent { given: String },
    #[error(
        "invalid timeout {given:?}: expected fast, standard, deep or a duration such as \"45s\""
    )]
    Timeout { given: String },
    #[error("timeout {given:?} is out of range: a custom timeout must be between 100ms and 10m")]
    TimeoutOutOfRange { given: String },
}

/// Capabilities a target must have to serve the request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequiredCapabilities {
    /// `tools` (or legacy `functions`) is a non-empty array.
    pub tools: bool,
    /// A content part is an image (`image_url`, `input_image`).
    pub vision: bool,
    /// `response_format.type` is `json_object` or `json_schema`.
    pub json_output: bool,
    /// The client asked for a streamed response.
    pub streaming: bool,
}

/// Where a profile field came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Chosen by the rules from the request's content.
    Classified,
    /// Named by the client.
    Requested,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Classified => "classified",
            Self::Requested => "requested",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadProfile {
    pub intent: Intent,
    pub intent_source: Source,
    /// Tokenizer count of the messages (with per-message overhead) and tool definitions.
    pub input_tokens: u64,
    /// `max_tokens` when given, else the intent's default.
    pub output_tokens: u64,
    pub capabilities: RequiredCapabilities,
    pub timeout: TimeoutProfile,
    pub timeout_source: Source,
    /// One short line saying why this intent was chosen, e.g. "coding: code block in the last user message".
    pub intent_reason: String,
}

impl WorkloadProfile {
    /// Context window the request needs: its input plus the output it may produce.
    pub fn context_needed(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// What the client asked for explicitly; each set field wins over the rules.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Overrides {
    pub intent: Option<Intent>,
    pub timeout: Option<TimeoutProfile>,
}

/// Profiles an OpenAI chat-completions body. Never fails: anything it cannot
/// read (a malformed message, an unknown part) still counts as tokens and
/// otherwise adds no signal.
pub fn profile(
    body: &Map<String, Value>,
    stream: bool,
    max_tokens: Option<u32>,
    overrides: &Overrides,
) -> WorkloadProfile {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);

    let mut input_tokens = tokens::REPLY_PRIMING;
    let mut vision = false;
    let mut last_user: Option<(&Value, u64)> = None;
    let mut user_turns = 0usize;
    let mut other_turns = 0usize;
    let mut system = String::new();
    for message in messages {
        let message_tokens = tokens::message_tokens(message);
        input_tokens = input_tokens.saturating_add(message_tokens);
        vision |= content::has_image(message);
        match content::role(message) {
            Some("user") => {
                user_turns += 1;
                last_user = Some((message, message_tokens));
            }
            Some("system" | "developer") => {
                if !system.is_empty() {
                    system.push('\n');
                }
                system.push_str(&content::text(message.get("content")));
            }
            _ => other_turns += 1,
        }
    }
    input_tokens = input_tokens.saturating_add(tokens::tool_tokens(body));

    let tools = ["tools", "functions"]
        .into_iter()
        .filter_map(|key| body.get(key))
        .any(content::non_empty_array);
    let json_output = body
        .get("response_format")
        .and_then(|format| format.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|kind| matches!(kind, "json_object" | "json_schema"));
    let capabilities = RequiredCapabilities {
        tools,
        vision,
        json_output,
        streaming: stream,
    };

    let (intent, intent_source, intent_reason) = match overrides.intent {
        Some(intent) => (
            intent,
            Source::Requested,
            format!("{intent}: requested by the client"),
        ),
        None => {
            let last_user_text =
                last_user.map(|(message, _)| content::text(message.get("content")));
            let signals = intent::Signals {
                last_user: last_user_text.as_deref().unwrap_or_default(),
                last_user_tokens: last_user.map_or(0, |(_, n)| n),
                system: &system,
                user_turns,
                other_turns,
                input_tokens,
                max_tokens,
                tools,
                suffix: body
                    .get("suffix")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty()),
            };
            let (intent, reason) = intent::classify(&signals);
            (intent, Source::Classified, reason)
        }
    };
    let (timeout, timeout_source) = match overrides.timeout {
        Some(timeout) => (timeout, Source::Requested),
        None => (intent.default_timeout(), Source::Classified),
    };
    WorkloadProfile {
        intent,
        intent_source,
        input_tokens,
        output_tokens: max_tokens.map_or_else(|| intent.default_output_tokens(), u64::from),
        capabilities,
        timeout,
        timeout_source,
        intent_reason,
    }
}

/// A client's value, cut short for an error message.
fn shorten(given: &str) -> String {
    const MAX_CHARS: usize = 40;
    match given.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}…", &given[..end]),
        None => given.to_owned(),
    }
}

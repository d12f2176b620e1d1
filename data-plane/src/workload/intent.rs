//! What a request is for, and the rules that decide it when the client does
//! not say (see the table in the module above).

use std::fmt;
use std::str::FromStr;

use super::signals::{self, TextShape};
use super::{TimeoutProfile, WorkloadError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    /// Completing code as it is typed: tiny outputs, latency above all.
    Autocomplete,
    /// A small, local change to a short piece of code.
    QuickEdit,
    /// Conversation with no special shape.
    Chat,
    /// Writing, reading or explaining code; agent loops with tools.
    Coding,
    /// Long inputs or explicit requests to reason.
    DeepReasoning,
}

impl Intent {
    pub const ALL: [Intent; 5] = [
        Self::Autocomplete,
        Self::QuickEdit,
        Self::Chat,
        Self::Coding,
        Self::DeepReasoning,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Autocomplete => "autocomplete",
            Self::QuickEdit => "quick_edit",
            Self::Chat => "chat",
            Self::Coding => "coding",
            Self::DeepReasoning => "deep_reasoning",
        }
    }

    /// Output tokens to plan for when the request sets no `max_tokens`.
    pub fn default_output_tokens(&self) -> u64 {
        match self {
            Self::Autocomplete => 64,
            Self::QuickEdit => 256,
            Self::Chat => 512,
            Self::Coding => 1024,
            Self::DeepReasoning => 2048,
        }
    }

    /// Timeout profile when the request asks for none.
    pub fn default_timeout(&self) -> TimeoutProfile {
        match self {
            Self::Autocomplete | Self::QuickEdit => TimeoutProfile::Fast,
            Self::Chat | Self::Coding => TimeoutProfile::Standard,
            Self::DeepReasoning => TimeoutProfile::Deep,
        }
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Intent {
    type Err = WorkloadError;

    /// The names of [`Intent::as_str`], in any case, with `-` accepted for `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let given = s.trim();
        Self::ALL
            .into_iter()
            .find(|intent| {
                let name = intent.as_str();
                name.len() == given.len()
                    && name.bytes().zip(given.bytes()).all(|(want, got)| {
                        want == got.to_ascii_lowercase() || (want == b'_' && got == b'-')
                    })
            })
            .ok_or_else(|| WorkloadError::UnknownIntent {
                given: super::shorten(given),
            })
    }
}

/// Most output tokens an autocomplete request asks for.
pub const AUTOCOMPLETE_MAX_OUTPUT: u32 = 64;
/// Most input tokens of a request classified as autocomplete by its size.
pub const AUTOCOMPLETE_MAX_INPUT: u64 = 2_000;
/// A quick edit's last user message is shorter than this, in tokens.
pub const QUICK_EDIT_MAX_TOKENS: u64 = 300;
/// Inputs longer than this, in tokens, are deep reasoning unless code says otherwise.
pub const DEEP_REASONING_MIN_INPUT: u64 = 4_000;

/// Words in the last user message that ask for reasoning.
const REASONING_WORDS: &[&str] = &[
    "step by step",
    "think carefully",
    "think hard",
    "think deeply",
    "reason carefully",
    "prove",
    "proof",
    "derive",
    "derivation",
    "analyze",
    "analyse",
];

/// Words in the system prompt that ask for reasoning. Narrower than
/// [`REASONING_WORDS`]: system prompts often describe a job ("help analyze
/// data") without asking for reasoning on every turn.
const SYSTEM_REASONING_WORDS: &[&str] = &[
    "step by step",
    "think carefully",
    "think hard",
    "think deeply",
    "reason carefully",
    "chain of thought",
    "show your reasoning",
    "explain your reasoning",
];

/// Verbs of a small change to code.
const EDIT_VERBS: &[&str] = &[
    "fix", "rename", "refactor", "change", "add", "remove", "delete", "replace", "update",
    "convert", "rewrite", "reformat", "simplify", "move", "extract", "inline", "optimize",
    "optimise", "tweak",
];

/// What the classifier knows about a request.
#[derive(Debug, Default)]
pub(crate) struct Signals<'a> {
    /// Text of the last user message ("" when there is none).
    pub last_user: &'a str,
    /// Tokens of the last user message.
    pub last_user_tokens: u64,
    /// Text of the system and developer messages.
    pub system: &'a str,
    /// Messages with role `user`.
    pub user_turns: usize,
    /// Messages with any other role except system and developer.
    pub other_turns: usize,
    pub input_tokens: u64,
    pub max_tokens: Option<u32>,
    /// Tools (or legacy functions) are declared.
    pub tools: bool,
    /// The body carries a fill-in-the-middle `suffix`.
    pub suffix: bool,
}

/// The intent the rules choose, with one line naming the rule that fired.
/// Rules are tried in order; the first that matches wins.
pub(crate) fn classify(s: &Signals<'_>) -> (Intent, String) {
    use Intent::*;
    let shape: TextShape = signals::shape(s.last_user);
    let single_turn = s.user_turns == 1 && s.other_turns == 0 && !s.tools;

    if s.suffix {
        return (
            Autocomplete,
            "autocomplete: fill-in-the-middle `suffix` field".into(),
        );
    }
    if let Some(marker) = shape.fim_marker {
        return (
            Autocomplete,
            format!("autocomplete: fill-in-the-middle marker {marker} in the last user message"),
        );
    }
    if let Some(cap) = s.max_tokens.filter(|&m| m <= AUTOCOMPLETE_MAX_OUTPUT)
        && single_turn
        && s.input_tokens <= AUTOCOMPLETE_MAX_INPUT
    {
        return (
            Autocomplete,
            format!(
                "autocomplete: a single user turn of {} input tokens with max_tokens {cap} (<= {AUTOCOMPLETE_MAX_OUTPUT})",
                s.input_tokens
            ),
        );
    }
    if single_turn && shape.partial_last_line {
        return (
            Autocomplete,
            "autocomplete: the last user message ends in a partial line of code".into(),
        );
    }
    if let Some(words) = signals::find_phrase(s.last_user, REASONING_WORDS) {
        return (
            DeepReasoning,
            format!("deep_reasoning: the last user message asks for reasoning (\"{words}\")"),
        );
    }
    if let Some(words) = signals::find_phrase(s.system, SYSTEM_REASONING_WORDS) {
        return (
            DeepReasoning,
            format!("deep_reasoning: the system prompt asks for reasoning (\"{words}\")"),
        );
    }
    if s.last_user_tokens < QUICK_EDIT_MAX_TOKENS
        && (shape.fenced || shape.code_lines > 0 || shape.inline_code)
        && let Some(verb) = signals::find_phrase(&signals::prose(s.last_user), EDIT_VERBS)
    {
        return (
            QuickEdit,
            format!(
                "quick_edit: short message ({} tokens) with code and the edit verb \"{verb}\"",
                s.last_user_tokens
            ),
        );
    }
    if shape.fenced {
        return (Coding, "coding: code block in the last user message".into());
    }
    if shape.code_by_lines() {
        return (
            Coding,
            "coding: code-like lines in the last user message".into(),
        );
    }
    if s.tools {
        return (Coding, "coding: tools are declared".into());
    }
    if s.input_tokens > DEEP_REASONING_MIN_INPUT {
        return (
            DeepReasoning,
            format!(
                "deep_reasoning: {} input tokens (over {DEEP_REASONING_MIN_INPUT})",
                s.input_tokens
            ),
        );
    }
    (Chat, "chat: no other rule matched".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases_parse() {
        for intent in Intent::ALL {
            assert_eq!(intent.as_str().parse::<Intent>().unwrap(), intent);
            assert_eq!(intent.to_string(), intent.as_str());
        }
        let cases = [
            ("quick-edit", Intent::QuickEdit),
            ("deep-reasoning", Intent::DeepReasoning),
            ("Coding", Intent::Coding),
            (" chat ", Intent::Chat),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Intent>().unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn unknown_intents_are_rejected_with_the_choices() {
        for text in ["", "poetry", "quick edit", "deep_reasoning_plus"] {
            let message = text.parse::<Intent>().unwrap_err().to_string();
            assert!(message.contains(&format!("{text:?}")), "{message}");
            assert!(
                message.contains("autocomplete, quick_edit, chat, coding, deep_reasoning"),
                "{message}"
            );
        }
        let long = "x".repeat(10_000);
        let message = long.parse::<Intent>().unwrap_err().to_string();
        assert!(
            message.len() < 200,
            "the echo is bounded: {}",
            message.len()
        );
    }

    #[test]
    fn defaults_per_intent() {
        let cases = [
            (Intent::Autocomplete, 64, TimeoutProfile::Fast),
            (Intent::QuickEdit, 256, TimeoutProfile::Fast),
            (Intent::Chat, 512, TimeoutProfile::Standard),
            (Intent::Coding, 1024, TimeoutProfile::Standard),
            (Intent::DeepReasoning, 2048, TimeoutProfile::Deep),
        ];
        for (intent, output, timeout) in cases {
            assert_eq!(intent.default_output_tokens(), output, "{intent}");
            assert_eq!(intent.default_timeout(), timeout, "{intent}");
        }
    }
}

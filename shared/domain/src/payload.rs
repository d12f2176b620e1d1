//! What execution traces keep of a request and its answer: the operator's
//! redaction policy, carried to every data plane in the snapshot.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchyard_proto::v1 as pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TracePayload {
    /// Nothing of the prompt or the answer.
    None,
    /// SHA-256 of the request and of the answer: replays compare, cannot run.
    #[default]
    Hash,
    /// The request and the answer whole, with their hashes: replays can run.
    Full,
}

impl TracePayload {
    /// `none`, `hash` or `full`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "hash" => Some(Self::Hash),
            "full" => Some(Self::Full),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Hash => "hash",
            Self::Full => "full",
        }
    }

    /// An unspecified value is the default; an unknown one (from a newer
    /// control plane) keeps nothing, the choice that cannot leak a prompt.
    pub fn from_wire(value: i32) -> Self {
        match pb::TracePayload::try_from(value) {
            Ok(pb::TracePayload::Unspecified) => Self::default(),
            Ok(pb::TracePayload::Hash) => Self::Hash,
            Ok(pb::TracePayload::Full) => Self::Full,
            Ok(pb::TracePayload::None) | Err(_) => Self::None,
        }
    }

    /// A workspace's override: unspecified means none.
    pub fn override_from_wire(value: i32) -> Option<Self> {
        (value != i32::from(pb::TracePayload::Unspecified)).then(|| Self::from_wire(value))
    }

    pub fn to_wire(self) -> pb::TracePayload {
        match self {
            Self::None => pb::TracePayload::None,
            Self::Hash => pb::TracePayload::Hash,
            Self::Full => pb::TracePayload::Full,
        }
    }
}

/// Lower-case hex SHA-256, as traces keep them.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// SHA-256 (hex) of an answer: its text, then each tool call's name and
/// arguments, NUL-separated. Equal answers hash equal whether they were
/// streamed or not; an answer without tool calls hashes as its text alone.
pub fn answer_sha256<'a>(
    text: &str,
    tool_calls: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut hash = Sha256::new();
    hash.update(text.as_bytes());
    for (name, arguments) in tool_calls {
        hash.update([0]);
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(arguments.as_bytes());
    }
    format!("{:x}", hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_hash_covers_its_tool_calls() {
        let text_only = answer_sha256("hi", []);
        assert_eq!(text_only, sha256_hex(b"hi"));
        let call = answer_sha256("hi", [("get_weather", r#"{"city":"Oslo"}"#)]);
        assert_ne!(call, text_only);
        assert_ne!(
            call,
            answer_sha256("hi", [("get_weather", r#"{"city":"Rome"}"#)])
        );
        // Where one field ends and the next begins is part of the hash.
        assert_ne!(
            answer_sha256("a", [("b", "")]),
            answer_sha256("", [("ab", "")])
        );
    }

    #[test]
    fn parses_and_round_trips_and_an_unknown_wire_value_keeps_nothing() {
        for p in [TracePayload::None, TracePayload::Hash, TracePayload::Full] {
            assert_eq!(TracePayload::parse(p.as_str()), Some(p));
            assert_eq!(TracePayload::from_wire(p.to_wire().into()), p);
        }
        assert_eq!(TracePayload::parse("FULL"), Some(TracePayload::Full));
        assert_eq!(TracePayload::parse("all"), None);
        assert_eq!(TracePayload::from_wire(0), TracePayload::Hash);
        assert_eq!(TracePayload::from_wire(99), TracePayload::None);
    }
}

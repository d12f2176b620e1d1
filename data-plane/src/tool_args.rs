//! Tool calls checked against the request's tool declarations: each
//! `parameters` schema is compiled once, when the request is validated (which
//! also proves it is a valid JSON Schema), and every call in the answer is
//! checked against it. An invalid call is reported, never changed or
//! dropped: the client decides what to do with it.

use std::collections::HashMap;
use std::sync::Arc;

use jsonschema::{PatternOptions, Validator};
use serde_json::Value;
use switchyard_proto::v1 as pb;

use crate::providers::ToolCall;

/// Longest reason kept for one invalid call, in bytes.
const MAX_REASON: usize = 300;
/// Schema errors named in one reason; the rest are counted.
const MAX_ERRORS: usize = 3;
/// Steps one `pattern` may take on one value: a pathological pattern fails
/// the call instead of holding a thread.
const PATTERN_BACKTRACK_LIMIT: usize = 100_000;
/// Compiled size of one `pattern`, in bytes.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a tool's `parameters` (or a response format's) schema. External
/// references are never fetched: schemas come from clients.
pub fn compile(schema: &Value) -> Result<Validator, String> {
    jsonschema::options()
        .offline()
        .with_pattern_options(
            PatternOptions::fancy_regex()
                .backtrack_limit(PATTERN_BACKTRACK_LIMIT)
                .size_limit(PATTERN_SIZE_LIMIT),
        )
        .build(schema)
        .map_err(|e| format!("not a valid JSON Schema: {e}"))
}

/// The functions a request declares, by name, with their compiled argument
/// schemas; cheap to clone. Empty when the request declares no tools, and
/// then nothing is checked.
#[derive(Debug, Clone, Default)]
pub struct ToolSchemas(Arc<HashMap<String, Option<Validator>>>);

/// A tool call whose name or arguments do not match the request's tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidToolCall {
    /// Position of the call in the answer's tool calls.
    pub index: u32,
    pub name: String,
    /// Why, without the argument values (traces may keep no payload).
    pub reason: String,
}

impl InvalidToolCall {
    pub fn to_wire(&self) -> pb::InvalidToolCall {
        pb::InvalidToolCall {
            index: self.index,
            name: self.name.clone(),
            reason: self.reason.clone(),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({ "index": self.index, "name": self.name, "reason": self.reason })
    }
}

impl FromIterator<(String, Option<Validator>)> for ToolSchemas {
    fn from_iter<I: IntoIterator<Item = (String, Option<Validator>)>>(iter: I) -> Self {
        Self(Arc::new(iter.into_iter().collect()))
    }
}

impl ToolSchemas {
    /// True when the request declares no function, so calls are not checked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The calls that name no declared function, or whose arguments are not
    /// a JSON object satisfying the function's schema.
    pub fn check(&self, calls: &[ToolCall]) -> Vec<InvalidToolCall> {
        if self.is_empty() {
            return Vec::new();
        }
        calls
            .iter()
            .enumerate()
            .filter_map(|(i, call)| {
                let reason = self.reason(call)?;
                Some(InvalidToolCall {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    name: call.name.clone(),
                    reason: bounded(reason),
                })
            })
            .collect()
    }

    fn reason(&self, call: &ToolCall) -> Option<String> {
        let Some(schema) = self.0.get(&call.name) else {
            return Some("not one of the request's tools".into());
        };
        // A call without arguments is a call with none.
        let text = call.arguments.trim();
        let arguments: Value = if text.is_empty() {
            Value::Object(serde_json::Map::new())
        } else {
            match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => return Some(format!("arguments are not valid JSON: {e}")),
            }
        };
        if !arguments.is_object() {
            return Some("arguments must be a JSON object".into());
        }
        let schema = schema.as_ref()?;
        let mut errors = schema.iter_errors(&arguments);
        let mut named = Vec::new();
        let mut more = 0usize;
        for e in errors.by_ref() {
            if named.len() < MAX_ERRORS {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                // Masked: the values the model wrote stay out of the reason.
                named.push(format!("{at}: {}", e.masked()));
            } else {
                more += 1;
            }
        }
        if named.is_empty() {
            return None;
        }
        let mut reason = format!("arguments do not match the schema: {}", named.join("; "));
        if more > 0 {
            reason.push_str(&format!(" (and {more} more)"));
        }
        Some(reason)
    }
}

/// Cut to [`MAX_REASON`] bytes on a character boundary.
fn bounded(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON - 3;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas() -> ToolSchemas {
        let weather = json!({
            "type": "object",
            "properties": { "city": { "type": "string" }, "days": { "type": "integer", "minimum": 1 } },
            "required": ["city"],
            "additionalProperties": false,
        });
        [
            ("get_weather".to_owned(), Some(compile(&weather).unwrap())),
            ("now".to_owned(), None),
        ]
        .into_iter()
        .collect()
    }

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: "call_1".into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn valid_calls_pass_and_invalid_ones_are_named_by_position() {
        let invalid = schemas().check(&[
            call("get_weather", r#"{"city":"Paris","days":2}"#),
            call("get_weather", r#"{"days":"two"}"#),
            call("now", ""),
            call("launch", "{}"),
            call("now", "[1]"),
            call("get_weather", r#"{"city": "Par"#),
        ]);
        let by_index: Vec<(u32, &str)> =
            invalid.iter().map(|c| (c.index, c.name.as_str())).collect();
        assert_eq!(
            by_index,
            [
                (1, "get_weather"),
                (3, "launch"),
                (4, "now"),
                (5, "get_weather")
            ]
        );
        assert!(invalid[0].reason.contains("/days"), "{}", invalid[0].reason);
        assert!(invalid[0].reason.contains("city"), "{}", invalid[0].reason);
        assert!(invalid[1].reason.contains("not one of"));
        assert!(invalid[2].reason.contains("JSON object"));
        assert!(invalid[3].reason.contains("not valid JSON"));
    }

    #[test]
    fn reasons_leave_out_the_values_and_stay_short() {
        let secret = "s3cr3t-value";
        let invalid = schemas().check(&[call(
            "get_weather",
            &json!({ "city": 5, "days": secret }).to_string(),
        )]);
        assert_eq!(invalid.len(), 1);
        assert!(!invalid[0].reason.contains(secret), "{}", invalid[0].reason);

        let long = bounded("é".repeat(400));
        assert!(long.len() <= MAX_REASON && long.ends_with("..."));
    }

    #[test]
    fn no_declared_tools_checks_nothing() {
        assert!(
            ToolSchemas::default()
                .check(&[call("anything", "not json")])
                .is_empty()
        );
    }

    #[test]
    fn invalid_schemas_and_remote_references_do_not_compile() {
        assert!(compile(&json!({ "type": 5 })).is_err());
        assert!(compile(&json!({ "$ref": "https://example.com/schema.json" })).is_err());
        assert!(compile(&json!({ "type": "string", "pattern": "(" })).is_err());
        assert!(
            compile(&json!({ "$defs": { "a": { "type": "string" } }, "properties": { "x": { "$ref": "#/$defs/a" } } }))
                .is_ok()
        );
    }
}

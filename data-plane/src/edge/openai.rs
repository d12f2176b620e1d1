//! The OpenAI chat-completions request as clients send it: parsed, validated
//! (errors name the field), and turned into a [`ChatRequest`]. Fields we do not
//! model pass through to OpenAI-compatible providers untouched.

use serde::Deserialize;
use serde_json::Value;

use super::ApiError;
use std::collections::BTreeMap;

use crate::request::{ChatRequest, Received};

/// Routing hints a client may put in the OpenAI `metadata` field.
const METADATA_STRATEGY: &str = "switchyard_strategy";
const METADATA_WORKSPACE: &str = "switchyard_workspace";
const METADATA_INTENT: &str = "switchyard_intent";
const METADATA_TIMEOUT: &str = "switchyard_timeout";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

/// A message's typed fields; its content is checked in place (see
/// [`check_content`]) so a long prompt is never copied.
#[derive(Debug, Deserialize)]
struct Message {
    #[serde(rename = "role")]
    _role: Role,
    #[serde(default)]
    #[serde(rename = "name")]
    _name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    #[serde(rename = "include_usage")]
    _include_usage: Option<bool>,
}

/// The fields we check; everything else is kept in the raw body.
#[derive(Debug, Deserialize)]
struct Checked {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    #[serde(rename = "stream_options")]
    _stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

/// Routing hints from HTTP headers (`x-switchyard-*`); they win over `metadata`.
#[derive(Debug, Default, Clone)]
pub struct Hints {
    pub strategy: Option<String>,
    pub workspace: Option<String>,
    pub request_id: Option<String>,
    pub intent: Option<String>,
    pub timeout: Option<String>,
    /// The trace a control plane is replaying.
    pub replay_of: Option<String>,
}

pub fn parse(body: &[u8], hints: Hints, received: Received) -> Result<ChatRequest, ApiError> {
    let raw: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("", format!("body is not valid JSON: {e}")))?;
    if !raw.is_object() {
        return Err(ApiError::invalid("", "body must be a JSON object"));
    }
    // Checked in place: the body is not copied.
    let checked: Checked = serde_path_to_error::deserialize(&raw).map_err(|e| {
        let path = e.path().to_string();
        ApiError::invalid(
            if path == "." { String::new() } else { path },
            e.into_inner().to_string(),
        )
    })?;
    let Value::Object(mut raw) = raw else {
        return Err(ApiError::invalid("", "body must be a JSON object"));
    };

    let model = checked
        .model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("model", "required"))?;
    let messages = checked
        .messages
        .ok_or_else(|| ApiError::invalid("messages", "required"))?;
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "must contain at least one message",
        ));
    }
    let contents = raw
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| m.get("content"));
    for (i, content) in contents.enumerate() {
        check_content(content)
            .map_err(|m| ApiError::invalid(format!("messages[{i}].content"), m))?;
    }
    let max_tokens = checked.max_completion_tokens.or(checked.max_tokens);
    super::check_sampling(max_tokens, checked.temperature, checked.top_p)?;
    if checked.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "only n = 1 is supported"));
    }

    // Routing hints are ours, not the provider's: take them out of the body.
    let mut metadata = checked.metadata.unwrap_or_default();
    let strategy = hints
        .strategy
        .or_else(|| metadata.remove(METADATA_STRATEGY));
    let workspace = hints
        .workspace
        .or_else(|| metadata.remove(METADATA_WORKSPACE));
    let intent = hints.intent.or_else(|| metadata.remove(METADATA_INTENT));
    let timeout = hints.timeout.or_else(|| metadata.remove(METADATA_TIMEOUT));
    let overrides = super::overrides(intent, timeout)?;
    if metadata.is_empty() {
        raw.remove("metadata");
    } else {
        raw.insert(
            "metadata".into(),
            Value::Object(
                metadata
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            ),
        );
    }

    let stream = checked.stream.unwrap_or(false);
    let workload = crate::workload::profile(&raw, stream, max_tokens, &overrides);
    Ok(ChatRequest {
        replay_of: hints.replay_of,
        received,
        request_id: super::request_id(hints.request_id)?,
        trace_id: uuid::Uuid::now_v7().to_string(),
        workspace: super::workspace(workspace)?,
        model,
        strategy: strategy.filter(|s| !s.is_empty()),
        stream,
        max_tokens,
        workload,
        body: raw,
    })
}

/// Content is a string, an array of typed parts (text parts carry text), or null.
fn check_content(content: Option<&Value>) -> Result<(), String> {
    match content {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(Value::Array(parts)) => {
            for (i, part) in parts.iter().enumerate() {
                let kind = part
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("[{i}] must be an object with a \"type\""))?;
                if kind == "text" && !part.get("text").is_some_and(Value::is_string) {
                    return Err(format!("[{i}].text must be a string"));
                }
            }
            Ok(())
        }
        Some(_) => Err("must be a string, an array of content parts, or null".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(body: &str) -> Result<ChatRequest, ApiError> {
        parse(body.as_bytes(), Hints::default(), Received::now())
    }

    fn param_of(body: &str) -> Option<String> {
        match parse_str(body).unwrap_err() {
            ApiError::InvalidRequest { param, .. } => param,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_valid_request_keeps_unknown_fields_and_drops_routing_hints() {
        let r = parse_str(
            r#"{"model":"auto","messages":[{"role":"user","content":"hi there"}],"seed":7,
                "metadata":{"switchyard_strategy":"cost","team":"a"}}"#,
        )
        .unwrap();
        assert_eq!(r.strategy.as_deref(), Some("cost"));
        assert_eq!(r.body["seed"], 7);
        assert_eq!(r.body["metadata"], serde_json::json!({"team": "a"}));
        assert_eq!(r.workspace, "default");
        assert!(!r.stream);
    }

    #[test]
    fn bad_input_names_the_field() {
        assert_eq!(
            param_of(r#"{"messages":[{"role":"user","content":"x"}]}"#).as_deref(),
            Some("model")
        );
        assert_eq!(param_of(r#"{"model":"m"}"#).as_deref(), Some("messages"));
        assert_eq!(
            param_of(r#"{"model":"m","messages":[]}"#).as_deref(),
            Some("messages")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"user","content":5}]}"#).as_deref(),
            Some("messages[0].content")
        );
        assert_eq!(
            param_of(
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"ten"}"#
            )
            .as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#)
                .as_deref(),
            Some("temperature")
        );
        assert_eq!(
            param_of(r#"{"model":7,"messages":[]}"#).as_deref(),
            Some("model")
        );
    }

    #[test]
    fn malformed_json_and_non_objects_are_rejected() {
        assert!(matches!(
            parse_str("{\"model\":"),
            Err(ApiError::InvalidRequest { param: None, .. })
        ));
        assert!(matches!(
            parse_str("[1,2]"),
            Err(ApiError::InvalidRequest { param: None, .. })
        ));
        assert!(matches!(
            parse_str(""),
            Err(ApiError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn headers_win_over_metadata() {
        let hints = Hints {
            strategy: Some("speed".into()),
            ..Hints::default()
        };
        let body = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":{"switchyard_strategy":"cost"}}"#;
        let r = parse(body.as_bytes(), hints, Received::now()).unwrap();
        assert_eq!(r.strategy.as_deref(), Some("speed"));
    }
}

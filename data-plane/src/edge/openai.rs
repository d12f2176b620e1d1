//! The OpenAI chat-completions request as clients send it: parsed, validated
//! (errors name the field), and turned into a [`ChatRequest`]. Fields we do not
//! model pass through to OpenAI-compatible providers untouched.

use serde::Deserialize;
use serde_json::Value;

use super::ApiError;
use super::validation::{self, Sampling};
use std::collections::BTreeMap;

use crate::request::{ChatRequest, Received};
use crate::tool_args::ToolSchemas;

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
/// `validation::check_body`) so a long prompt is never copied.
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
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<u32>,
    #[serde(default)]
    #[serde(rename = "seed")]
    _seed: Option<i64>,
    #[serde(default)]
    #[serde(rename = "parallel_tool_calls")]
    _parallel_tool_calls: Option<bool>,
    #[serde(default)]
    #[serde(rename = "user")]
    _user: Option<String>,
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

/// The request, validated, and its tools' compiled argument schemas.
pub fn parse(
    body: &[u8],
    hints: Hints,
    received: Received,
) -> Result<(ChatRequest, ToolSchemas), ApiError> {
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
    if checked.messages.is_none() {
        return Err(ApiError::invalid("messages", "required"));
    }
    let tools = validation::check_body(&raw)?;
    Sampling {
        max_tokens: checked.max_tokens,
        max_completion_tokens: checked.max_completion_tokens,
        temperature: checked.temperature,
        top_p: checked.top_p,
        presence_penalty: checked.presence_penalty,
        frequency_penalty: checked.frequency_penalty,
        logprobs: checked.logprobs,
        top_logprobs: checked.top_logprobs,
    }
    .check()?;
    let max_tokens = checked.max_completion_tokens.or(checked.max_tokens);
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
    let request = ChatRequest {
        trace_context: Default::default(),
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
    };
    Ok((request, tools))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(body: &str) -> Result<ChatRequest, ApiError> {
        parse(body.as_bytes(), Hints::default(), Received::now()).map(|(r, _)| r)
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

    /// A valid body with `extra` merged in at the top level.
    fn with(extra: serde_json::Value) -> String {
        let mut body = serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body.to_string()
    }

    fn weather_tool() -> serde_json::Value {
        serde_json::json!({"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
    }

    fn assistant_call(id: &str) -> serde_json::Value {
        serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]})
    }

    #[test]
    fn numeric_ranges_name_the_field() {
        use serde_json::json;
        for (extra, field) in [
            (json!({"temperature": -0.1}), "temperature"),
            (json!({"temperature": 2.01}), "temperature"),
            (json!({"top_p": 1.5}), "top_p"),
            (json!({"top_p": -0.5}), "top_p"),
            (json!({"presence_penalty": 2.5}), "presence_penalty"),
            (json!({"frequency_penalty": -3}), "frequency_penalty"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"max_tokens": -1}), "max_tokens"),
            (json!({"max_completion_tokens": 0}), "max_completion_tokens"),
            (json!({"logprobs": 1}), "logprobs"),
            (
                json!({"top_logprobs": 21, "logprobs": true}),
                "top_logprobs",
            ),
            (json!({"top_logprobs": 2}), "top_logprobs"),
            (json!({"seed": 1.5}), "seed"),
            (json!({"seed": "7"}), "seed"),
            (json!({"n": 2}), "n"),
            (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
            (json!({"stop": 5}), "stop"),
            (json!({"stop": ["a", 5]}), "stop[1]"),
            (json!({"logit_bias": {"50256": 101}}), "logit_bias.50256"),
            (json!({"logit_bias": {"word": 1}}), "logit_bias.word"),
            (json!({"parallel_tool_calls": "yes"}), "parallel_tool_calls"),
        ] {
            assert_eq!(
                param_of(&with(extra.clone())).as_deref(),
                Some(field),
                "{extra}"
            );
        }
        for extra in [
            json!({"temperature": 0, "top_p": 0, "presence_penalty": -2, "frequency_penalty": 2}),
            json!({"temperature": 2, "top_p": 1, "max_tokens": 1, "seed": -5}),
            json!({"logprobs": true, "top_logprobs": 20, "stop": ["a", "b", "c", "d"]}),
            json!({"stop": "\n", "logit_bias": {"50256": -100}}),
        ] {
            assert!(parse_str(&with(extra.clone())).is_ok(), "{extra}");
        }
    }

    #[test]
    fn response_formats_are_checked_and_their_schemas_compiled() {
        use serde_json::json;
        let schema = |s: serde_json::Value| json!({"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": s}}});
        for (extra, field) in [
            (
                json!({"response_format": {"type": "yaml"}}),
                "response_format.type",
            ),
            (json!({"response_format": "json"}), "response_format"),
            (
                json!({"response_format": {"type": "json_schema"}}),
                "response_format.json_schema",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}}),
                "response_format.json_schema.name",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a"}}}),
                "response_format.json_schema.schema",
            ),
            (
                schema(json!({"type": "nonsense"})),
                "response_format.json_schema.schema",
            ),
        ] {
            assert_eq!(
                param_of(&with(extra.clone())).as_deref(),
                Some(field),
                "{extra}"
            );
        }
        for extra in [
            json!({"response_format": {"type": "text"}}),
            json!({"response_format": {"type": "json_object"}}),
            schema(json!({"type": "object", "properties": {"a": {"type": "integer"}}})),
        ] {
            assert!(parse_str(&with(extra.clone())).is_ok(), "{extra}");
        }
    }

    #[test]
    fn roles_and_content_follow_openai_rules() {
        use serde_json::json;
        let messages = |m: serde_json::Value| json!({"messages": m});
        for (extra, field) in [
            (messages(json!([{"role": "user"}])), "messages[0].content"),
            (
                messages(json!([{"role": "system", "content": null}])),
                "messages[0].content",
            ),
            (
                messages(json!([{"role": "user", "content": []}])),
                "messages[0].content",
            ),
            (
                messages(json!([{"role": "user", "content": [{"type": "text"}]}])),
                "messages[0].content[0].text",
            ),
            (
                messages(json!([{"role": "user", "content": [{"type": "video", "video": {}}]}])),
                "messages[0].content[0].type",
            ),
            (
                messages(
                    json!([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]),
                ),
                "messages[0].content[0].type",
            ),
            (
                messages(
                    json!([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
                ),
                "messages[0].content[0].image_url.url",
            ),
            (
                messages(
                    json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u", "detail": "max"}}]}]),
                ),
                "messages[0].content[0].image_url.detail",
            ),
            (
                messages(
                    json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}]),
                ),
                "messages[0].content[0].input_audio.format",
            ),
            (
                messages(
                    json!([{"role": "user", "content": "x"}, {"role": "assistant", "content": null}]),
                ),
                "messages[1].content",
            ),
            (
                messages(json!([{"role": "user", "content": "x", "name": 5}])),
                "messages[0].name",
            ),
            (
                messages(
                    json!([{"role": "user", "content": "x"}, {"role": "tool", "content": "18C"}]),
                ),
                "messages[1].tool_call_id",
            ),
            (
                messages(
                    json!([{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_9", "content": "18C"}]),
                ),
                "messages[1].tool_call_id",
            ),
            (
                messages(json!([{"role": "user", "content": "x", "tool_calls": []}])),
                "messages[0].tool_calls",
            ),
        ] {
            assert_eq!(
                param_of(&with(extra.clone())).as_deref(),
                Some(field),
                "{extra}"
            );
        }
        let ok = messages(json!([
            {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            ]},
            assistant_call("call_1"),
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "18C"}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        ]));
        assert!(parse_str(&with(ok)).is_ok());
    }

    #[test]
    fn assistant_tool_calls_must_be_well_formed() {
        use serde_json::json;
        let call = |c: serde_json::Value| {
            json!({"messages": [{"role": "user", "content": "x"},
                {"role": "assistant", "content": null, "tool_calls": [c]}]})
        };
        let good = json!({"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}});
        let without = |key: &str| {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove(key);
            c
        };
        let mut bad_arguments = good.clone();
        bad_arguments["function"]["arguments"] = json!({"city": "Paris"});
        let mut bad_type = good.clone();
        bad_type["type"] = json!("custom");
        let mut no_name = good.clone();
        no_name["function"]["name"] = json!("");
        for (extra, field) in [
            (call(without("id")), "messages[1].tool_calls[0].id"),
            (call(bad_type), "messages[1].tool_calls[0].type"),
            (
                call(without("function")),
                "messages[1].tool_calls[0].function",
            ),
            (call(no_name), "messages[1].tool_calls[0].function.name"),
            (
                call(bad_arguments),
                "messages[1].tool_calls[0].function.arguments",
            ),
            (call(json!("call_1")), "messages[1].tool_calls[0]"),
        ] {
            assert_eq!(
                param_of(&with(extra.clone())).as_deref(),
                Some(field),
                "{extra}"
            );
        }
        assert!(parse_str(&with(call(good))).is_ok());
    }

    #[test]
    fn tools_are_checked_compiled_and_counted() {
        use serde_json::json;
        let tools = |t: serde_json::Value| json!({"tools": t});
        let named = |name: &str| json!({"type": "function", "function": {"name": name}});
        let many: Vec<_> = (0..=super::validation::MAX_TOOLS)
            .map(|i| named(&format!("f{i}")))
            .collect();
        for (extra, field) in [
            (tools(json!({"a": 1})), "tools"),
            (tools(json!(many)), "tools"),
            (
                tools(json!([{"type": "custom", "custom": {"name": "a"}}])),
                "tools[0].type",
            ),
            (tools(json!([{"type": "function"}])), "tools[0].function"),
            (tools(json!([named("has space")])), "tools[0].function.name"),
            (
                tools(json!([named(&"x".repeat(65))])),
                "tools[0].function.name",
            ),
            (
                tools(json!([named("a"), named("b"), named("a")])),
                "tools[2].function.name",
            ),
            (
                tools(json!([{"type": "function", "function": {"name": "a", "parameters": [1]}}])),
                "tools[0].function.parameters",
            ),
            (
                tools(
                    json!([{"type": "function", "function": {"name": "a", "parameters": {"type": "objekt"}}}]),
                ),
                "tools[0].function.parameters",
            ),
            (
                tools(
                    json!([{"type": "function", "function": {"name": "a", "parameters": {"$ref": "http://localhost/s.json"}}}]),
                ),
                "tools[0].function.parameters",
            ),
            (
                tools(json!([{"type": "function", "function": {"name": "a", "description": 5}}])),
                "tools[0].function.description",
            ),
        ] {
            assert_eq!(
                param_of(&with(extra.clone())).as_deref(),
                Some(field),
                "{extra}"
            );
        }
        let (request, schemas) = parse(
            with(json!({"tools": [weather_tool(), named("now")], "future_field": {"x": 1}}))
                .as_bytes(),
            Hints::default(),
            Received::now(),
        )
        .unwrap();
        assert!(!schemas.is_empty());
        assert_eq!(request.body["future_field"], json!({"x": 1}));
        let (_, none) = parse(
            with(json!({})).as_bytes(),
            Hints::default(),
            Received::now(),
        )
        .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn tool_choice_must_match_the_tools() {
        use serde_json::json;
        for (extra, field) in [
            (json!({"tool_choice": "required"}), "tool_choice"),
            (
                json!({"tool_choice": "sometimes", "tools": [weather_tool()]}),
                "tool_choice",
            ),
            (
                json!({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
                "tool_choice.function.name",
            ),
            (
                json!({"tool_choice": {"type": "function", "function": {"name": "launch"}}, "tools": [weather_tool()]}),
                "tool_choice.function.name",
            ),
            (
                json!({"tool_choice": {"type": "custom"}, "tools": [weather_tool()]}),
                "tool_choice.type",
            ),
            (
                json!({"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto",
                    "tools": [{"type": "function", "function": {"name": "launch"}}]}}, "tools": [weather_tool()]}),
                "tool_choice.allowed_tools.tools[0].function.name",
            ),
        ] {
            assert_eq!(
                param_of(&with(extra.clone())).as_deref(),
                Some(field),
                "{extra}"
            );
        }
        for extra in [
            json!({"tool_choice": "none"}),
            json!({"tool_choice": "auto"}),
            json!({"tool_choice": "required", "tools": [weather_tool()]}),
            json!({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "tools": [weather_tool()]}),
        ] {
            assert!(parse_str(&with(extra.clone())).is_ok(), "{extra}");
        }
    }

    #[test]
    fn message_count_is_bounded() {
        let user = serde_json::json!({"role": "user", "content": "x"});
        let at_limit = vec![user.clone(); super::validation::MAX_MESSAGES];
        assert!(parse_str(&with(serde_json::json!({"messages": at_limit}))).is_ok());
        let over = vec![user; super::validation::MAX_MESSAGES + 1];
        assert_eq!(
            param_of(&with(serde_json::json!({"messages": over}))).as_deref(),
            Some("messages")
        );
    }

    #[test]
    fn content_type_must_be_json() {
        use axum::http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
        let check = |value: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            if let Some(v) = value {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            }
            super::validation::json_content_type(&headers)
        };
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=\"UTF-8\"",
        ] {
            assert!(check(Some(ok)).is_ok(), "{ok}");
        }
        for bad in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/json; charset=latin1"),
        ] {
            let e = check(bad).unwrap_err();
            assert_eq!(
                e.status(),
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{bad:?}"
            );
            assert_eq!(e.body()["error"]["type"], "invalid_request_error");
        }
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
        let (r, _) = parse(body.as_bytes(), hints, Received::now()).unwrap();
        assert_eq!(r.strategy.as_deref(), Some("speed"));
    }
}

//! The rules an OpenAI chat-completions body must meet, checked on the JSON
//! itself so both edges share them (the gRPC edge builds the same body):
//! roles and content, tool calls and their answers, tool declarations and
//! their schemas, `tool_choice`, `response_format`, `stop` and `logit_bias`.
//! Every error names the field by its path, e.g.
//! `messages[3].tool_calls[0].function.arguments`. Fields not named here are
//! not looked at: they pass through to providers.

use std::collections::{HashMap, HashSet};

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

use super::ApiError;
use crate::tool_args::{self, ToolSchemas};

/// Most messages in one request.
pub const MAX_MESSAGES: usize = 2048;
/// Most tools in one request, as OpenAI allows.
pub const MAX_TOOLS: usize = 128;
/// Most stop sequences, as OpenAI allows.
const MAX_STOP: usize = 4;

/// Content part types each role may send, as OpenAI accepts them.
fn part_types(role: &str) -> &'static [&'static str] {
    match role {
        "user" => &["text", "image_url", "input_audio", "file"],
        "assistant" => &["text", "refusal"],
        _ => &["text"],
    }
}

const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];

/// `Content-Type` must be JSON (any parameters, but a charset only UTF-8).
pub fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let unsupported = |got: &str| {
        ApiError::UnsupportedMediaType(format!("Content-Type must be application/json, got {got}"))
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("none"));
    };
    let value = value
        .to_str()
        .map_err(|_| unsupported("a non-ASCII value"))?;
    let mut parts = value.split(';').map(str::trim);
    let essence = parts.next().unwrap_or_default();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(unsupported(&format!("{essence:?}")));
    }
    for param in parts {
        let Some((name, charset)) = param.split_once('=') else {
            continue;
        };
        let charset = charset.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset")
            && !charset.eq_ignore_ascii_case("utf-8")
            && !charset.eq_ignore_ascii_case("utf8")
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body must be UTF-8, got charset {charset:?}"
            )));
        }
    }
    Ok(())
}

/// The numeric knobs of a request, as both edges receive them.
#[derive(Debug, Default)]
pub struct Sampling {
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
}

impl Sampling {
    pub fn check(&self) -> Result<(), ApiError> {
        for (field, value) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if value == Some(0) {
                return Err(ApiError::invalid(field, "must be at least 1"));
            }
        }
        for (field, value, min, max) in [
            ("temperature", self.temperature, 0.0, 2.0),
            ("top_p", self.top_p, 0.0, 1.0),
            ("presence_penalty", self.presence_penalty, -2.0, 2.0),
            ("frequency_penalty", self.frequency_penalty, -2.0, 2.0),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && (min..=max).contains(&v))
            {
                return Err(ApiError::invalid(
                    field,
                    format!("must be between {min} and {max}"),
                ));
            }
        }
        if let Some(n) = self.top_logprobs {
            if n > 20 {
                return Err(ApiError::invalid(
                    "top_logprobs",
                    "must be between 0 and 20",
                ));
            }
            if self.logprobs != Some(true) {
                return Err(ApiError::invalid(
                    "top_logprobs",
                    "needs logprobs set to true",
                ));
            }
        }
        Ok(())
    }
}

/// Checks the body's structure and compiles its tool schemas.
pub fn check_body(body: &Map<String, Value>) -> Result<ToolSchemas, ApiError> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("messages", "required: an array of messages"))?;
    check_messages(messages)?;
    let (names, schemas) = check_tools(body.get("tools"))?;
    check_tool_choice(body.get("tool_choice"), &names)?;
    check_response_format(body.get("response_format"))?;
    check_stop(body.get("stop"))?;
    check_logit_bias(body.get("logit_bias"))?;
    Ok(schemas)
}

fn check_messages(messages: &[Value]) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "must contain at least one message",
        ));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(ApiError::invalid(
            "messages",
            format!(
                "{} messages; at most {MAX_MESSAGES} are allowed",
                messages.len()
            ),
        ));
    }
    // Ids of the tool calls made so far, which tool messages answer.
    let mut call_ids = HashSet::new();
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        check_message(&at, message, &mut call_ids)?;
    }
    Ok(())
}

fn check_message<'a>(
    at: &str,
    message: &'a Value,
    call_ids: &mut HashSet<&'a str>,
) -> Result<(), ApiError> {
    let message = message
        .as_object()
        .ok_or_else(|| ApiError::invalid(at, "must be an object"))?;
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid(format!("{at}.role"), "required: a string"))?;
    if !ROLES.contains(&role) {
        return Err(ApiError::invalid(
            format!("{at}.role"),
            format!("must be one of {}", ROLES.join(", ")),
        ));
    }
    optional_string(message.get("name"), &format!("{at}.name"))?;

    let calls = match message.get("tool_calls") {
        None | Some(Value::Null) => 0,
        Some(_) if role != "assistant" => {
            return Err(ApiError::invalid(
                format!("{at}.tool_calls"),
                "only assistant messages carry tool calls",
            ));
        }
        Some(Value::Array(calls)) => {
            for (j, call) in calls.iter().enumerate() {
                let id = check_tool_call(&format!("{at}.tool_calls[{j}]"), call)?;
                call_ids.insert(id);
            }
            calls.len()
        }
        Some(_) => {
            return Err(ApiError::invalid(
                format!("{at}.tool_calls"),
                "must be an array",
            ));
        }
    };

    let content_at = format!("{at}.content");
    match message.get("content") {
        None | Some(Value::Null) => {
            let answered = calls > 0 || message.get("function_call").is_some_and(Value::is_object);
            if role != "assistant" {
                return Err(ApiError::invalid(content_at, "required"));
            }
            if !answered {
                return Err(ApiError::invalid(
                    content_at,
                    "may be null only when the message has tool_calls",
                ));
            }
        }
        Some(content) => check_content(&content_at, content, part_types(role))?,
    }

    if role == "tool" {
        let id_at = format!("{at}.tool_call_id");
        let id = message
            .get("tool_call_id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ApiError::invalid(&id_at, "required on tool messages"))?;
        if !call_ids.contains(id) {
            return Err(ApiError::invalid(
                id_at,
                format!("{id:?} answers no tool call of an earlier assistant message"),
            ));
        }
    }
    Ok(())
}

/// One tool call of an assistant message; returns its id.
fn check_tool_call<'a>(at: &str, call: &'a Value) -> Result<&'a str, ApiError> {
    let call = call
        .as_object()
        .ok_or_else(|| ApiError::invalid(at, "must be an object"))?;
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("{at}.id"), "required: a non-empty string"))?;
    if call.get("type").and_then(Value::as_str) != Some("function") {
        return Err(ApiError::invalid(
            format!("{at}.type"),
            "must be \"function\"",
        ));
    }
    let function = call
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::invalid(format!("{at}.function"), "required: an object"))?;
    if function
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ApiError::invalid(
            format!("{at}.function.name"),
            "required: a non-empty string",
        ));
    }
    if !function.get("arguments").is_some_and(Value::is_string) {
        return Err(ApiError::invalid(
            format!("{at}.function.arguments"),
            "required: the arguments as a JSON string",
        ));
    }
    Ok(id)
}

/// A string, or a non-empty array of typed parts of the `allowed` types.
fn check_content(at: &str, content: &Value, allowed: &[&str]) -> Result<(), ApiError> {
    let parts = match content {
        Value::String(_) => return Ok(()),
        Value::Array(parts) => parts,
        _ => {
            return Err(ApiError::invalid(
                at,
                "must be a string or an array of content parts",
            ));
        }
    };
    if parts.is_empty() {
        return Err(ApiError::invalid(at, "must not be an empty array"));
    }
    for (j, part) in parts.iter().enumerate() {
        let at = format!("{at}[{j}]");
        let kind = part
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid(&at, "must be an object with a \"type\""))?;
        if !allowed.contains(&kind) {
            return Err(ApiError::invalid(
                format!("{at}.type"),
                format!("must be one of {} for this role", allowed.join(", ")),
            ));
        }
        match kind {
            "text" | "refusal" => required_string(part.get(kind), &format!("{at}.{kind}"))?,
            "image_url" => {
                let image = required_object(part.get(kind), &format!("{at}.image_url"))?;
                required_string(image.get("url"), &format!("{at}.image_url.url"))?;
                if let Some(detail) = image.get("detail")
                    && !detail.is_null()
                    && !matches!(detail.as_str(), Some("auto" | "low" | "high"))
                {
                    return Err(ApiError::invalid(
                        format!("{at}.image_url.detail"),
                        "must be \"auto\", \"low\" or \"high\"",
                    ));
                }
            }
            "input_audio" => {
                let audio = required_object(part.get(kind), &format!("{at}.input_audio"))?;
                required_string(audio.get("data"), &format!("{at}.input_audio.data"))?;
                required_string(audio.get("format"), &format!("{at}.input_audio.format"))?;
            }
            _ => {
                required_object(part.get(kind), &format!("{at}.{kind}"))?;
            }
        }
    }
    Ok(())
}

/// Tool declarations: each a function with a valid, unique name and, if it
/// has parameters, a valid JSON Schema. Returns the names and the schemas.
fn check_tools(tools: Option<&Value>) -> Result<(HashSet<String>, ToolSchemas), ApiError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok((HashSet::new(), ToolSchemas::default())),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(ApiError::invalid("tools", "must be an array")),
    };
    if tools.len() > MAX_TOOLS {
        return Err(ApiError::invalid(
            "tools",
            format!("{} tools; at most {MAX_TOOLS} are allowed", tools.len()),
        ));
    }
    let mut first_at: HashMap<&str, usize> = HashMap::new();
    let mut compiled = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let tool = tool
            .as_object()
            .ok_or_else(|| ApiError::invalid(&at, "must be an object"))?;
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::invalid(
                format!("{at}.type"),
                "must be \"function\"",
            ));
        }
        let function = required_object(tool.get("function"), &format!("{at}.function"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !valid_name(name) {
            return Err(ApiError::invalid(
                format!("{at}.function.name"),
                "must be 1-64 characters of a-z, A-Z, 0-9, '_' or '-'",
            ));
        }
        if let Some(earlier) = first_at.insert(name, i) {
            return Err(ApiError::invalid(
                format!("{at}.function.name"),
                format!("{name:?} is already the name of tools[{earlier}]"),
            ));
        }
        optional_string(
            function.get("description"),
            &format!("{at}.function.description"),
        )?;
        optional_bool(function.get("strict"), &format!("{at}.function.strict"))?;
        let schema = match function.get("parameters") {
            None | Some(Value::Null) => None,
            Some(schema @ Value::Object(_)) => Some(
                tool_args::compile(schema)
                    .map_err(|e| ApiError::invalid(format!("{at}.function.parameters"), e))?,
            ),
            Some(_) => {
                return Err(ApiError::invalid(
                    format!("{at}.function.parameters"),
                    "must be a JSON object",
                ));
            }
        };
        compiled.push((name.to_owned(), schema));
    }
    let names = compiled.iter().map(|(name, _)| name.clone()).collect();
    Ok((names, compiled.into_iter().collect()))
}

/// OpenAI's rule for names of functions and JSON schemas.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_tool_choice(choice: Option<&Value>, tools: &HashSet<String>) -> Result<(), ApiError> {
    let named = |at: &str, name: Option<&Value>| -> Result<(), ApiError> {
        let name = name.and_then(Value::as_str).unwrap_or_default();
        if tools.contains(name) {
            Ok(())
        } else if tools.is_empty() {
            Err(ApiError::invalid(
                at,
                format!("names the tool {name:?} but the request declares no tools"),
            ))
        } else {
            Err(ApiError::invalid(
                at,
                format!("{name:?} is not one of the request's tools"),
            ))
        }
    };
    match choice {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => match s.as_str() {
            "none" | "auto" => Ok(()),
            "required" if tools.is_empty() => Err(ApiError::invalid(
                "tool_choice",
                "\"required\" needs tools, and the request declares none",
            )),
            "required" => Ok(()),
            _ => Err(ApiError::invalid(
                "tool_choice",
                "must be \"none\", \"auto\", \"required\" or an object naming a function",
            )),
        },
        Some(Value::Object(choice)) => match choice.get("type").and_then(Value::as_str) {
            Some("function") => named(
                "tool_choice.function.name",
                choice.get("function").and_then(|f| f.get("name")),
            ),
            Some("allowed_tools") => {
                let allowed =
                    required_object(choice.get("allowed_tools"), "tool_choice.allowed_tools")?;
                if !matches!(
                    allowed.get("mode").and_then(Value::as_str),
                    Some("auto" | "required")
                ) {
                    return Err(ApiError::invalid(
                        "tool_choice.allowed_tools.mode",
                        "must be \"auto\" or \"required\"",
                    ));
                }
                let listed = allowed
                    .get("tools")
                    .and_then(Value::as_array)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "tool_choice.allowed_tools.tools",
                            "required: a non-empty array",
                        )
                    })?;
                for (i, tool) in listed.iter().enumerate() {
                    named(
                        &format!("tool_choice.allowed_tools.tools[{i}].function.name"),
                        tool.get("function").and_then(|f| f.get("name")),
                    )?;
                }
                Ok(())
            }
            _ => Err(ApiError::invalid(
                "tool_choice.type",
                "must be \"function\" or \"allowed_tools\"",
            )),
        },
        Some(_) => Err(ApiError::invalid(
            "tool_choice",
            "must be a string or an object",
        )),
    }
}

fn check_response_format(format: Option<&Value>) -> Result<(), ApiError> {
    let format = match format {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(format)) => format,
        Some(_) => return Err(ApiError::invalid("response_format", "must be an object")),
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text" | "json_object") => Ok(()),
        Some("json_schema") => {
            let spec = required_object(format.get("json_schema"), "response_format.json_schema")?;
            if !spec
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(valid_name)
            {
                return Err(ApiError::invalid(
                    "response_format.json_schema.name",
                    "required: 1-64 characters of a-z, A-Z, 0-9, '_' or '-'",
                ));
            }
            optional_bool(spec.get("strict"), "response_format.json_schema.strict")?;
            let schema = spec
                .get("schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "response_format.json_schema.schema",
                        "required: a JSON Schema object",
                    )
                })?;
            tool_args::compile(schema)
                .map(drop)
                .map_err(|e| ApiError::invalid("response_format.json_schema.schema", e))
        }
        _ => Err(ApiError::invalid(
            "response_format.type",
            "must be \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}

fn check_stop(stop: Option<&Value>) -> Result<(), ApiError> {
    match stop {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(Value::Array(stops)) => {
            if stops.len() > MAX_STOP {
                return Err(ApiError::invalid(
                    "stop",
                    format!("at most {MAX_STOP} stop sequences"),
                ));
            }
            for (i, s) in stops.iter().enumerate() {
                required_string(Some(s), &format!("stop[{i}]"))?;
            }
            Ok(())
        }
        Some(_) => Err(ApiError::invalid(
            "stop",
            "must be a string or an array of strings",
        )),
    }
}

/// Token ids to biases in [-100, 100].
fn check_logit_bias(bias: Option<&Value>) -> Result<(), ApiError> {
    let bias = match bias {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(bias)) => bias,
        Some(_) => return Err(ApiError::invalid("logit_bias", "must be an object")),
    };
    for (token, value) in bias {
        let at = format!("logit_bias.{token}");
        if token.parse::<u32>().is_err() {
            return Err(ApiError::invalid(at, "keys must be token ids"));
        }
        if !value
            .as_f64()
            .is_some_and(|v| (-100.0..=100.0).contains(&v))
        {
            return Err(ApiError::invalid(
                at,
                "must be a number between -100 and 100",
            ));
        }
    }
    Ok(())
}

fn required_string(value: Option<&Value>, at: &str) -> Result<(), ApiError> {
    if value.is_some_and(Value::is_string) {
        Ok(())
    } else {
        Err(ApiError::invalid(at, "required: a string"))
    }
}

fn required_object<'a>(
    value: Option<&'a Value>,
    at: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    value
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::invalid(at, "required: an object"))
}

fn optional_string(value: Option<&Value>, at: &str) -> Result<(), ApiError> {
    match value {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(_) => Err(ApiError::invalid(at, "must be a string")),
    }
}

fn optional_bool(value: Option<&Value>, at: &str) -> Result<(), ApiError> {
    match value {
        None | Some(Value::Null | Value::Bool(_)) => Ok(()),
        Some(_) => Err(ApiError::invalid(at, "must be true or false")),
    }
}

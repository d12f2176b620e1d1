//! The OpenAI request parser and validator, fed outside bytes, and the tool
//! call check behind it, fed what a model might answer.
//!
//! An input's first byte picks the mode: even, the rest is the request body
//! as sent; odd, the rest drives a generator of request-shaped JSON (roles,
//! content parts, tool calls, tool schemas built from JSON Schema keywords,
//! ranges around their bounds), which reaches the deep rules far more often
//! than bytes do. A seed is a zero byte and a body.
//!
//! What must hold, besides never panicking: a refusal is a 400 naming its
//! field in OpenAI's shape; an accepted body is accepted again as it goes to
//! providers; checking tool calls against the compiled schemas reports only
//! calls that exist.

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use serde_json::{Map, Value, json};
use switchyard_data_plane::openai::{self, Hints};
use switchyard_data_plane::providers::ToolCall;
use switchyard_data_plane::request::Received;

const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "robot"];
const PART_TYPES: &[&str] = &[
    "text",
    "image_url",
    "input_audio",
    "file",
    "refusal",
    "video",
];
const TOOL_NAMES: &[&str] = &["get_weather", "now", "a-b_c", "", "has space"];
const SCHEMA_TYPES: &[&str] = &[
    "object", "string", "integer", "number", "array", "boolean", "null", "objekt",
];
/// Nesting of generated schemas and argument values.
const MAX_DEPTH: u32 = 4;

pub fn check_request(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        check_body(data, &[]);
        return;
    };
    if mode % 2 == 0 {
        check_body(rest, rest);
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(body) = request(&mut u) else {
        return;
    };
    let Ok(body) = serde_json::to_vec(&body) else {
        return;
    };
    check_body(&body, u.take_rest());
}

/// Parses `body`; if it is accepted with tools, checks calls made from `calls`.
fn check_body(body: &[u8], calls: &[u8]) {
    match openai::parse(body, Hints::default(), Received::now()) {
        Err(e) => {
            assert_eq!(e.status().as_u16(), 400, "{e:?}");
            let error = e.body();
            let message = error["error"]["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "{error}");
            assert_eq!(error["error"]["type"], "invalid_request_error");
            if let Some(param) = error["error"]["param"].as_str() {
                assert!(message.starts_with(&format!("{param}: ")), "{error}");
            }
        }
        Ok((request, tools)) => {
            assert!(!request.model.is_empty());
            let sent = serde_json::to_vec(&request.body).unwrap_or_default();
            let again = openai::parse(&sent, Hints::default(), Received::now());
            assert!(
                again.is_ok(),
                "accepted once, refused as sent on: {:?}",
                again.err()
            );
            let names: Vec<String> = request
                .body
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
                .collect();
            let calls = tool_calls(&names, calls);
            let invalid = tools.check(&calls);
            assert!(invalid.len() <= calls.len());
            for call in &invalid {
                let made = calls.get(call.index as usize);
                assert_eq!(made.map(|c| c.name.as_str()), Some(call.name.as_str()));
                assert!(!call.reason.is_empty() && call.reason.len() <= 300);
            }
            if tools.is_empty() {
                assert!(invalid.is_empty());
            }
        }
    }
}

/// Tool calls a model might make: declared or unknown names, with arguments
/// that are generated JSON or raw text.
fn tool_calls(names: &[String], data: &[u8]) -> Vec<ToolCall> {
    let mut u = Unstructured::new(data);
    let mut calls = Vec::new();
    while calls.len() < 4 && !u.is_empty() {
        let name = match u.int_in_range(0..=names.len()) {
            Ok(i) => names.get(i).cloned().unwrap_or_else(|| "unknown".into()),
            Err(_) => break,
        };
        let arguments = if u.arbitrary::<bool>().unwrap_or(false) {
            value(&mut u, 0).map(|v| v.to_string()).unwrap_or_default()
        } else {
            u.arbitrary::<String>().unwrap_or_default()
        };
        calls.push(ToolCall {
            id: format!("call_{}", calls.len()),
            name,
            arguments,
        });
    }
    calls
}

fn pick<'a>(u: &mut Unstructured<'_>, from: &[&'a str]) -> Result<&'a str> {
    u.choose(from).copied()
}

fn request(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut body = Map::new();
    body.insert("model".into(), json!(pick(u, &["mock-model", "auto", ""])?));
    let count = u.int_in_range(0..=5)?;
    let mut messages = Vec::with_capacity(count);
    for i in 0..count {
        messages.push(message(u, i)?);
    }
    body.insert("messages".into(), Value::Array(messages));
    if u.arbitrary()? {
        let count = u.int_in_range(0..=3)?;
        let mut tools = Vec::with_capacity(count);
        for _ in 0..count {
            tools.push(tool(u)?);
        }
        body.insert("tools".into(), Value::Array(tools));
    }
    if u.arbitrary()? {
        let choice = match u.int_in_range(0..=4)? {
            0 => json!(pick(u, &["none", "auto", "required", "sometimes"])?),
            1 => json!({"type": "function", "function": {"name": pick(u, TOOL_NAMES)?}}),
            2 => json!({"type": "allowed_tools", "allowed_tools": {
                "mode": pick(u, &["auto", "required", "never"])?,
                "tools": [{"type": "function", "function": {"name": pick(u, TOOL_NAMES)?}}],
            }}),
            3 => json!({"type": pick(u, &["custom", "function"])?}),
            _ => value(u, 0)?,
        };
        body.insert("tool_choice".into(), choice);
    }
    for (field, low, high) in [
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
        ("max_tokens", 1.0, 4096.0),
        ("max_completion_tokens", 1.0, 4096.0),
        ("top_logprobs", 0.0, 20.0),
        ("seed", -1.0, 1.0),
        ("n", 1.0, 2.0),
    ] {
        if u.arbitrary()? {
            body.insert(field.into(), near(u, low, high)?);
        }
    }
    if u.arbitrary()? {
        body.insert("logprobs".into(), value(u, MAX_DEPTH)?);
    }
    if u.arbitrary()? {
        let format = match u.int_in_range(0..=2)? {
            0 => json!({"type": pick(u, &["text", "json_object", "yaml"])?}),
            1 => json!({"type": "json_schema", "json_schema": {
                "name": pick(u, TOOL_NAMES)?, "schema": schema(u, 0)?, "strict": u.arbitrary::<bool>()?,
            }}),
            _ => value(u, 0)?,
        };
        body.insert("response_format".into(), format);
    }
    for field in [
        "stop",
        "logit_bias",
        "stream",
        "metadata",
        "stream_options",
        "user",
    ] {
        if u.arbitrary()? {
            body.insert(field.into(), value(u, 0)?);
        }
    }
    Ok(Value::Object(body))
}

fn message(u: &mut Unstructured<'_>, i: usize) -> Result<Value> {
    let mut m = Map::new();
    m.insert("role".into(), json!(pick(u, ROLES)?));
    match u.int_in_range(0..=3)? {
        0 => {}
        1 => {
            m.insert("content".into(), Value::Null);
        }
        2 => {
            m.insert("content".into(), json!(u.arbitrary::<String>()?));
        }
        _ => {
            let count = u.int_in_range(0..=3)?;
            let mut parts = Vec::with_capacity(count);
            for _ in 0..count {
                parts.push(part(u)?);
            }
            m.insert("content".into(), Value::Array(parts));
        }
    }
    if u.arbitrary()? {
        let count = u.int_in_range(0..=2)?;
        let mut calls = Vec::with_capacity(count);
        for j in 0..count {
            calls.push(json!({
                "id": format!("call_{i}_{j}"),
                "type": pick(u, &["function", "custom"])?,
                "function": {
                    "name": pick(u, TOOL_NAMES)?,
                    "arguments": if u.arbitrary()? { json!("{}") } else { value(u, 1)? },
                },
            }));
        }
        m.insert("tool_calls".into(), Value::Array(calls));
    }
    if u.arbitrary()? {
        // Often an id an earlier message's call carries.
        let id = if u.arbitrary()? {
            format!("call_{}_0", u.int_in_range(0..=i)?)
        } else {
            u.arbitrary()?
        };
        m.insert("tool_call_id".into(), json!(id));
    }
    if u.arbitrary()? {
        m.insert("name".into(), value(u, MAX_DEPTH)?);
    }
    Ok(Value::Object(m))
}

fn part(u: &mut Unstructured<'_>) -> Result<Value> {
    let kind = pick(u, PART_TYPES)?;
    let payload = match u.int_in_range(0..=2)? {
        0 => json!(u.arbitrary::<String>()?),
        1 => json!({
            "url": u.arbitrary::<String>()?,
            "detail": pick(u, &["auto", "low", "high", "max"])?,
            "data": "AAAA",
            "format": "wav",
        }),
        _ => value(u, 1)?,
    };
    let mut part = Map::new();
    part.insert("type".into(), json!(kind));
    part.insert(kind.into(), payload);
    Ok(Value::Object(part))
}

fn tool(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut function = Map::new();
    function.insert("name".into(), json!(pick(u, TOOL_NAMES)?));
    if u.arbitrary()? {
        function.insert("description".into(), value(u, MAX_DEPTH)?);
    }
    if u.arbitrary()? {
        function.insert("parameters".into(), schema(u, 0)?);
    }
    Ok(json!({ "type": pick(u, &["function", "function", "custom"])?, "function": function }))
}

/// A JSON Schema built from the keywords tool schemas use, valid or not.
fn schema(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    if depth >= MAX_DEPTH || u.ratio(1, 8)? {
        return value(u, MAX_DEPTH);
    }
    let mut s = Map::new();
    s.insert("type".into(), json!(pick(u, SCHEMA_TYPES)?));
    let keywords = u.int_in_range(0..=4)?;
    for _ in 0..keywords {
        match u.int_in_range(0..=13)? {
            0 => {
                let mut properties = Map::new();
                for _ in 0..u.int_in_range(0..=3)? {
                    properties.insert(u.arbitrary()?, schema(u, depth + 1)?);
                }
                s.insert("properties".into(), Value::Object(properties));
            }
            1 => {
                s.insert("required".into(), json!([pick(u, &["city", "days", "x"])?]));
            }
            2 => {
                s.insert("items".into(), schema(u, depth + 1)?);
            }
            3 => {
                s.insert("additionalProperties".into(), json!(u.arbitrary::<bool>()?));
            }
            4 => {
                s.insert("pattern".into(), json!(u.arbitrary::<String>()?));
            }
            5 => {
                s.insert("enum".into(), value(u, depth + 1)?);
            }
            6 => {
                let keyword = pick(
                    u,
                    &[
                        "minimum",
                        "maximum",
                        "minLength",
                        "maxLength",
                        "multipleOf",
                        "minItems",
                    ],
                )?;
                s.insert(keyword.into(), near(u, -1.0, 1.0)?);
            }
            7 => {
                let keyword = pick(u, &["anyOf", "oneOf", "allOf"])?;
                s.insert(
                    keyword.into(),
                    json!([schema(u, depth + 1)?, schema(u, depth + 1)?]),
                );
            }
            8 => {
                s.insert("$defs".into(), json!({ "a": schema(u, depth + 1)? }));
                s.insert(
                    "$ref".into(),
                    json!(pick(u, &["#/$defs/a", "#/$defs/b", "#", "other.json"])?),
                );
            }
            9 => {
                s.insert("const".into(), value(u, depth + 1)?);
            }
            10 => {
                s.insert(
                    "format".into(),
                    json!(pick(u, &["email", "date-time", "uri", "regex", "uuid"])?),
                );
            }
            11 => {
                s.insert("not".into(), schema(u, depth + 1)?);
            }
            12 => {
                s.insert(
                    "$schema".into(),
                    json!(pick(
                        u,
                        &[
                            "https://json-schema.org/draft/2020-12/schema",
                            "http://json-schema.org/draft-07/schema#",
                            "http://json-schema.org/draft-04/schema#",
                            "unknown",
                        ]
                    )?),
                );
            }
            _ => {
                s.insert(u.arbitrary()?, value(u, depth + 1)?);
            }
        }
    }
    Ok(Value::Object(s))
}

/// A number at, inside, just outside or far from `[low, high]`, as an
/// integer or a float.
fn near(u: &mut Unstructured<'_>, low: f64, high: f64) -> Result<Value> {
    let v = match u.int_in_range(0..=6)? {
        0 => low,
        1 => high,
        2 => low - 0.5,
        3 => high + 0.5,
        4 => low + (high - low) / 2.0,
        5 => f64::from(u.arbitrary::<i32>()?),
        _ => u.arbitrary::<f64>()?,
    };
    if u.arbitrary()? && v.fract() == 0.0 && v.abs() < 1e15 {
        // A small whole number: the cast is exact.
        return Ok(json!(v as i64));
    }
    Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
}

/// Any JSON value, nested at most to [`MAX_DEPTH`].
fn value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let leaf = depth >= MAX_DEPTH;
    Ok(match u.int_in_range(0..=if leaf { 4 } else { 6 })? {
        0 => Value::Null,
        1 => json!(u.arbitrary::<bool>()?),
        2 => near(u, -1.0, 1.0)?,
        3 => json!(u.arbitrary::<i64>()?),
        4 => json!(u.arbitrary::<String>()?),
        5 => {
            let count = u.int_in_range(0..=3)?;
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(value(u, depth + 1)?);
            }
            Value::Array(items)
        }
        _ => {
            let mut map = Map::new();
            for _ in 0..u.int_in_range(0..=3)? {
                map.insert(u.arbitrary()?, value(u, depth + 1)?);
            }
            Value::Object(map)
        }
    })
}

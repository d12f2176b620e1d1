//! Request validation and tool-call checks end to end: bad requests over real
//! HTTP and gRPC get OpenAI-shaped errors naming the field and never reach a
//! provider; a model's tool call that breaks the request's schema reaches the
//! client unchanged, marked in the response (header, body, last SSE chunk,
//! gRPC meta) and in the stored trace; a valid call is not marked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use futures::StreamExt;
use serde_json::{Value, json};
use support::{ControlPlane, DataPlane, http_client, sse_payloads};
use switchyard_proto::v1 as pb;
use switchyard_testkit::{Behavior, MockProvider};

const INVALID_HEADER: &str = "x-switchyard-invalid-tool-calls";

/// One OpenAI-compatible provider whose model may call tools.
fn registry(mock: &MockProvider) -> String {
    format!(
        r#"
providers:
  - {{ name: alpha, kind: openai, base_url: "{}", api_key_ref: "env:MOCK_API_KEY" }}
models:
  - {{ provider: alpha, name: mock-model, family: mock, capabilities: {{ streaming: true, tools: true }},
      context_window: 100000, input_price_per_mtok: 1.0, output_price_per_mtok: 2.0, tier: standard }}
"#,
        mock.base_url()
    )
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city"],
        },
    }})
}

fn weather_request(stream: bool) -> Value {
    json!({
        "model": "mock-model",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [weather_tool()],
        "stream": stream,
    })
}

async fn post(
    dp: &DataPlane,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = http_client().post(dp.chat_url()).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.unwrap()
}

/// Status and error body of a refused request, checked for OpenAI's shape.
async fn refused(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(e["type"], "invalid_request_error", "{body}");
    assert!(e["code"].is_string(), "{body}");
    (status, body)
}

#[tokio::test]
async fn bad_requests_get_openai_errors_naming_the_field_and_never_reach_a_provider() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry(&mock)).await.unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let valid = json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]});

    // Not JSON by its Content-Type: 415, before the body is looked at.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/json; charset=latin1"),
    ] {
        let (status, body) = refused(post(&dp, content_type, valid.to_string()).await).await;
        assert_eq!(status, 415, "{content_type:?}: {body}");
        assert_eq!(body["error"]["code"], "unsupported_media_type");
    }

    // Over --max-body-bytes (65536 here), declared or streamed: 413 naming the limit.
    let big = json!({"model": "mock-model", "messages": [{"role": "user", "content": "x".repeat(70_000)}]}).to_string();
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(8192)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    for body in [
        reqwest::Body::from(big.clone()),
        reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
    ] {
        let (status, error) = refused(post(&dp, Some("application/json"), body).await).await;
        assert_eq!(status, 413, "{error}");
        assert_eq!(error["error"]["code"], "payload_too_large");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("65536"),
            "{error}"
        );
    }

    let user = json!({"role": "user", "content": "x"});
    let call = json!({"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}});
    let with = |extra: Value| {
        let mut body = valid.clone();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (with(json!({"temperature": 2.5})), "temperature"),
        (with(json!({"top_p": 1.5})), "top_p"),
        (with(json!({"presence_penalty": -3})), "presence_penalty"),
        (with(json!({"max_tokens": 0})), "max_tokens"),
        (
            with(json!({"top_logprobs": 30, "logprobs": true})),
            "top_logprobs",
        ),
        (with(json!({"seed": 1.5})), "seed"),
        (with(json!({"stop": ["a", "b", "c", "d", "e"]})), "stop"),
        (
            with(json!({"response_format": {"type": "xml"}})),
            "response_format.type",
        ),
        (
            with(
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "answer"}}}),
            ),
            "response_format.json_schema.schema",
        ),
        (
            with(json!({"messages": vec![json!({"role": "user", "content": ""}); 2049]})),
            "messages",
        ),
        (
            with(json!({"messages": [user, {"role": "assistant", "content": null}]})),
            "messages[1].content",
        ),
        (
            with(json!({"messages": [user, {"role": "tool", "content": "18C"}]})),
            "messages[1].tool_call_id",
        ),
        (
            with(
                json!({"messages": [user, user, user, {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}]}),
            ),
            "messages[3].tool_calls[0].function.arguments",
        ),
        (
            with(
                json!({"messages": [user, {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_2", "content": "18C"}]}),
            ),
            "messages[2].tool_call_id",
        ),
        (
            with(json!({"tools": vec![weather_tool(); 2]})),
            "tools[1].function.name",
        ),
        (
            with(json!({"tools": [{"type": "function", "function": {"name": "get weather"}}]})),
            "tools[0].function.name",
        ),
        (
            with(
                json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]}),
            ),
            "tools[0].function.parameters",
        ),
        (with(json!({"tool_choice": "required"})), "tool_choice"),
        (
            with(
                json!({"tools": [weather_tool()], "tool_choice": {"type": "function", "function": {"name": "launch"}}}),
            ),
            "tool_choice.function.name",
        ),
    ];
    for (body, field) in cases {
        let (status, error) =
            refused(post(&dp, Some("application/json"), body.to_string()).await).await;
        assert_eq!(status, 400, "{field}: {error}");
        assert_eq!(error["error"]["param"], field, "{error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}: ")),
            "{error}"
        );
    }

    // gRPC runs the same rules, naming its own fields.
    let mut client = dp.inference().await;
    let status = client
        .complete(pb::CompleteRequest {
            model: "mock-model".into(),
            messages: vec![pb::ChatMessage {
                role: "user".into(),
                content: "hi".into(),
                ..Default::default()
            }],
            tools: vec![pb::ToolDefinition {
                name: "f".into(),
                parameters_json: r#"{"type":"objekt"}"#.into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("tools[0].parameters_json: "),
        "{}",
        status.message()
    );
    assert_eq!(
        mock.request_count(),
        0,
        "no bad request may reach a provider"
    );

    // Fields the gateway does not model pass through untouched.
    let response = post(
        &dp,
        Some("application/json; charset=utf-8"),
        with(json!({"seed": 7, "service_tier": "flex", "some_future_field": {"x": [1, 2]}}))
            .to_string(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let sent = &mock.requests()[0].body;
    assert_eq!(sent["seed"], 7);
    assert_eq!(sent["service_tier"], "flex");
    assert_eq!(sent["some_future_field"], json!({"x": [1, 2]}));
}

/// The invalid calls a response reports, as `(index, name, reason)`.
fn marked(switchyard: &Value) -> Vec<(u64, String, String)> {
    switchyard["invalid_tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["index"].as_u64().unwrap(),
                c["name"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn tool_calls_that_break_the_schema_are_marked_and_delivered_unchanged() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry(&mock)).await.unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let bad_arguments = r#"{"city": 42, "days": 0}"#;

    // Whole: header, body extension, trace; the call itself as the model made it.
    mock.push(Behavior::tool_call("get_weather", bad_arguments));
    let response = http_client()
        .post(dp.chat_url())
        .json(&weather_request(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[INVALID_HEADER], "1");
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], bad_arguments);
    let invalid = marked(&body["switchyard"]);
    assert_eq!(invalid.len(), 1, "{body}");
    let (index, name, reason) = &invalid[0];
    assert_eq!((*index, name.as_str()), (0, "get_weather"));
    assert!(
        reason.contains("/city") && reason.contains("/days"),
        "{reason}"
    );
    assert!(!reason.contains("42"), "argument values stay out: {reason}");
    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.outcome(), pb::Outcome::Success);
    assert_eq!(trace.invalid_tool_calls.len(), 1);
    assert_eq!(trace.invalid_tool_calls[0].index, 0);
    assert_eq!(trace.invalid_tool_calls[0].name, "get_weather");
    assert_eq!(&trace.invalid_tool_calls[0].reason, reason);

    // Streamed: the call assembled from its pieces is checked; the last chunk
    // before [DONE] carries the mark.
    mock.push(Behavior::tool_call("launch_rockets", r#"{"count": 3}"#));
    let response = http_client()
        .post(dp.chat_url())
        .json(&weather_request(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get(INVALID_HEADER).is_none(),
        "headers go before the answer"
    );
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let events = sse_payloads(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, r#"{"count": 3}"#, "the call streams unchanged");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    let invalid = marked(&last["switchyard"]);
    assert_eq!(invalid.len(), 1, "{last}");
    assert_eq!((invalid[0].0, invalid[0].1.as_str()), (0, "launch_rockets"));
    assert!(
        invalid[0].2.contains("not one of the request's tools"),
        "{}",
        invalid[0].2
    );
    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.invalid_tool_calls.len(), 1);
    assert_eq!(trace.invalid_tool_calls[0].name, "launch_rockets");

    // A valid call, whole and streamed, is not marked anywhere.
    for stream in [false, true] {
        mock.push(Behavior::tool_call(
            "get_weather",
            r#"{"city": "Paris", "days": 2}"#,
        ));
        let response = http_client()
            .post(dp.chat_url())
            .json(&weather_request(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().get(INVALID_HEADER).is_none());
        let trace_id = response.headers()["x-switchyard-trace-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let switchyard = if stream {
            let events = sse_payloads(&response.text().await.unwrap());
            events
                .iter()
                .filter_map(|e| serde_json::from_str::<Value>(e).ok())
                .find_map(|c| c.get("switchyard").cloned())
                .unwrap()
        } else {
            response.json::<Value>().await.unwrap()["switchyard"].clone()
        };
        assert!(
            switchyard.get("invalid_tool_calls").is_none(),
            "{switchyard}"
        );
        assert!(switchyard["trace_id"].is_string());
        let trace = cp.wait_for_trace(&trace_id).await;
        assert!(trace.invalid_tool_calls.is_empty(), "stream {stream}");
    }

    // gRPC: the response meta carries the marks, whole and at the stream's end.
    let request = pb::CompleteRequest {
        model: "mock-model".into(),
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: "Weather in Paris?".into(),
            ..Default::default()
        }],
        tools: vec![pb::ToolDefinition {
            name: "get_weather".into(),
            parameters_json: weather_tool()["function"]["parameters"].to_string(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut client = dp.inference().await;
    mock.push(Behavior::tool_call("get_weather", bad_arguments));
    let whole = client.complete(request.clone()).await.unwrap().into_inner();
    assert_eq!(whole.tool_calls[0].arguments_json, bad_arguments);
    let meta = whole.meta.unwrap();
    assert_eq!(meta.invalid_tool_calls.len(), 1);
    assert_eq!(meta.invalid_tool_calls[0].name, "get_weather");
    let trace = cp.wait_for_trace(&meta.trace_id).await;
    assert_eq!(trace.invalid_tool_calls, meta.invalid_tool_calls);

    mock.push(Behavior::tool_call("get_weather", "not json"));
    let mut stream = client.stream_complete(request).await.unwrap().into_inner();
    let mut end = None;
    while let Some(chunk) = stream.next().await {
        if let Some(pb::complete_chunk::Kind::End(e)) = chunk.unwrap().kind {
            end = Some(e);
        }
    }
    let meta = end.expect("the stream ends cleanly").meta.unwrap();
    assert_eq!(meta.invalid_tool_calls.len(), 1);
    assert!(
        meta.invalid_tool_calls[0].reason.contains("not valid JSON"),
        "{}",
        meta.invalid_tool_calls[0].reason
    );
}

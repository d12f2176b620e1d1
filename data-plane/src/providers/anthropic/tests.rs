//! Golden mapping, parsing and streaming tests, and calls to a mock over real HTTP.

use std::time::Instant;

use switchyard_testkit::{Behavior, MockAnthropic};

use super::*;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::providers::{StreamEvent, ToolCallDelta, Usage};
use crate::request::{test_request, test_workload};

/// A request carrying `body`, with no limit parsed out of it and a
/// workload that plans for 300 output tokens.
fn chat(body: Value) -> ChatRequest {
    let mut request = test_request("claude", None, test_workload(10, 300));
    request.max_tokens = None;
    request.body = body.as_object().cloned().unwrap();
    request
}

fn body_of(body: Value, stream: bool) -> Value {
    Value::Object(build_body(&chat(body), "claude-test", stream).unwrap())
}

#[test]
fn request_mapping_matches_the_golden_body() {
    let openai = json!({
        "model": "auto",
        "messages": [
            { "role": "system", "content": "You are terse." },
            { "role": "developer", "content": [{ "type": "text", "text": "Answer in French." }] },
            { "role": "user", "content": "What is in this picture?" },
            { "role": "user", "content": [
                { "type": "text", "text": "And this one?" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } },
                { "type": "image_url", "image_url": { "url": "https://example.com/cat.jpg", "detail": "high" } },
            ] },
            { "role": "assistant", "content": null, "tool_calls": [
                { "id": "call_1", "type": "function",
                  "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
                { "id": "call_2", "type": "function", "function": { "name": "now", "arguments": "" } },
            ] },
            { "role": "tool", "tool_call_id": "call_1", "content": "18C and sunny" },
            { "role": "tool", "tool_call_id": "call_2", "content": [{ "type": "text", "text": "no clock" }] },
            { "role": "user", "content": "Thanks. Summarise." },
            { "role": "assistant", "content": "Il fait" },
        ],
        "tools": [
            { "type": "function", "function": {
                "name": "get_weather",
                "description": "Weather by city",
                "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] },
            } },
            { "type": "function", "function": { "name": "now" } },
        ],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": "\n\nUser:",
        "max_tokens": 200,
        "user": "u-42",
        "stream_options": { "include_usage": true },
    });
    let expected = json!({
        "model": "claude-test",
        "max_tokens": 200,
        "system": "You are terse.\n\nAnswer in French.",
        "messages": [
            { "role": "user", "content": [
                { "type": "text", "text": "What is in this picture?" },
                { "type": "text", "text": "And this one?" },
                { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } },
                { "type": "image", "source": { "type": "url", "url": "https://example.com/cat.jpg" } },
            ] },
            { "role": "assistant", "content": [
                { "type": "tool_use", "id": "call_1", "name": "get_weather", "input": { "city": "Paris" } },
                { "type": "tool_use", "id": "call_2", "name": "now", "input": {} },
            ] },
            { "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": "call_1", "content": "18C and sunny" },
                { "type": "tool_result", "tool_use_id": "call_2", "content": "no clock" },
                { "type": "text", "text": "Thanks. Summarise." },
            ] },
            { "role": "assistant", "content": "Il fait" },
        ],
        "tools": [
            { "name": "get_weather", "description": "Weather by city",
              "input_schema": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } },
            { "name": "now", "input_schema": { "type": "object", "properties": {} } },
        ],
        "tool_choice": { "type": "any", "disable_parallel_tool_use": true },
        "temperature": 0.3,
        "top_p": 0.9,
        "stop_sequences": ["\n\nUser:"],
        "metadata": { "user_id": "u-42" },
        "stream": true,
    });
    assert_eq!(body_of(openai, true), expected);
}

#[test]
fn plain_conversations_keep_string_content() {
    let body = body_of(
        json!({ "messages": [
            { "role": "user", "content": "hi" },
            { "role": "assistant", "content": "hello" },
            { "role": "user", "content": "bye" },
        ], "stop": ["a", "b"], "temperature": 1.7 }),
        false,
    );
    assert_eq!(
        body,
        json!({
            "model": "claude-test",
            "max_tokens": 300,
            "messages": [
                { "role": "user", "content": "hi" },
                { "role": "assistant", "content": "hello" },
                { "role": "user", "content": "bye" },
            ],
            "stop_sequences": ["a", "b"],
            "temperature": 1.0,
            "stream": false,
        })
    );
}

#[test]
fn max_tokens_comes_from_the_request_or_else_the_workload() {
    let messages = json!([{ "role": "user", "content": "hi" }]);
    let limit = |body: Value, parsed: Option<u32>| {
        let mut request = chat(body);
        request.max_tokens = parsed;
        build_body(&request, "m", false).unwrap()["max_tokens"].clone()
    };
    assert_eq!(limit(json!({ "messages": messages }), None), 300);
    assert_eq!(limit(json!({ "messages": messages }), Some(42)), 42);
    assert_eq!(
        limit(
            json!({ "messages": messages, "max_tokens": 7, "max_completion_tokens": 9 }),
            None
        ),
        9
    );
    assert_eq!(
        limit(json!({ "messages": messages, "max_tokens": 7 }), None),
        7
    );
}

#[test]
fn tool_choices_map_to_anthropic_ones() {
    let choice = |extra: Value| {
        let mut body = json!({
            "messages": [{ "role": "user", "content": "hi" }],
            "tools": [{ "type": "function", "function": { "name": "f" } }],
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body_of(body, false).get("tool_choice").cloned()
    };
    assert_eq!(choice(json!({})), None);
    assert_eq!(
        choice(json!({ "tool_choice": "auto" })),
        Some(json!({ "type": "auto" }))
    );
    assert_eq!(
        choice(json!({ "tool_choice": "none" })),
        Some(json!({ "type": "none" }))
    );
    assert_eq!(
        choice(json!({ "tool_choice": { "type": "function", "function": { "name": "f" } } })),
        Some(json!({ "type": "tool", "name": "f" }))
    );
    assert_eq!(
        choice(json!({ "parallel_tool_calls": false })),
        Some(json!({ "type": "auto", "disable_parallel_tool_use": true }))
    );
    // Without tools there is nothing to choose from.
    let body = body_of(
        json!({ "messages": [{ "role": "user", "content": "hi" }], "tool_choice": "auto" }),
        false,
    );
    assert!(body.get("tool_choice").is_none() && body.get("tools").is_none());
}

#[test]
fn inputs_anthropic_cannot_take_are_refused() {
    let class = |message: Value| {
        build_body(&chat(json!({ "messages": [message] })), "m", false)
            .unwrap_err()
            .class
    };
    // Another provider may take these.
    assert_eq!(
        class(json!({ "role": "user", "content": [{ "type": "input_audio", "input_audio": {} }] })),
        ErrorClass::Configuration
    );
    assert_eq!(
        class(json!({ "role": "function", "name": "f", "content": "x" })),
        ErrorClass::Configuration
    );
    // No provider can use these.
    assert_eq!(
        class(json!({ "role": "assistant", "tool_calls": [
            { "id": "c", "type": "function", "function": { "name": "f", "arguments": "{oops" } }
        ] })),
        ErrorClass::Content
    );
    assert_eq!(
        class(json!({ "role": "tool", "content": "x" })),
        ErrorClass::Content
    );
    assert_eq!(
        class(json!({ "role": "user", "content": [
            { "type": "image_url", "image_url": { "url": "data:image/png,notbase64" } }
        ] })),
        ErrorClass::Content
    );
    assert_eq!(
        class(json!({ "role": "user", "content": [
            { "type": "image_url", "image_url": { "url": "file:///etc/passwd" } }
        ] })),
        ErrorClass::Content
    );
}

#[test]
fn messages_are_parsed_and_stop_reasons_mapped() {
    let completion = parse_message(
        br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude",
            "content":[{"type":"thinking","thinking":"hmm","signature":"s"},
                       {"type":"text","text":"Hello "},
                       {"type":"tool_use","id":"toolu_1","name":"f","input":{}},
                       {"type":"text","text":"world"}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":10,"cache_creation_input_tokens":null,
                     "cache_read_input_tokens":5,"output_tokens":7}}"#,
    )
    .unwrap();
    assert_eq!(completion.content, "Hello world");
    assert_eq!(completion.finish_reason, "tool_calls");
    assert_eq!(
        completion.usage,
        Some(Usage {
            input_tokens: 15,
            output_tokens: 7
        })
    );
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        let body = format!(r#"{{"content":[],"stop_reason":"{stop}"}}"#);
        let completion = parse_message(body.as_bytes()).unwrap();
        assert_eq!(completion.finish_reason, finish, "{stop}");
        assert_eq!(completion.usage, None);
    }
    assert_eq!(
        parse_message(b"{not json").unwrap_err().class,
        ErrorClass::Protocol
    );
    assert_eq!(
        parse_message(b"{}").unwrap_err().class,
        ErrorClass::Protocol
    );
}

#[test]
fn error_bodies_keep_the_provider_message_and_class() {
    let e = status_error(
        529,
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    );
    assert_eq!(
        (e.class, e.http_status, e.message.as_str()),
        (ErrorClass::Transient, 529, "Overloaded")
    );
    let e = status_error(
        429,
        br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
    );
    assert_eq!(e.class, ErrorClass::RateLimited);
    let e = status_error(
        401,
        br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
    );
    assert_eq!(
        (e.class, e.message.as_str()),
        (ErrorClass::Auth, "invalid x-api-key")
    );
    let e = status_error(
        400,
        br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
    );
    assert_eq!(
        (e.class, e.message.as_str()),
        (
            ErrorClass::ContextLength,
            "prompt is too long: 210000 tokens > 200000 maximum"
        )
    );
    let long =
        json!({ "type": "error", "error": { "type": "api_error", "message": "é".repeat(400) } });
    let e = status_error(500, long.to_string().as_bytes());
    assert_eq!(e.message.chars().count(), http::MAX_ERROR_MESSAGE / 2 + 1);
    assert!(e.message.ends_with('…'));
    let e = status_error(502, b"<html>bad gateway</html>");
    assert_eq!(
        (e.class, e.message.as_str()),
        (ErrorClass::Transient, "provider answered HTTP 502")
    );
}

/// Events with errors reduced to something comparable.
type Outcome = Result<StreamEvent, (ErrorClass, String)>;

async fn events_of(pieces: Vec<Vec<u8>>) -> Vec<Outcome> {
    let body: ByteStream = Box::pin(futures::stream::iter(
        pieces.into_iter().map(|p| Ok(Bytes::from(p))),
    ));
    sse_events(body, Duration::from_secs(5))
        .map(|r| r.map_err(|e| (e.class, e.message)))
        .collect()
        .await
}

async fn events_whole(raw: &[u8]) -> Vec<Outcome> {
    events_of(vec![raw.to_vec()]).await
}

/// A stream as Anthropic sends it: a text block, then a tool_use block (the
/// second block, the first tool call) whose input arrives as JSON pieces.
const RECORDED: &str = concat!(
    "event: message_start\n",
    r#"data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
    "\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    "\n\n",
    "event: ping\n",
    r#"data: {"type": "ping"}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Bonjour"}}"#,
    "\n\n",
    "event: content_block_delta\r\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", ça va ?"}}"#,
    "\r\n\r\n",
    "event: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":0}"#,
    "\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
    "\n\n",
    "event: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":1}"#,
    "\n\n",
    "event: message_delta\n",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":12}}"#,
    "\n\n",
    "event: message_stop\n",
    r#"data: {"type":"message_stop"}"#,
    "\n\n",
);

#[tokio::test]
async fn recorded_stream_parses_the_same_split_anywhere() {
    let raw = RECORDED.as_bytes();
    let whole = events_whole(raw).await;
    assert_eq!(
        whole,
        vec![
            Ok(StreamEvent::Delta("Bonjour".into())),
            Ok(StreamEvent::Delta(", ça va ?".into())),
            Ok(StreamEvent::ToolCall(ToolCallDelta {
                index: 0,
                id: Some("toolu_1".into()),
                name: Some("f".into()),
                arguments: String::new(),
            })),
            Ok(StreamEvent::ToolCall(ToolCallDelta {
                index: 0,
                arguments: "{\"a\":".into(),
                ..ToolCallDelta::default()
            })),
            Ok(StreamEvent::Finish {
                finish_reason: "length".into(),
                usage: Some(Usage {
                    input_tokens: 25,
                    output_tokens: 12
                }),
            }),
        ]
    );
    for cut in 1..raw.len() {
        let (a, b) = raw.split_at(cut);
        assert_eq!(
            events_of(vec![a.to_vec(), b.to_vec()]).await,
            whole,
            "cut at {cut}"
        );
    }
    let bytes: Vec<Vec<u8>> = raw.iter().map(|b| vec![*b]).collect();
    assert_eq!(events_of(bytes).await, whole, "one byte at a time");
}

#[tokio::test]
async fn garbage_and_dropped_streams_are_protocol_errors() {
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n";
    let delta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";

    let events =
        events_whole(format!("{start}event: content_block_delta\ndata: {{garbage\n\n").as_bytes())
            .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].as_ref().unwrap_err().0, ErrorClass::Protocol);

    // Well-formed JSON of the wrong shape is no better.
    let events = events_whole(b"data: {\"type\":\"content_block_delta\"}\n\n").await;
    assert_eq!(events[0].as_ref().unwrap_err().0, ErrorClass::Protocol);

    let events = events_whole(format!("{start}{delta}").as_bytes()).await;
    assert_eq!(
        events,
        vec![
            Ok(StreamEvent::Delta("Hi".into())),
            Err((
                ErrorClass::Protocol,
                "provider stream ended before message_stop".into()
            )),
        ]
    );
}

#[tokio::test]
async fn error_events_end_the_stream_with_their_class() {
    for (kind, class) in [
        ("overloaded_error", ErrorClass::Transient),
        ("api_error", ErrorClass::Transient),
        ("rate_limit_error", ErrorClass::RateLimited),
        ("authentication_error", ErrorClass::Auth),
        ("invalid_request_error", ErrorClass::Content),
    ] {
        let raw = format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"Hi\"}}}}\n\n\
             event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":\"bad {kind}\"}}}}\n\n\
             event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        );
        assert_eq!(
            events_whole(raw.as_bytes()).await,
            vec![
                Ok(StreamEvent::Delta("Hi".into())),
                Err((class, format!("bad {kind}"))),
            ],
            "{kind}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_stream_times_out() {
    let body: ByteStream = Box::pin(futures::stream::pending());
    let events: Vec<_> = sse_events(body, Duration::from_secs(3)).collect().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].as_ref().unwrap_err().class, ErrorClass::Timeout);
}

// End to end, over real HTTP against the test kit's mock.

fn client() -> reqwest::Client {
    // reqwest is built without a TLS provider and refuses to build a
    // client until one is installed, even for plain http://.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn endpoint(mock: &MockAnthropic) -> AnthropicEndpoint {
    AnthropicEndpoint::new(
        &format!("{}/", mock.base_url()),
        Some(SecretString::from("sk-ant-test".to_owned())),
        BTreeMap::from([("anthropic-beta".to_owned(), "test-beta".to_owned())]),
    )
}

fn hello() -> ChatRequest {
    chat(json!({ "messages": [
        { "role": "system", "content": "be brief" },
        { "role": "user", "content": "say hello to me" },
    ] }))
}

const SECS: Duration = Duration::from_secs(5);

#[tokio::test]
async fn complete_against_the_mock() {
    let mock = MockAnthropic::start().await.unwrap();
    let completion = endpoint(&mock)
        .complete(&client(), &hello(), "claude-test", SECS)
        .await
        .unwrap();
    assert_eq!(completion.content, Behavior::DEFAULT_TEXT);
    assert_eq!(completion.finish_reason, "stop");
    assert_eq!(
        completion.usage,
        Some(Usage {
            input_tokens: 6,
            output_tokens: 5
        })
    );

    let received = &mock.requests()[0];
    assert_eq!(received.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(received.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(received.header("anthropic-beta"), Some("test-beta"));
    assert_eq!(received.header("content-type"), Some("application/json"));
    assert_eq!(received.authorization, None);
    assert_eq!(
        received.body,
        json!({
            "model": "claude-test",
            "max_tokens": 300,
            "system": "be brief",
            "messages": [{ "role": "user", "content": "say hello to me" }],
            "stream": false,
        })
    );
}

#[tokio::test]
async fn stream_against_the_mock() {
    let mock = MockAnthropic::start().await.unwrap();
    mock.push(Behavior::Reply {
        text: "one two three".into(),
    });
    let events: Vec<_> = endpoint(&mock)
        .stream(&client(), &hello(), "claude-test", SECS)
        .await
        .unwrap()
        .map(|r| r.map_err(|e| (e.class, e.message)))
        .collect()
        .await;
    assert_eq!(
        events,
        vec![
            Ok(StreamEvent::Delta("one ".into())),
            Ok(StreamEvent::Delta("two ".into())),
            Ok(StreamEvent::Delta("three".into())),
            Ok(StreamEvent::Finish {
                finish_reason: "stop".into(),
                usage: Some(Usage {
                    input_tokens: 6,
                    output_tokens: 3
                }),
            }),
        ]
    );
    assert_eq!(mock.requests()[0].body["stream"], true);
    assert_eq!(mock.cancelled_streams(), 0);
}

#[tokio::test]
async fn overloaded_is_transient_and_a_bad_key_is_auth() {
    let mock = MockAnthropic::start().await.unwrap();
    let status = |status: u16, message: &str| Behavior::Status {
        status,
        message: message.into(),
        retry_after_secs: None,
    };
    mock.push(Behavior::Status {
        status: 529,
        message: "Overloaded".into(),
        retry_after_secs: Some(2),
    });
    mock.push(status(529, "Overloaded"));
    mock.push(status(401, "invalid x-api-key"));
    mock.push(status(401, "invalid x-api-key"));
    let (endpoint, client) = (endpoint(&mock), client());

    let e = endpoint
        .complete(&client, &hello(), "m", SECS)
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.http_status, e.message.as_str()),
        (ErrorClass::Transient, 529, "Overloaded")
    );
    assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    let Err(e) = endpoint.stream(&client, &hello(), "m", SECS).await else {
        panic!("a 529 stream is refused");
    };
    assert_eq!((e.class, e.http_status), (ErrorClass::Transient, 529));
    assert_eq!(e.retry_after, None);

    let e = endpoint
        .complete(&client, &hello(), "m", SECS)
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.http_status, e.message.as_str()),
        (ErrorClass::Auth, 401, "invalid x-api-key")
    );
    let Err(e) = endpoint.stream(&client, &hello(), "m", SECS).await else {
        panic!("a 401 stream is refused");
    };
    assert_eq!((e.class, e.http_status), (ErrorClass::Auth, 401));
}

#[tokio::test]
async fn mock_faults_surface_as_errors() {
    let mock = MockAnthropic::start().await.unwrap();
    let (endpoint, client) = (endpoint(&mock), client());

    mock.push(Behavior::Garbage);
    let e = endpoint
        .complete(&client, &hello(), "m", SECS)
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Protocol);

    mock.push(Behavior::Garbage);
    let events: Vec<_> = endpoint
        .stream(&client, &hello(), "m", SECS)
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].as_ref().unwrap_err().class, ErrorClass::Protocol);

    mock.push(Behavior::DropStreamAfter { chunks: 2 });
    let events: Vec<_> = endpoint
        .stream(&client, &hello(), "m", SECS)
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[0].as_ref().unwrap(),
        &StreamEvent::Delta("Hello ".into())
    );
    assert_eq!(
        events[1].as_ref().unwrap(),
        &StreamEvent::Delta("from ".into())
    );
    assert!(events[2].is_err(), "a dropped stream does not finish");

    mock.push(Behavior::Delay {
        delay: Duration::from_secs(2),
        then: Box::new(Behavior::Ok),
    });
    let started = Instant::now();
    let e = endpoint
        .complete(&client, &hello(), "m", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let mock = MockAnthropic::start().await.unwrap();
    mock.push(Behavior::Reply {
        text: vec!["word"; 400].join(" "),
    });
    let mut events = endpoint(&mock)
        .stream(&client(), &hello(), "m", SECS)
        .await
        .unwrap();
    assert!(matches!(
        events.next().await,
        Some(Ok(StreamEvent::Delta(_)))
    ));
    drop(events);
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.cancelled_streams() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mock.cancelled_streams(), 1);
}

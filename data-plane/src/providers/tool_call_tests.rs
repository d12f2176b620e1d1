//! Tool calls through every adapter, against the test kit's mock providers
//! over real HTTP: whole and streamed, they come out as the same OpenAI calls.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use switchyard_testkit::{Behavior, MockAnthropic, MockOllama, MockProvider, TOOL_PREAMBLE};

use super::{Endpoint, StreamEvent, ToolCall};
use crate::request::ChatRequest;

const ARGUMENTS: &str = r#"{"city":"Zürich","days":3}"#;
const TIMEOUT: Duration = Duration::from_secs(5);

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn weather_request() -> ChatRequest {
    let body = json!({
        "model": "auto",
        "messages": [{ "role": "user", "content": "weather in Zürich?" }],
        "tools": [{ "type": "function", "function": {
            "name": "get_weather",
            "parameters": { "type": "object", "properties": { "city": { "type": "string" } } },
        } }],
    });
    let mut request =
        crate::request::test_request("auto", None, crate::request::test_workload(8, 16));
    request.body = body.as_object().cloned().unwrap_or_default();
    request
}

/// Streamed pieces put back together as OpenAI clients do: by index, the
/// first piece's id and name, the arguments concatenated.
fn assemble(events: &[StreamEvent]) -> (String, Vec<ToolCall>, String) {
    let mut text = String::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut finish = String::new();
    for event in events {
        match event {
            StreamEvent::Delta(t) => text.push_str(t),
            StreamEvent::ToolCall(piece) => {
                let i = piece.index as usize;
                if calls.len() <= i {
                    calls.resize(i + 1, ToolCall::default());
                }
                if let Some(id) = &piece.id {
                    calls[i].id.clone_from(id);
                }
                if let Some(name) = &piece.name {
                    calls[i].name.clone_from(name);
                }
                calls[i].arguments.push_str(&piece.arguments);
            }
            StreamEvent::Finish { finish_reason, .. } => finish.clone_from(finish_reason),
        }
    }
    (text, calls, finish)
}

/// One provider's answers to the weather request, whole and streamed.
async fn both_ways(
    endpoint: &Endpoint,
) -> (
    (String, Vec<ToolCall>, String),
    (String, Vec<ToolCall>, String),
) {
    let request = weather_request();
    let whole = endpoint
        .complete(&client(), &request, "m", TIMEOUT)
        .await
        .unwrap();
    let events: Vec<StreamEvent> = endpoint
        .stream(&client(), &request, "m", TIMEOUT)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    (
        (whole.content, whole.tool_calls, whole.finish_reason),
        assemble(&events),
    )
}

fn assert_weather_call(calls: &[ToolCall], id_prefix: &str) {
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].id.starts_with(id_prefix), "{calls:?}");
    assert_eq!(calls[0].name, "get_weather");
    let arguments: Value = serde_json::from_str(&calls[0].arguments).unwrap();
    assert_eq!(arguments, serde_json::from_str::<Value>(ARGUMENTS).unwrap());
}

#[tokio::test]
async fn openai_tool_calls_survive_whole_and_streamed() {
    let mock = MockProvider::start().await.unwrap();
    mock.set_default(Behavior::tool_call("get_weather", ARGUMENTS));
    let endpoint = Endpoint::OpenAi(super::openai::OpenAiEndpoint::new(
        &mock.base_url(),
        None,
        BTreeMap::new(),
    ));
    let (whole, streamed) = both_ways(&endpoint).await;
    for (text, calls, finish) in [&whole, &streamed] {
        assert_eq!(text, "");
        assert_eq!(finish, "tool_calls");
        assert_weather_call(calls, "call_");
    }
    // OpenAI's ids pass through unchanged, and the streamed arguments came in pieces.
    assert_eq!(whole.1[0].id, "call_mock000001");
    assert_eq!(streamed.1[0].arguments, ARGUMENTS);
}

#[tokio::test]
async fn anthropic_tool_use_becomes_tool_calls_whole_and_streamed() {
    let mock = MockAnthropic::start().await.unwrap();
    mock.set_default(Behavior::tool_call("get_weather", ARGUMENTS));
    let endpoint = Endpoint::Anthropic(super::anthropic::AnthropicEndpoint::new(
        &mock.base_url(),
        None,
        BTreeMap::new(),
    ));
    let (whole, streamed) = both_ways(&endpoint).await;
    for (text, calls, finish) in [&whole, &streamed] {
        assert_eq!(text, TOOL_PREAMBLE);
        assert_eq!(finish, "tool_calls");
        assert_weather_call(calls, "toolu_");
    }
    // The tool_use block is the message's second block: still call 0 for OpenAI clients.
    let sent = &mock.requests()[0].body;
    assert_eq!(sent["tools"][0]["name"], "get_weather");
}

#[tokio::test]
async fn ollama_tool_calls_get_ids_whole_and_streamed() {
    let mock = MockOllama::start().await.unwrap();
    mock.set_default(Behavior::tool_call("get_weather", ARGUMENTS));
    let endpoint = Endpoint::Ollama(super::ollama::OllamaEndpoint::new(
        &mock.base_url(),
        None,
        BTreeMap::new(),
    ));
    let (whole, streamed) = both_ways(&endpoint).await;
    for (text, calls, finish) in [&whole, &streamed] {
        assert_eq!(text, "");
        // Ollama says "stop"; OpenAI clients expect "tool_calls".
        assert_eq!(finish, "tool_calls");
        assert_weather_call(calls, "call_");
    }
    assert_ne!(whole.1[0].id, streamed.1[0].id, "ids are unique per call");
}

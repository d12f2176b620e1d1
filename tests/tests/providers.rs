//! Every provider kind through the gateway, over real HTTP: clients speak
//! OpenAI to Switchyard; Switchyard speaks each provider's own protocol.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use serde_json::{Value, json};
use support::{ControlPlane, DataPlane, MOCK_KEY, http_client, sse_data};
use switchyard_proto::v1 as pb;
use switchyard_testkit::{Behavior, MockAnthropic, MockOllama};

fn registry(anthropic: &str, ollama: &str) -> String {
    format!(
        r#"
providers:
  - {{ name: claude, kind: anthropic, base_url: "{anthropic}", api_key_ref: "env:MOCK_API_KEY" }}
  - {{ name: local, kind: ollama, base_url: "{ollama}" }}
models:
  - {{ provider: claude, name: claude-test, family: claude, capabilities: {{ streaming: true, tools: true }}, context_window: 200000,
      input_price_per_mtok: 3.0, output_price_per_mtok: 15.0, tier: frontier }}
  - {{ provider: local, name: llama-test, family: llama, capabilities: {{ streaming: true }}, context_window: 32000,
      input_price_per_mtok: 0.0, output_price_per_mtok: 0.0, tier: economy }}
"#
    )
}

fn chat(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "max_tokens": 64,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
    })
}

async fn started() -> (MockAnthropic, MockOllama, ControlPlane, DataPlane) {
    let anthropic = MockAnthropic::start().await.unwrap();
    let ollama = MockOllama::start().await.unwrap();
    let cp = ControlPlane::start(&registry(&anthropic.base_url(), &ollama.base_url()))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    (anthropic, ollama, cp, dp)
}

fn streamed_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|c| {
            c["choices"]
                .get(0)
                .and_then(|ch| ch["delta"]["content"].as_str())
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn anthropic_answers_openai_clients_as_json_and_as_a_stream() {
    let (anthropic, _ollama, cp, dp) = started().await;
    anthropic.push(Behavior::Reply {
        text: "Hello from Claude".into(),
    });
    let response = http_client()
        .post(dp.chat_url())
        .json(&chat("claude-test", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from Claude"
    );
    assert_eq!(body["usage"]["completion_tokens"], 3);

    // The provider got its own dialect: key header, top-level system, max_tokens.
    let seen = &anthropic.requests()[0];
    assert_eq!(seen.header("x-api-key"), Some(MOCK_KEY));
    assert_eq!(seen.body["system"], "Be brief.");
    assert_eq!(seen.body["max_tokens"], 64);
    assert_eq!(seen.body["messages"][0]["role"], "user");
    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.final_target, "claude/claude-test");
    assert_eq!(trace.tokens_out, 3);

    anthropic.push(Behavior::Reply {
        text: "streamed from Claude".into(),
    });
    let response = http_client()
        .post(dp.chat_url())
        .json(&chat("claude-test", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_data(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&events), "streamed from Claude");
}

#[tokio::test]
async fn ollama_answers_openai_clients_as_json_and_as_a_stream() {
    let (_anthropic, ollama, cp, dp) = started().await;
    ollama.push(Behavior::Reply {
        text: "Hello from llama".into(),
    });
    let response = http_client()
        .post(dp.chat_url())
        .json(&chat("llama-test", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from llama");
    let seen = &ollama.requests()[0];
    assert_eq!(seen.body["model"], "llama-test");
    assert_eq!(seen.body["stream"], false);
    assert_eq!(seen.body["options"]["num_predict"], 64);
    assert_eq!(
        cp.wait_for_trace(&trace_id).await.final_target,
        "local/llama-test"
    );

    ollama.push(Behavior::Reply {
        text: "streamed from llama".into(),
    });
    let response = http_client()
        .post(dp.chat_url())
        .json(&chat("llama-test", true))
        .send()
        .await
        .unwrap();
    let events = sse_data(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&events), "streamed from llama");
}

#[tokio::test]
async fn a_failing_anthropic_target_falls_back_to_ollama() {
    let (anthropic, ollama, cp, dp) = started().await;
    anthropic.set_default(Behavior::Status {
        status: 529,
        message: "overloaded".into(),
        retry_after_secs: None,
    });
    ollama.push(Behavior::Reply {
        text: "llama to the rescue".into(),
    });
    let mut body = chat("auto", false);
    body["metadata"] = json!({"switchyard_strategy": "quality"});
    let response = http_client()
        .post(dp.chat_url())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "llama to the rescue"
    );
    let trace = cp.wait_for_trace(&trace_id).await;
    let classes: Vec<(String, i32)> = trace
        .attempts
        .iter()
        .map(|a| (a.target_id.clone(), a.error_class))
        .collect();
    assert_eq!(
        classes[0],
        (
            "claude/claude-test".to_owned(),
            i32::from(pb::ErrorClass::Transient)
        )
    );
    assert_eq!(classes.last().unwrap().0, "local/llama-test");
}

/// Claude's `tool_use` reaches gRPC clients as tool calls: whole from
/// `Complete`, in pieces from `StreamComplete`, and the trace counts the
/// streamed call's tokens.
#[tokio::test]
async fn anthropic_tool_calls_reach_grpc_clients_whole_and_streamed() {
    let (anthropic, _ollama, cp, dp) = started().await;
    let arguments = r#"{"city":"Paris","unit":"celsius"}"#;
    anthropic.set_default(Behavior::tool_call("get_weather", arguments));
    let request = pb::CompleteRequest {
        model: "auto".into(),
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: "Weather in Paris?".into(),
            ..Default::default()
        }],
        tools: vec![pb::ToolDefinition {
            name: "get_weather".into(),
            description: "Current weather".into(),
            parameters_json: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#.into(),
        }],
        ..Default::default()
    };
    let mut client = dp.inference().await;
    let whole = client.complete(request.clone()).await.unwrap().into_inner();
    assert_eq!(whole.finish_reason, "tool_calls");
    assert_eq!(whole.tool_calls.len(), 1);
    assert_eq!(whole.tool_calls[0].name, "get_weather");
    assert_eq!(whole.tool_calls[0].arguments_json, arguments);
    assert!(whole.tool_calls[0].id.starts_with("toolu_"));

    let mut stream = client.stream_complete(request).await.unwrap().into_inner();
    let mut pieces = Vec::new();
    let mut end = None;
    while let Some(chunk) = stream.message().await.unwrap() {
        match chunk.kind.unwrap() {
            pb::complete_chunk::Kind::ToolCall(piece) => pieces.push(piece),
            pb::complete_chunk::Kind::End(e) => end = Some(e),
            pb::complete_chunk::Kind::Delta(_) => {}
        }
    }
    let end = end.expect("the stream ends cleanly");
    assert_eq!(end.finish_reason, "tool_calls");
    assert!(pieces.len() > 2, "arguments arrive in pieces: {pieces:?}");
    assert!(pieces.iter().all(|p| p.index == 0));
    assert_eq!(pieces[0].name, "get_weather");
    assert!(
        pieces[1..]
            .iter()
            .all(|p| p.id.is_empty() && p.name.is_empty())
    );
    let assembled: String = pieces.iter().map(|p| p.arguments_json.as_str()).collect();
    assert_eq!(assembled, arguments);

    let trace = cp.wait_for_trace(&end.meta.unwrap().trace_id).await;
    assert_eq!(trace.final_target, "claude/claude-test");
    assert!(trace.tokens_out > 0 && trace.cost_usd > 0.0, "{trace:?}");
}

/// The raw SSE a client reads: OpenAI's tool-call delta shape, id, type and
/// name on the first piece only.
#[tokio::test]
async fn streamed_tool_calls_have_openai_chunk_shape() {
    let (anthropic, _ollama, _cp, dp) = started().await;
    anthropic.set_default(Behavior::tool_call("lookup", r#"{"q":"cats"}"#));
    // "auto" with tools: only Claude qualifies, and the chunks name it.
    let mut body = chat("auto", true);
    body["tools"] = json!([{ "type": "function", "function": { "name": "lookup" } }]);
    let response = http_client()
        .post(dp.chat_url())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_data(response).await;
    let chunks: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"].get("tool_calls"))
        .map(|calls| &calls[0])
        .collect();
    assert!(
        chunks.iter().all(|c| c["model"] == "claude-test"),
        "{chunks:?}"
    );
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "lookup");
    assert!(calls[0]["id"].as_str().unwrap().starts_with("toolu_"));
    assert!(
        calls[1..]
            .iter()
            .all(|c| c.get("id").is_none() && c["function"].get("name").is_none())
    );
    let arguments: String = calls
        .iter()
        .map(|c| c["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(arguments, r#"{"q":"cats"}"#);
    assert_eq!(streamed_text(&events), switchyard_testkit::TOOL_PREAMBLE);
    let finish = chunks.iter().find_map(|c| {
        c["choices"].get(0)?["finish_reason"]
            .as_str()
            .map(str::to_owned)
    });
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

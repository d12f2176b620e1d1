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

//! Hedged requests against real mock providers over HTTP: a primary slow to
//! its first token is raced by the next candidate, the first to answer wins,
//! and the loser's connection is closed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{ControlPlane, DataPlane, http_client, sse_payloads};
use switchyard_proto::v1 as pb;
use switchyard_testkit::{Behavior, MockProvider};

/// Two economy targets (a p95 first-token prior of 600 ms, under the harness's
/// 1 s first-token limit), "slow" the cheaper, and a hedged cost strategy.
fn registry(slow: &str, fast: &str) -> String {
    format!(
        r#"
providers:
  - {{ name: slow, kind: openai, base_url: "{slow}", api_key_ref: "env:MOCK_API_KEY" }}
  - {{ name: fast, kind: openai, base_url: "{fast}", api_key_ref: "env:MOCK_API_KEY" }}
models:
  - {{ provider: slow, name: mock-model, family: a, capabilities: {{ streaming: true, tools: true }},
      context_window: 100000, input_price_per_mtok: 0.1, output_price_per_mtok: 0.2, tier: economy }}
  - {{ provider: fast, name: mock-model, family: b, capabilities: {{ streaming: true, tools: true }},
      context_window: 100000, input_price_per_mtok: 5.0, output_price_per_mtok: 10.0, tier: economy }}
strategies:
  - name: hedged-cost
    weights: {{ quality: 0.0, speed: 0.0, cost: 1.0, health: 0.0, workspace_fit: 0.0 }}
    hedging: {{ max_share: 0.5 }}
"#
    )
}

async fn started() -> (MockProvider, MockProvider, ControlPlane, DataPlane) {
    let slow = MockProvider::start().await.unwrap();
    let fast = MockProvider::start().await.unwrap();
    slow.set_default(Behavior::SlowFirstToken {
        delay: Duration::from_secs(5),
        then: Box::new(Behavior::Reply {
            text: "slow answer".into(),
        }),
    });
    fast.set_default(Behavior::Reply {
        text: "fast answer".into(),
    });
    let cp = ControlPlane::start(&registry(&slow.base_url(), &fast.base_url()))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    (slow, fast, cp, dp)
}

fn chat(stream: bool) -> Value {
    json!({
        "model": "mock-model",
        "stream": stream,
        "max_tokens": 16,
        "messages": [{ "role": "user", "content": "hello" }],
        "metadata": { "switchyard_strategy": "hedged-cost" },
    })
}

async fn send(dp: &DataPlane, body: &Value) -> (String, String) {
    let response = http_client()
        .post(dp.chat_url())
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (trace_id, response.text().await.unwrap())
}

/// (target, hedge, error class, success) of each attempt.
fn attempts(trace: &pb::Trace) -> Vec<(&str, bool, i32, bool)> {
    trace
        .attempts
        .iter()
        .map(|a| (a.target_id.as_str(), a.hedge, a.error_class, a.success))
        .collect()
}

#[tokio::test]
async fn a_stream_slow_to_its_first_token_is_won_by_the_hedge_and_the_loser_cancelled() {
    let (slow, fast, cp, dp) = started().await;
    let (trace_id, body) = send(&dp, &chat(true)).await;
    let events = sse_payloads(&body);
    let text: String = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "fast answer");

    let trace = cp.wait_for_trace(&trace_id).await;
    let cancelled = i32::from(pb::ErrorClass::Cancelled);
    let none = i32::from(pb::ErrorClass::Unspecified);
    assert_eq!(
        attempts(&trace),
        [
            ("slow/mock-model", false, cancelled, false),
            ("fast/mock-model", true, none, true),
        ]
    );
    assert!(
        trace.attempts[0].error_message.contains("hedge race"),
        "{trace:?}"
    );
    assert_eq!(trace.final_target, "fast/mock-model");
    assert!(
        trace.explanation.contains("hedged"),
        "{}",
        trace.explanation
    );

    // The loser's stream was dropped, not left running.
    for _ in 0..100 {
        if slow.cancelled_streams() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(slow.cancelled_streams(), 1);
    assert_eq!(
        (slow.client_request_count(), fast.client_request_count()),
        (1, 1)
    );

    let metrics = dp.metrics().await;
    assert!(
        metrics.contains(r#"switchyard_dp_hedges_total{target="fast/mock-model"} 1"#),
        "{metrics}"
    );
    // What the winner produced is billed to it, and nothing to the loser.
    assert!(
        metrics.contains(
            r#"switchyard_dp_tokens_total{target="fast/mock-model",direction="output"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"switchyard_dp_cost_usd_total{target="fast/mock-model"}"#),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"switchyard_dp_tokens_total{target="slow/mock-model""#));
}

#[tokio::test]
async fn a_whole_answer_slow_to_come_is_hedged_too() {
    let (_slow, _fast, cp, dp) = started().await;
    let (trace_id, body) = send(&dp, &chat(false)).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "fast answer");
    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.final_target, "fast/mock-model");
    assert!(trace.attempts[1].hedge, "{trace:?}");
}

/// A tool call must not run twice: no hedge, the slow target keeps its turn
/// until the first-token limit sends the request to the next one.
#[tokio::test]
async fn requests_with_tools_are_never_hedged() {
    let (_slow, _fast, cp, dp) = started().await;
    let mut body = chat(true);
    body["tools"] = json!([{ "type": "function", "function": { "name": "f" } }]);
    let (trace_id, _) = send(&dp, &body).await;
    let trace = cp.wait_for_trace(&trace_id).await;
    assert!(trace.attempts.iter().all(|a| !a.hedge), "{trace:?}");
    assert_eq!(
        trace.attempts[0].error_class,
        i32::from(pb::ErrorClass::Timeout)
    );
    assert_eq!(trace.final_target, "fast/mock-model");
}

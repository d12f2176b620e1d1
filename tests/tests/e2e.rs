//! One request's whole loop through real processes: registry -> snapshot pushed
//! to a data plane -> scored and executed against a mock provider over HTTP ->
//! trace reported -> stored in Postgres -> read back through GetTrace.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use support::{ControlPlane, DataPlane, MOCK_KEY, http_client, registry_yaml, sse_data};
use switchyard_proto::v1 as pb;
use switchyard_testkit::{Behavior, MockProvider};

fn chat(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to the switchyard"}],
    })
}

#[tokio::test]
async fn json_completion_is_served_and_its_trace_is_stored_whole() {
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::Reply {
        text: "Hello from the mock".into(),
    });
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();

    let response = http_client()
        .post(dp.chat_url())
        .header("x-request-id", "req-json-1")
        .json(&chat("mock-model", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from the mock"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["switchyard"]["target"], "alpha/mock-model");

    // The provider saw our key from the secret reference, and the target's model name.
    let seen = &mock.requests()[0];
    assert_eq!(
        seen.authorization.as_deref(),
        Some(format!("Bearer {MOCK_KEY}").as_str())
    );
    assert_eq!(seen.body["model"], "mock-model");

    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.request_id, "req-json-1");
    assert_eq!(trace.workspace, "default");
    assert_eq!(trace.requested_model, "mock-model");
    assert_eq!(trace.strategy, "balanced");
    assert_eq!(trace.outcome, i32::from(pb::Outcome::Success));
    assert_eq!(trace.candidates.len(), 1);
    assert_eq!(trace.candidates[0].target_id, "alpha/mock-model");
    assert!(trace.candidates[0].score > 0.0);
    assert_eq!(trace.attempts.len(), 1);
    assert!(trace.attempts[0].success);
    assert_eq!(trace.final_target, "alpha/mock-model");
    // The mock counts words: 7 words of prompt, 4 of output; alpha costs $1/$2 per Mtok.
    assert_eq!((trace.tokens_in, trace.tokens_out), (7, 4));
    assert!((trace.cost_usd - (7.0 * 1.0 + 4.0 * 2.0) / 1e6).abs() < 1e-12);
    assert!(trace.snapshot_version > 0);
    assert_eq!(trace.node_id, "test-dp");
    for (name, ts) in [
        ("received_at", &trace.received_at),
        ("routed_at", &trace.routed_at),
        ("first_token_at", &trace.first_token_at),
        ("completed_at", &trace.completed_at),
    ] {
        assert!(ts.is_some(), "{name} missing");
    }
    assert_eq!(body["usage"]["total_tokens"], 11);

    // And it is in Postgres, not only in some cache.
    let pool = sqlx::PgPool::connect(&cp.database_url).await.unwrap();
    let (outcome, target): (i64, String) =
        sqlx::query_as("SELECT outcome, final_target FROM traces WHERE trace_id = $1")
            .bind(&trace_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (outcome, target.as_str()),
        (i64::from(pb::Outcome::Success as i32), "alpha/mock-model")
    );
}

#[tokio::test]
async fn streamed_completion_ends_with_done_and_is_traced() {
    let mock = MockProvider::start().await.unwrap();
    // The default, not a queued reply: a health probe of the idle target may
    // reach the mock first.
    mock.set_default(Behavior::Reply {
        text: "one two three four".into(),
    });
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();

    let mut body = chat("mock-model", true);
    body["stream_options"] = json!({"include_usage": true});
    let response = http_client()
        .post(dp.chat_url())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let events = sse_data(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"]
                .get(0)
                .and_then(|ch| ch["delta"]["content"].as_str())
        })
        .collect();
    assert_eq!(text, "one two three four");
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 4);
    // Upstream was asked to stream with usage.
    assert_eq!(
        mock.requests()[0].body["stream_options"]["include_usage"],
        true
    );

    let trace = cp.wait_for_trace(&trace_id).await;
    assert!(trace.stream);
    assert_eq!(trace.outcome, i32::from(pb::Outcome::Success));
    assert!(trace.first_token_at.is_some());
    assert_eq!(trace.tokens_out, 4);
}

#[tokio::test]
async fn a_503_from_the_primary_falls_back_and_the_trace_shows_both_attempts() {
    let primary = MockProvider::start().await.unwrap();
    let backup = MockProvider::start().await.unwrap();
    primary.set_default(Behavior::Status {
        status: 503,
        message: "overloaded".into(),
        retry_after_secs: None,
    });
    backup.push(Behavior::Reply {
        text: "served by the backup".into(),
    });
    let cp = ControlPlane::start(&registry_yaml(&[
        ("primary", &primary.base_url()),
        ("backup", &backup.base_url()),
    ]))
    .await
    .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();

    let response = http_client()
        .post(dp.chat_url())
        .header("x-switchyard-strategy", "cost")
        .json(&chat("mock-model", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The primary, its one retry after a back-off, then the backup.
    assert_eq!(response.headers()["x-switchyard-attempts"], "3");
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "served by the backup"
    );
    assert_eq!(primary.client_request_count(), 2);

    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.strategy, "cost");
    assert_eq!(trace.attempts.len(), 3);
    for failed in &trace.attempts[..2] {
        assert_eq!(failed.target_id, "primary/mock-model");
        assert!(!failed.success);
        assert_eq!(failed.http_status, 503);
        assert_eq!(failed.error_class, i32::from(pb::ErrorClass::Transient));
        assert_eq!(failed.error_message, "overloaded");
    }
    let served = &trace.attempts[2];
    assert_eq!(served.target_id, "backup/mock-model");
    assert!(served.success);
    assert_eq!(trace.final_target, "backup/mock-model");
    assert_eq!(trace.outcome, i32::from(pb::Outcome::Success));
}

#[tokio::test]
async fn a_stream_that_breaks_after_its_first_token_ends_in_an_error_event_and_a_partial_trace() {
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::DropStreamAfter { chunks: 2 });
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();

    let response = http_client()
        .post(dp.chat_url())
        .json(&chat("mock-model", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let events = sse_data(response).await;
    assert!(
        !events.iter().any(|e| e == "[DONE]"),
        "a failed stream must not end cleanly: {events:?}"
    );
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mid-response"),
        "{last}"
    );

    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.outcome, i32::from(pb::Outcome::Partial));
    assert_eq!(trace.final_target, "alpha/mock-model");
    // What streamed before the cut was counted as it streamed, and is billed.
    assert!(trace.tokens_out >= 2, "{trace:?}");
    assert!(trace.cost_usd > 0.0, "{trace:?}");
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_cancels_the_upstream_request() {
    let mock = MockProvider::start().await.unwrap();
    let long_text = vec!["word"; 400].join(" ");
    mock.push(Behavior::Reply { text: long_text });
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();

    let response = http_client()
        .post(dp.chat_url())
        .json(&chat("mock-model", true))
        .send()
        .await
        .unwrap();
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = response.bytes_stream();
    let _first = body.next().await.unwrap().unwrap();
    drop(body);

    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.outcome, i32::from(pb::Outcome::Cancelled));
    // The tokens the client did get are on the bill.
    assert!(trace.tokens_out >= 1 && trace.cost_usd > 0.0, "{trace:?}");
    assert_eq!(trace.final_target, "alpha/mock-model");
    for _ in 0..100 {
        if mock.cancelled_streams() == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the provider never saw its stream cancelled");
}

#[tokio::test]
async fn with_the_control_plane_gone_the_data_plane_keeps_serving_and_its_traces_arrive_later() {
    let mock = MockProvider::start().await.unwrap();
    let mut cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    cp.kill().await;

    // Served on the last good snapshot, with nobody to report the traces to.
    let mut trace_ids = Vec::new();
    for _ in 0..3 {
        let response = http_client()
            .post(dp.chat_url())
            .json(&chat("mock-model", false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        trace_ids.push(
            response.headers()["x-switchyard-trace-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    let ready = http_client()
        .get(format!("{}/readyz", dp.http))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        200,
        "readiness stays true on the last good snapshot"
    );

    // The control plane comes back: the spooled traces are resent and stored.
    cp.restart().await.unwrap();
    for trace_id in &trace_ids {
        let trace = cp.wait_for_trace(trace_id).await;
        assert_eq!(trace.outcome, i32::from(pb::Outcome::Success));
    }
}

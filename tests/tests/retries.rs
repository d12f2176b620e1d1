//! Transient failures are retried on the same target with back-off, honouring
//! Retry-After, before the chain moves on; other error classes take their own
//! documented paths.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use serde_json::{Value, json};
use support::{ControlPlane, DataPlane, http_client, registry_yaml};
use switchyard_proto::v1 as pb;
use switchyard_testkit::{Behavior, MockProvider};

fn chat() -> Value {
    json!({"model": "mock-model", "messages": [{"role": "user", "content": "hello"}]})
}

fn millis(ts: &Option<prost_types::Timestamp>) -> i64 {
    let ts = ts.as_ref().unwrap();
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

async fn send(dp: &DataPlane) -> (u16, String, Value) {
    let response = http_client()
        .post(dp.chat_url())
        .json(&chat())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, trace_id, response.json().await.unwrap())
}

#[tokio::test]
async fn a_transient_failure_is_retried_on_the_same_target() {
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::Status {
        status: 503,
        message: "busy".into(),
        retry_after_secs: None,
    });
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();

    let (status, trace_id, _) = send(&dp).await;
    assert_eq!(status, 200);
    assert_eq!(mock.client_request_count(), 2);
    let trace = cp.wait_for_trace(&trace_id).await;
    let targets: Vec<(&str, bool)> = trace
        .attempts
        .iter()
        .map(|a| (a.target_id.as_str(), a.success))
        .collect();
    assert_eq!(
        targets,
        [("alpha/mock-model", false), ("alpha/mock-model", true)]
    );
}

#[tokio::test]
async fn retry_after_is_honoured_before_the_retry() {
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::Status {
        status: 429,
        message: "slow down".into(),
        retry_after_secs: Some(1),
    });
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();

    let (status, trace_id, _) = send(&dp).await;
    assert_eq!(status, 200);
    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.attempts.len(), 2);
    assert_eq!(
        trace.attempts[0].error_class,
        i32::from(pb::ErrorClass::RateLimited)
    );
    let gap = millis(&trace.attempts[1].started_at) - millis(&trace.attempts[0].started_at);
    assert!(
        gap >= 1000,
        "the retry came {gap} ms after the 429 that asked for 1 s"
    );
}

#[tokio::test]
async fn auth_and_content_errors_are_not_retried() {
    let primary = MockProvider::start().await.unwrap();
    let backup = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[
        ("primary", &primary.base_url()),
        ("backup", &backup.base_url()),
    ]))
    .await
    .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();

    // 401: not retried on that provider; the backup serves.
    primary.push(Behavior::Status {
        status: 401,
        message: "bad key".into(),
        retry_after_secs: None,
    });
    let (status, trace_id, _) = send(&dp).await;
    assert_eq!(status, 200);
    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.attempts.len(), 2);
    assert_eq!(
        trace.attempts[0].error_class,
        i32::from(pb::ErrorClass::Auth)
    );
    assert_eq!(trace.attempts[1].target_id, "backup/mock-model");

    // 400: the request itself is at fault; nobody else is asked.
    primary.push(Behavior::Status {
        status: 400,
        message: "messages[0] is weird".into(),
        retry_after_secs: None,
    });
    let backup_before = backup.client_request_count();
    let (status, trace_id, body) = send(&dp).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0] is weird"),
        "{body}"
    );
    assert_eq!(backup.client_request_count(), backup_before);
    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.attempts.len(), 1);
    assert_eq!(trace.error_class, i32::from(pb::ErrorClass::Content));
}

/// A prompt too long for the cheapest target moves on, past every target
/// whose window is no larger, to one that can hold it.
#[tokio::test]
async fn a_prompt_too_long_moves_to_a_target_with_a_larger_window() {
    let small = MockProvider::start().await.unwrap();
    let same = MockProvider::start().await.unwrap();
    let large = MockProvider::start().await.unwrap();
    small.set_default(Behavior::Status {
        status: 400,
        message: "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.".into(),
        retry_after_secs: None,
    });
    let model = |provider: &str, window: u32, price: f64| {
        format!(
            "  - {{ provider: {provider}, name: mock-model, family: {provider}, capabilities: {{ streaming: true }},\n      \
             context_window: {window}, input_price_per_mtok: {price}, output_price_per_mtok: {price}, tier: standard }}\n"
        )
    };
    let mut yaml = String::from("providers:\n");
    for (name, mock) in [("small", &small), ("same", &same), ("large", &large)] {
        yaml.push_str(&format!(
            "  - {{ name: {name}, kind: openai, base_url: \"{}\", api_key_ref: \"env:MOCK_API_KEY\" }}\n",
            mock.base_url()
        ));
    }
    yaml.push_str("models:\n");
    yaml.push_str(&model("small", 8_192, 1.0));
    yaml.push_str(&model("same", 8_192, 2.0));
    yaml.push_str(&model("large", 200_000, 9.0));
    let cp = ControlPlane::start(&yaml).await.unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();

    let response = http_client()
        .post(dp.chat_url())
        .header("x-switchyard-strategy", "cost")
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let trace = cp.wait_for_trace(&trace_id).await;
    let attempts: Vec<(&str, i32)> = trace
        .attempts
        .iter()
        .map(|a| (a.target_id.as_str(), a.error_class))
        .collect();
    assert_eq!(
        attempts,
        [
            ("small/mock-model", i32::from(pb::ErrorClass::ContextLength)),
            ("large/mock-model", i32::from(pb::ErrorClass::Unspecified)),
        ]
    );
    assert_eq!(
        same.client_request_count(),
        0,
        "a window no larger is not tried"
    );

    // With no larger window left, the client gets the provider's words as a 400.
    large.set_default(Behavior::Status {
        status: 400,
        message: "prompt is too long: 210000 tokens > 200000 maximum".into(),
        retry_after_secs: None,
    });
    let (status, _, body) = send(&dp).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("prompt is too long"),
        "{body}"
    );
}

#[tokio::test]
async fn a_refused_connection_moves_to_the_next_target_at_once() {
    let backup = MockProvider::start().await.unwrap();
    // Nothing listens on port 9 of loopback: connection refused.
    let cp = ControlPlane::start(&registry_yaml(&[
        ("down", "http://127.0.0.1:9/v1"),
        ("backup", &backup.base_url()),
    ]))
    .await
    .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let (status, trace_id, _) = send(&dp).await;
    assert_eq!(status, 200);
    let trace = cp.wait_for_trace(&trace_id).await;
    let classes: Vec<i32> = trace.attempts.iter().map(|a| a.error_class).collect();
    assert_eq!(
        classes,
        [
            i32::from(pb::ErrorClass::ProviderDown),
            i32::from(pb::ErrorClass::Unspecified)
        ]
    );
}

#[tokio::test]
async fn consecutive_failures_open_the_circuit_and_traffic_skips_the_target() {
    let primary = MockProvider::start().await.unwrap();
    let backup = MockProvider::start().await.unwrap();
    primary.set_default(Behavior::Status {
        status: 500,
        message: "broken".into(),
        retry_after_secs: None,
    });
    let cp = ControlPlane::start(&registry_yaml(&[
        ("primary", &primary.base_url()),
        ("backup", &backup.base_url()),
    ]))
    .await
    .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let cost_first = || {
        http_client()
            .post(dp.chat_url())
            .header("x-switchyard-strategy", "cost")
            .json(&chat())
    };

    // Each request tries the primary twice (one retry) before the backup serves.
    for _ in 0..3 {
        assert_eq!(cost_first().send().await.unwrap().status(), 200);
    }
    let tried = primary.client_request_count();
    assert_eq!(tried, 5, "the fifth consecutive failure opens the circuit");

    // Open: the primary is not called; the backup serves at the first attempt.
    let response = cost_first()
        .header("x-switchyard-explain", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let route = response.headers()["x-switchyard-route"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        route.contains("primary/mock-model: circuit open until"),
        "{route}"
    );
    assert_eq!(primary.client_request_count(), tried);
    let metrics = dp.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_dp_breaker_state{target=\"primary/mock-model\"} 2")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stream_without_a_first_token_in_time_moves_to_the_backup() {
    let primary = MockProvider::start().await.unwrap();
    let backup = MockProvider::start().await.unwrap();
    // The harness gives the data plane a 1 s first-token limit.
    primary.set_default(Behavior::Delay {
        delay: std::time::Duration::from_secs(5),
        then: Box::new(Behavior::Ok),
    });
    backup.push(Behavior::Reply {
        text: "backup was quick".into(),
    });
    let cp = ControlPlane::start(&registry_yaml(&[
        ("primary", &primary.base_url()),
        ("backup", &backup.base_url()),
    ]))
    .await
    .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let mut body = chat();
    body["stream"] = json!(true);
    let response = http_client()
        .post(dp.chat_url())
        .header("x-switchyard-strategy", "cost")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    assert!(
        text.contains("backup") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    let trace = cp.wait_for_trace(&trace_id).await;
    let attempts: Vec<(&str, i32)> = trace
        .attempts
        .iter()
        .map(|a| (a.target_id.as_str(), a.error_class))
        .collect();
    let timeout = i32::from(pb::ErrorClass::Timeout);
    assert_eq!(
        attempts,
        [
            ("primary/mock-model", timeout),
            ("primary/mock-model", timeout),
            ("backup/mock-model", i32::from(pb::ErrorClass::Unspecified))
        ]
    );
}

#[tokio::test]
async fn a_grpc_client_deadline_becomes_the_requests_deadline() {
    let mock = MockProvider::start().await.unwrap();
    mock.set_default(Behavior::Delay {
        delay: std::time::Duration::from_secs(5),
        then: Box::new(Behavior::Ok),
    });
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let mut request = tonic::Request::new(pb::CompleteRequest {
        model: "mock-model".into(),
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: "hello".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    request.set_timeout(std::time::Duration::from_millis(400));
    let status = dp.inference().await.complete(request).await.unwrap_err();
    assert!(
        matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{status:?}"
    );

    // The data plane took the client's deadline as the request's own.
    let mut traces = cp.traces().await;
    for _ in 0..200 {
        let page = traces
            .list_traces(pb::ListTracesRequest::default())
            .await
            .unwrap()
            .into_inner();
        if let Some(summary) = page.traces.first() {
            let trace = cp.wait_for_trace(&summary.trace_id).await;
            let workload = trace.workload.unwrap();
            assert_eq!(
                (workload.timeout_profile.as_str(), workload.timeout_ms),
                ("custom", 400)
            );
            assert_ne!(trace.outcome, i32::from(pb::Outcome::Success));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the timed-out request left no trace");
}

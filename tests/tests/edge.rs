//! The data plane's edges as clients meet them: OpenAI-shaped errors for bad
//! HTTP input, INVALID_ARGUMENT for bad gRPC input, and the gRPC inference API.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use futures::StreamExt;
use serde_json::{Value, json};
use support::{ControlPlane, DataPlane, http_client, registry_yaml};
use switchyard_proto::v1 as pb;
use switchyard_testkit::{Behavior, MockProvider};

async fn post_raw(dp: &DataPlane, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = http_client()
        .post(dp.chat_url())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn bad_http_input_gets_openai_errors_and_the_process_keeps_serving() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();

    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        ("malformed JSON", "{\"model\": \"mock-model\", ".into(), 400, None),
        ("missing messages", json!({"model": "mock-model"}).to_string(), 400, Some("messages")),
        ("wrong type", json!({"model": "mock-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": "lots"}).to_string(), 400, Some("max_tokens")),
        ("unknown role", json!({"model": "mock-model", "messages": [{"role": "wizard", "content": "x"}]}).to_string(), 400, Some("messages[0].role")),
        ("unknown model", json!({"model": "gpt-99", "messages": [{"role": "user", "content": "x"}]}).to_string(), 404, Some("model")),
        ("unknown strategy", json!({"model": "mock-model", "metadata": {"switchyard_strategy": "yolo"}, "messages": [{"role": "user", "content": "x"}]}).to_string(), 400, Some("strategy")),
        ("over the size limit", format!("{{\"model\":\"mock-model\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}", "x".repeat(70_000)), 413, None),
    ];
    for (name, body, status, param) in cases {
        let (got, error) = post_raw(&dp, body).await;
        assert_eq!(got, status, "{name}: {error}");
        let e = &error["error"];
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}: {error}"
        );
        assert!(
            e["type"].is_string() && e["code"].is_string(),
            "{name}: {error}"
        );
        if let Some(param) = param {
            assert_eq!(e["param"], param, "{name}: {error}");
        }
    }
    assert_eq!(
        mock.client_request_count(),
        0,
        "no bad request may reach a provider"
    );

    // Still serving.
    let (status, body) = post_raw(
        &dp,
        json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn every_target_failing_gives_a_clear_upstream_error() {
    let mock = MockProvider::start().await.unwrap();
    mock.set_default(Behavior::Status {
        status: 429,
        message: "slow down".into(),
        retry_after_secs: Some(3),
    });
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let (status, body) = post_raw(
        &dp,
        json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "upstream_rate_limited");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("slow down")
    );
}

#[tokio::test]
async fn grpc_complete_stream_and_route_work_and_validate() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[
        ("alpha", &mock.base_url()),
        ("beta", &mock.base_url()),
    ]))
    .await
    .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let mut client = dp.inference().await;
    let request = pb::CompleteRequest {
        model: "mock-model".into(),
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: "hello there".into(),
            ..Default::default()
        }],
        strategy: "cost".into(),
        ..Default::default()
    };

    mock.push(Behavior::Reply {
        text: "grpc says hi".into(),
    });
    let response = client.complete(request.clone()).await.unwrap().into_inner();
    assert_eq!(response.content, "grpc says hi");
    let meta = response.meta.unwrap();
    assert_eq!(meta.target_id, "alpha/mock-model");
    let trace = cp.wait_for_trace(&meta.trace_id).await;
    assert_eq!(trace.final_target, "alpha/mock-model");

    mock.push(Behavior::Reply {
        text: "streamed over grpc".into(),
    });
    let mut stream = client
        .stream_complete(request.clone())
        .await
        .unwrap()
        .into_inner();
    let mut text = String::new();
    let mut ended = false;
    while let Some(chunk) = stream.next().await {
        match chunk.unwrap().kind.unwrap() {
            pb::complete_chunk::Kind::Delta(d) => text.push_str(&d),
            pb::complete_chunk::Kind::End(end) => {
                ended = true;
                assert_eq!(end.usage.unwrap().output_tokens, 3);
            }
            other @ pb::complete_chunk::Kind::ToolCall(_) => panic!("no tools here: {other:?}"),
        }
    }
    assert!(ended);
    assert_eq!(text, "streamed over grpc");

    let route = client.route(request.clone()).await.unwrap().into_inner();
    assert_eq!(route.strategy, "cost");
    let ids: Vec<&str> = route
        .candidates
        .iter()
        .map(|c| c.target_id.as_str())
        .collect();
    assert_eq!(ids, ["alpha/mock-model", "beta/mock-model"]);
    assert!(route.candidates[0].score >= route.candidates[1].score);
    assert!(route.candidates[0].dimensions.is_some());

    let bad = pb::CompleteRequest {
        messages: vec![],
        ..request
    };
    let status = client.complete(bad).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("messages:"),
        "{}",
        status.message()
    );
}

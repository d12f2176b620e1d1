//! An operator's circuit override travels from the registry to the data plane
//! in the snapshot: forced open, the target gets no traffic and `Route` says
//! why; forced closed, it keeps getting traffic however often it fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{ControlPlane, DataPlane, http_client, registry_yaml};
use switchyard_proto::v1 as pb;
use switchyard_testkit::{Behavior, MockProvider};

const CHEAP: &str = "cheap/mock-model";

async fn set_circuit(cp: &ControlPlane, mode: pb::CircuitMode) {
    let mut registry = cp.registry().await;
    let mut model = registry
        .get_model(pb::GetModelRequest {
            provider: "cheap".into(),
            name: "mock-model".into(),
        })
        .await
        .unwrap()
        .into_inner();
    model.circuit = mode.into();
    registry
        .update_model(pb::UpdateModelRequest { model: Some(model) })
        .await
        .unwrap();
}

async fn route(
    client: &mut pb::inference_service_client::InferenceServiceClient<support::Authorized>,
) -> pb::RouteResponse {
    client
        .route(pb::CompleteRequest {
            model: "mock-model".into(),
            messages: vec![pb::ChatMessage {
                role: "user".into(),
                content: "hello".into(),
                ..Default::default()
            }],
            strategy: "cost".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Asks `Route` until the data plane has applied a snapshot that passes `check`.
async fn route_until(
    dp: &DataPlane,
    check: impl Fn(&pb::RouteResponse) -> bool,
) -> pb::RouteResponse {
    let mut client = dp.inference().await;
    for _ in 0..200 {
        let answer = route(&mut client).await;
        if check(&answer) {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the data plane never routed as expected: {:?}",
        route(&mut client).await
    );
}

async fn gauge(dp: &DataPlane) -> String {
    let metrics = dp.metrics().await;
    let prefix = format!("switchyard_dp_breaker_state{{target=\"{CHEAP}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_default()
        .to_owned()
}

async fn send(dp: &DataPlane) -> u16 {
    http_client()
        .post(dp.chat_url())
        .header("x-switchyard-strategy", "cost")
        .json(&json!({"model": "mock-model", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_operator_forces_a_circuit_open_then_closed_through_the_registry() {
    let cheap = MockProvider::start().await.unwrap();
    let backup = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[
        ("cheap", &cheap.base_url()),
        ("backup", &backup.base_url()),
    ]))
    .await
    .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let first = route_until(&dp, |_| true).await;
    assert_eq!(first.fallback_chain[0], CHEAP);

    // Forced open: filtered with its reason, and the backup serves.
    set_circuit(&cp, pb::CircuitMode::Open).await;
    let answer = route_until(&dp, |r| r.ineligible.iter().any(|i| i.target_id == CHEAP)).await;
    assert_eq!(
        answer.ineligible[0].reason,
        "circuit forced open by operator"
    );
    assert_eq!(answer.fallback_chain, ["backup/mock-model"]);
    assert!(
        answer
            .explanation
            .contains("cheap/mock-model: circuit forced open by operator"),
        "{}",
        answer.explanation
    );
    assert_eq!(send(&dp).await, 200);
    assert_eq!(cheap.client_request_count(), 0);
    assert_eq!(backup.client_request_count(), 1);
    assert_eq!(gauge(&dp).await, "3");

    // Forced closed: the target fails every call, yet is never skipped.
    cheap.set_default(Behavior::Status {
        status: 500,
        message: "broken".into(),
        retry_after_secs: None,
    });
    set_circuit(&cp, pb::CircuitMode::Closed).await;
    let answer = route_until(&dp, |r| r.ineligible.is_empty()).await;
    assert_eq!(answer.candidates[0].target_id, CHEAP);
    assert_eq!(answer.candidates[0].circuit, "forced_closed");
    assert!(
        answer
            .explanation
            .contains("circuits: cheap/mock-model forced closed by operator"),
        "{}",
        answer.explanation
    );
    for _ in 0..4 {
        assert_eq!(send(&dp).await, 200, "the backup serves after the failures");
    }
    // A call and its retry per request: eight failures in a row, circuit still closed.
    assert_eq!(cheap.client_request_count(), 8);
    assert_eq!(gauge(&dp).await, "4");

    // A value the registry does not know is refused, naming the field.
    let mut registry = cp.registry().await;
    let mut model = registry
        .get_model(pb::GetModelRequest {
            provider: "cheap".into(),
            name: "mock-model".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(model.circuit, i32::from(pb::CircuitMode::Closed));
    model.circuit = 42;
    let status = registry
        .update_model(pb::UpdateModelRequest { model: Some(model) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("model.circuit:"),
        "{}",
        status.message()
    );
}

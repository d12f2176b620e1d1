//! The scoring layer seen from outside: `Route` over gRPC, the
//! `x-switchyard-route` header and the stored trace tell the same story.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use serde_json::json;
use support::{ControlPlane, DataPlane, http_client};
use switchyard_proto::v1 as pb;
use switchyard_testkit::MockProvider;

/// Three providers: two cheap ones without tools, one with tools and a big window.
fn registry(a: &str, b: &str, c: &str) -> String {
    format!(
        r#"
providers:
  - {{ name: alpha, kind: openai, base_url: "{a}", api_key_ref: "env:MOCK_API_KEY" }}
  - {{ name: beta, kind: openai, base_url: "{b}", api_key_ref: "env:MOCK_API_KEY" }}
  - {{ name: gamma, kind: openai, base_url: "{c}", api_key_ref: "env:MOCK_API_KEY" }}
models:
  - {{ provider: alpha, name: small, family: fam-a, capabilities: {{ streaming: true }}, context_window: 8000,
      input_price_per_mtok: 0.1, output_price_per_mtok: 0.4, region: us, tier: economy, aliases: [chat] }}
  - {{ provider: beta, name: mid, family: fam-b, capabilities: {{ streaming: true, tools: true }}, context_window: 128000,
      input_price_per_mtok: 0.5, output_price_per_mtok: 1.5, region: us, tier: standard, aliases: [chat] }}
  - {{ provider: gamma, name: big, family: fam-c, capabilities: {{ streaming: true, tools: true }}, context_window: 200000,
      input_price_per_mtok: 3.0, output_price_per_mtok: 15.0, region: eu, tier: frontier, aliases: [chat] }}
"#
    )
}

#[tokio::test]
async fn route_the_header_and_the_trace_share_one_explanation() {
    let (a, b, c) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    let cp = ControlPlane::start(&registry(&a.base_url(), &b.base_url(), &c.base_url()))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let tool = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]);
    let body = json!({
        "model": "chat",
        "messages": [{"role": "user", "content": "Look up the weather in Paris"}],
        "tools": tool,
        "metadata": {"switchyard_strategy": "cost", "switchyard_intent": "chat"},
    });

    let response = http_client()
        .post(dp.chat_url())
        .header("x-switchyard-explain", "true")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = response.headers()["x-switchyard-route"]
        .to_str()
        .unwrap()
        .to_owned();
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(header.starts_with("chose beta/mid (cost, "), "{header}");
    assert!(
        header.contains("backups: gamma/big (other provider)"),
        "{header}"
    );
    assert!(
        header.contains("filtered: alpha/small: missing capability: tools"),
        "{header}"
    );
    assert_eq!(b.client_request_count(), 1);

    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.explanation, header);
    assert_eq!(trace.fallback_chain, ["beta/mid", "gamma/big"]);
    let workload = trace.workload.unwrap();
    assert_eq!(workload.intent, "chat");
    assert!(workload.intent_requested);
    assert!(workload.needs_tools);
    assert!(workload.input_tokens > 0);
    let first = &trace.candidates[0];
    let dims = first.dimensions.as_ref().unwrap();
    let cost = dims.cost.as_ref().unwrap();
    assert_eq!(cost.unit, "usd");
    assert!((cost.raw - first.estimated_cost_usd).abs() < 1e-15);
    let total: f64 = [
        &dims.quality,
        &dims.speed,
        &dims.cost,
        &dims.health,
        &dims.workspace_fit,
    ]
    .iter()
    .map(|d| d.as_ref().unwrap().contribution)
    .sum();
    assert!((total - first.score).abs() < 1e-9);

    // The dry run over gRPC says the same, and calls nobody.
    let mut client = dp.inference().await;
    let route = client
        .route(pb::CompleteRequest {
            model: "chat".into(),
            messages: vec![pb::ChatMessage {
                role: "user".into(),
                content: "Look up the weather in Paris".into(),
                ..Default::default()
            }],
            strategy: "cost".into(),
            intent: "chat".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // With a tool over gRPC too, the explanation matches the HTTP one's choice.
    let mut with_tool = pb::CompleteRequest {
        model: "chat".into(),
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: "Look up the weather in Paris".into(),
            ..Default::default()
        }],
        strategy: "cost".into(),
        intent: "chat".into(),
        ..Default::default()
    };
    with_tool.tools.push(pb::ToolDefinition {
        name: "lookup".into(),
        description: String::new(),
        parameters_json: r#"{"type":"object","properties":{}}"#.into(),
    });
    let tooled = client.route(with_tool).await.unwrap().into_inner();
    assert_eq!(tooled.fallback_chain, ["beta/mid", "gamma/big"]);
    assert!(
        tooled
            .explanation
            .contains("alpha/small: missing capability: tools"),
        "{}",
        tooled.explanation
    );

    // Without tools the cheap target is eligible and wins.
    assert!(
        route.explanation.starts_with("chose alpha/small (cost, "),
        "{}",
        route.explanation
    );
    assert_eq!(route.fallback_chain[0], "alpha/small");
    assert_eq!(route.workload.unwrap().intent, "chat");
    assert_eq!(a.client_request_count() + c.client_request_count(), 0);
}

#[tokio::test]
async fn bad_routing_hints_are_rejected_naming_the_field() {
    let a = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry(&a.base_url(), &a.base_url(), &a.base_url()))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    for (header, value, param) in [
        ("x-switchyard-intent", "daydreaming", "intent"),
        ("x-switchyard-timeout", "forever", "timeout_profile"),
    ] {
        let response = http_client()
            .post(dp.chat_url())
            .header(header, value)
            .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    let mut client = dp.inference().await;
    let status = client
        .complete(pb::CompleteRequest {
            model: "chat".into(),
            messages: vec![pb::ChatMessage {
                role: "user".into(),
                content: "hi".into(),
                ..Default::default()
            }],
            timeout_profile: "0s".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("timeout_profile:"),
        "{}",
        status.message()
    );
    assert_eq!(a.client_request_count(), 0);
}

#[tokio::test]
async fn a_workspace_created_through_the_registry_restricts_its_requests() {
    let (a, b, c) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    let cp = ControlPlane::start(&registry(&a.base_url(), &b.base_url(), &c.base_url()))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let chat = json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});

    // A key of the default workspace cannot act for another.
    let response = http_client()
        .post(dp.chat_url())
        .header("x-switchyard-workspace", "eu-team")
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "permission_denied", "{body}");

    let workspace = pb::Workspace {
        name: "eu-team".into(),
        allowed_regions: vec!["eu".into()],
        ..Default::default()
    };
    cp.registry()
        .await
        .create_workspace(pb::CreateWorkspaceRequest {
            workspace: Some(workspace),
        })
        .await
        .unwrap();
    let key = cp.api_key("eu-team").await;

    // The new snapshot reaches the data plane; then only the EU target serves the workspace.
    let mut served = None;
    for _ in 0..100 {
        let response = http_client()
            .post(dp.chat_url())
            .bearer_auth(&key)
            .header("x-switchyard-workspace", "eu-team")
            .header("x-switchyard-explain", "1")
            .json(&chat)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            served = Some(
                response.headers()["x-switchyard-route"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let route = served.expect("the workspace never became usable");
    assert!(route.starts_with("chose gamma/big"), "{route}");
    assert!(
        route.contains("alpha/small: region us is not allowed for workspace eu-team"),
        "{route}"
    );
    assert_eq!(c.client_request_count(), 1);
    assert_eq!(a.client_request_count() + b.client_request_count(), 0);
}

#[tokio::test]
async fn the_fleets_experience_reaches_routing_through_the_snapshot() {
    let (a, b, c) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    // beta is the cheapest target with tools, but answers every request with 429:
    // saturation does not open its circuit, so only the fleet telemetry can demote it.
    b.set_default(switchyard_testkit::Behavior::Status {
        status: 429,
        message: "saturated".into(),
        retry_after_secs: None,
    });
    let cp = ControlPlane::start(&registry(&a.base_url(), &b.base_url(), &c.base_url()))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let tool = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]);
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "Look it up"}], "tools": tool});
    let route_request = || pb::CompleteRequest {
        model: "chat".into(),
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: "hi".into(),
            ..Default::default()
        }],
        strategy: "balanced".into(),
        ..Default::default()
    };
    let mut client = dp.inference().await;
    let before = client.route(route_request()).await.unwrap().into_inner();
    let beta = before
        .candidates
        .iter()
        .find(|c| c.target_id == "beta/mid")
        .unwrap();
    assert_eq!(
        beta.dimensions
            .as_ref()
            .unwrap()
            .health
            .as_ref()
            .unwrap()
            .source,
        "prior"
    );

    for _ in 0..30 {
        let response = http_client()
            .post(dp.chat_url())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "gamma must cover for beta");
    }
    // Beta was tried first until the fleet's record caught up with it.
    assert!(
        (1..=60).contains(&b.client_request_count()),
        "{}",
        b.client_request_count()
    );

    // Within a few health windows the fleet's verdict reaches the data plane:
    // beta answers nothing but 429s, so it is rate-limited (saturated, not
    // sick) and skipped, with the reason, while gamma leads.
    for _ in 0..100 {
        let route = client.route(route_request()).await.unwrap().into_inner();
        if let Some(skipped) = route.ineligible.iter().find(|i| i.target_id == "beta/mid") {
            assert!(
                skipped
                    .reason
                    .starts_with("rate-limited by the fleet until"),
                "{}",
                skipped.reason
            );
            assert!(route.snapshot_version > before.snapshot_version);
            assert!(route.candidates.iter().all(|c| c.target_id != "beta/mid"));
            assert!(route.candidates.iter().any(|c| c.target_id == "gamma/big"));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the fleet's verdict never reached the data plane");
}

//! Real third-party clients against real processes: the official OpenAI Python
//! SDK against the data plane, and grpcurl against both planes, run the way the
//! README shows them. scripts/test.sh provides both tools.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::path::PathBuf;

use serde_json::{Value, json};
use support::{ControlPlane, DataPlane, http_client, registry_yaml};
use switchyard_testkit::{Behavior, MockAnthropic, MockProvider};
use tokio::process::Command;

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the suite with ./scripts/test.sh, which provides it")
    })
}

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

async fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().await.unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_official_openai_python_sdk_works_unchanged_streaming_included() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let script = repo_file("sdk/openai_sdk_check.py");
    let out = run(
        &tool("SWITCHYARD_TEST_PYTHON"),
        &[
            script.to_str().unwrap(),
            &format!("{}/v1", dp.http),
            "mock-model",
        ],
    )
    .await;
    let seen: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(seen["text"], "Hello from the mock provider.");
    assert_eq!(seen["streamed"], "Hello from the mock provider.");
    // Both SDK completions reached the provider.
    assert_eq!(mock.request_count(), 2);
}

/// Claude behind the gateway, driven by the OpenAI SDK with tools: `tool_use`
/// comes back as `tool_calls` (whole and as streamed deltas the SDK assembles),
/// and the SDK's follow-up carrying the call and its result reaches Claude as
/// `tool_use` and `tool_result` blocks with the same id.
#[tokio::test]
async fn the_openai_sdk_calls_tools_through_anthropic() {
    let claude = MockAnthropic::start().await.unwrap();
    let arguments = r#"{"city":"Zürich"}"#;
    claude.push(Behavior::tool_call("get_weather", arguments));
    claude.push(Behavior::tool_call("get_weather", arguments));
    claude.push(Behavior::Reply {
        text: "It is sunny".into(),
    });
    let yaml = format!(
        r#"
providers:
  - {{ name: claude, kind: anthropic, base_url: "{}", api_key_ref: "env:MOCK_API_KEY" }}
models:
  - {{ provider: claude, name: claude-test, family: claude, capabilities: {{ streaming: true, tools: true }},
      context_window: 200000, input_price_per_mtok: 3.0, output_price_per_mtok: 15.0, tier: frontier }}
"#,
        claude.base_url()
    );
    let cp = ControlPlane::start(&yaml).await.unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let script = repo_file("sdk/openai_sdk_tools.py");
    let out = run(
        &tool("SWITCHYARD_TEST_PYTHON"),
        &[
            script.to_str().unwrap(),
            &format!("{}/v1", dp.http),
            "claude-test",
        ],
    )
    .await;
    let seen: Value = serde_json::from_str(out.trim()).unwrap();
    for way in ["whole", "streamed"] {
        assert_eq!(seen[way]["name"], "get_weather", "{seen}");
        assert_eq!(
            seen[way]["arguments"],
            json!({ "city": "Zürich" }),
            "{seen}"
        );
        assert!(
            seen[way]["id"].as_str().unwrap().starts_with("toolu_"),
            "{seen}"
        );
    }
    assert_eq!(seen["answer"], "It is sunny");

    let requests = claude.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].body["tools"][0]["name"], "get_weather");
    assert_eq!(
        requests[0].body["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
    let follow_up = &requests[2].body["messages"];
    assert_eq!(
        follow_up[1]["content"],
        json!([{ "type": "tool_use", "id": seen["whole"]["id"], "name": "get_weather", "input": { "city": "Zürich" } }])
    );
    assert_eq!(follow_up[2]["role"], "user");
    assert_eq!(
        follow_up[2]["content"][0],
        json!({ "type": "tool_result", "tool_use_id": seen["whole"]["id"], "content": "18C and sunny" })
    );
}

#[tokio::test]
async fn grpcurl_lists_the_services_and_fetches_a_trace() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let grpcurl = tool("SWITCHYARD_TEST_GRPCURL");
    let cp_addr = cp.addr.trim_start_matches("http://").to_owned();
    let dp_addr = dp.grpc.trim_start_matches("http://").to_owned();

    let services = run(&grpcurl, &["-plaintext", &cp_addr, "list"]).await;
    for service in [
        "switchyard.v1.RegistryService",
        "switchyard.v1.SnapshotService",
        "switchyard.v1.TraceService",
        "switchyard.v1.ClusterService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.lines().any(|l| l == service),
            "{service} missing from:\n{services}"
        );
    }
    assert!(
        !services.contains("InferenceService"),
        "the control plane must not list the data plane's service"
    );
    let services = run(&grpcurl, &["-plaintext", &dp_addr, "list"]).await;
    assert!(
        services
            .lines()
            .any(|l| l == "switchyard.v1.InferenceService"),
        "{services}"
    );

    let response: Value = http_client()
        .post(dp.chat_url())
        .json(&json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let trace_id = response["switchyard"]["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    cp.wait_for_trace(&trace_id).await;

    let listed = run(
        &grpcurl,
        &[
            "-plaintext",
            "-d",
            r#"{"page_size":5}"#,
            &cp_addr,
            "switchyard.v1.TraceService/ListTraces",
        ],
    )
    .await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["traces"][0]["traceId"], trace_id.as_str());

    let request = format!(r#"{{"trace_id":"{trace_id}"}}"#);
    let trace = run(
        &grpcurl,
        &[
            "-plaintext",
            "-d",
            &request,
            &cp_addr,
            "switchyard.v1.TraceService/GetTrace",
        ],
    )
    .await;
    let trace: Value = serde_json::from_str(&trace).unwrap();
    assert_eq!(trace["traceId"], trace_id.as_str());
    assert_eq!(trace["finalTarget"], "alpha/mock-model");
    assert_eq!(trace["outcome"], "OUTCOME_SUCCESS");
    assert_eq!(trace["attempts"].as_array().unwrap().len(), 1);

    let health = run(
        &grpcurl,
        &["-plaintext", &dp_addr, "grpc.health.v1.Health/Check"],
    )
    .await;
    assert!(health.contains("SERVING"), "{health}");
}

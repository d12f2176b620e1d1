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
    let output = Command::new(program)
        .args(args)
        .env("SWITCHYARD_API_KEY", support::API_KEY)
        .output()
        .await
        .unwrap();
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
    assert_eq!(mock.client_request_count(), 2);
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

    let admin = format!("authorization: Bearer {}", support::ADMIN_TOKEN);
    let listed = run(
        &grpcurl,
        &[
            "-plaintext",
            "-H",
            &admin,
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
            "-H",
            &admin,
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

/// The grpcurl commands of the README's "Look at its traces with grpcurl"
/// section, continuation lines joined, comments left out.
fn readme_grpcurl_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_file("../README.md")).unwrap();
    let start = readme
        .find("### Look at its traces with grpcurl")
        .expect("the README's grpcurl section");
    let end = start + readme[start..].find("\n## ").unwrap();
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in readme[start..end].lines() {
        let line = line.trim();
        if pending.is_empty() && !line.starts_with("grpcurl ") {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

#[tokio::test]
async fn the_readme_grpcurl_commands_run_as_written() {
    // Requests kept whole and a data plane to replay through, as in `switchyard dev`.
    let mut cp = ControlPlane::start_with(
        &std::fs::read_to_string(repo_file("../examples/switchyard.yaml")).unwrap(),
        &["--trace-payload", "full"],
    )
    .await
    .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    cp.restart_with(&["--replay-via", &dp.http]).await.unwrap();
    let grpcurl = tool("SWITCHYARD_TEST_GRPCURL");
    let mut trace_id = String::new();
    for _ in 0..3 {
        let response: Value = http_client()
            .post(dp.chat_url())
            .json(&json!({"model": "small", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        trace_id = response["switchyard"]["trace_id"]
            .as_str()
            .unwrap()
            .to_owned();
        cp.wait_for_trace(&trace_id).await;
    }
    // Target health answers once the aggregator has judged (every second).
    let mut health = cp.health().await;
    for _ in 0..100 {
        if health
            .list_target_health(switchyard_proto::v1::ListTargetHealthRequest::default())
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let commands = readme_grpcurl_commands();
    let mut ran = Vec::new();
    // Filled by the README's CreateApiKey example, for its RevokeApiKey one.
    let mut key_id = String::new();
    for command in &commands {
        let command = command
            .replace("127.0.0.1:50051", cp.addr.trim_start_matches("http://"))
            .replace("127.0.0.1:50061", dp.grpc.trim_start_matches("http://"))
            .replace("<trace_id from the response>", &trace_id)
            .replace("<id of the key>", &key_id);
        let script = format!("\"$GRPCURL\" {}", command.trim_start_matches("grpcurl "));
        let output = Command::new("bash")
            .args(["-c", &script])
            .env("GRPCURL", &grpcurl)
            .env("SWITCHYARD_ADMIN_TOKEN", support::ADMIN_TOKEN)
            .env("SWITCHYARD_API_KEY", support::API_KEY)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(
            output.status.success(),
            "{command} failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let method = command.split_whitespace().last().unwrap().to_owned();
        if command.contains(" -d ") || method.contains('/') {
            let answer: Value = serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("{command}: not JSON ({e}):\n{stdout}"));
            match method.as_str() {
                "switchyard.v1.TraceService/GetTrace" => {
                    assert_eq!(answer["traceId"], trace_id.as_str());
                }
                "switchyard.v1.TraceService/WhatIf" => {
                    assert_eq!(answer["tracesConsidered"], "3", "{stdout}");
                }
                "switchyard.v1.TraceService/ReplayTrace" => {
                    assert_eq!(answer["replay"]["replayOf"], trace_id.as_str(), "{stdout}");
                    assert_eq!(answer["replay"]["finalTarget"], "sim-smart/sim-large");
                }
                "switchyard.v1.TraceService/AggregateTraces" => {
                    assert_eq!(answer["groups"][0]["requests"], "3", "{stdout}");
                }
                "switchyard.v1.ClusterService/Status" => {
                    assert_eq!(answer["role"], "ROLE_LEADER", "{stdout}");
                }
                "switchyard.v1.AccessService/CreateApiKey" => {
                    assert!(
                        answer["secret"].as_str().unwrap().starts_with("sy-"),
                        "{stdout}"
                    );
                    key_id = answer["key"]["id"].as_str().unwrap().to_owned();
                }
                "switchyard.v1.AccessService/RevokeApiKey" => {
                    assert_eq!(answer["id"], key_id.as_str(), "{stdout}");
                    assert!(answer["revokedAt"].is_string(), "{stdout}");
                }
                _ => {}
            }
        }
        ran.push(method);
    }
    // The README must keep showing these; a removed example fails here.
    for method in [
        "list",
        "switchyard.v1.TraceService/ListTraces",
        "switchyard.v1.TraceService/GetTrace",
        "switchyard.v1.TraceService/AggregateTraces",
        "switchyard.v1.TraceService/WhatIf",
        "switchyard.v1.TraceService/ReplayTrace",
        "switchyard.v1.InferenceService/Route",
        "switchyard.v1.ClusterService/Status",
        "switchyard.v1.HealthService/ListTargetHealth",
        "switchyard.v1.RegistryService/CreateStrategy",
        "switchyard.v1.AccessService/CreateApiKey",
        "switchyard.v1.AccessService/RevokeApiKey",
    ] {
        assert!(
            ran.iter().any(|m| m == method),
            "README lost its {method} example: {ran:?}"
        );
    }
}

//! ReplayTrace end to end: the payload policy decides what a trace keeps of
//! the request and the answer, and a request kept whole runs again through a
//! data plane in each of the three modes, linked to its original.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use sha2::Digest;
use support::{ControlPlane, DataPlane, registry_yaml};
use switchyard_proto::v1 as pb;
use switchyard_testkit::{Behavior, MockProvider};

fn replay(trace_id: &str, mode: pb::ReplayMode) -> pb::ReplayTraceRequest {
    pb::ReplayTraceRequest {
        trace_id: trace_id.into(),
        mode: mode.into(),
        ..Default::default()
    }
}

fn is_sha256(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn a_request_kept_whole_replays_in_every_mode_and_links_to_its_original() {
    let (cheap, dear) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    let mut cp = ControlPlane::start_with(
        &registry_yaml(&[("cheap", &cheap.base_url()), ("dear", &dear.base_url())]),
        &["--trace-payload", "full"],
    )
    .await
    .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    cp.restart_with(&["--replay-via", &dp.http]).await.unwrap();

    let id = dp.chat("mock-model", None).await;
    let original = cp.wait_for_trace(&id).await;
    assert_eq!(original.payload(), pb::TracePayload::Full);
    let request: serde_json::Value = serde_json::from_slice(&original.request_json).unwrap();
    assert_eq!(request["messages"][0]["content"], "hello");
    assert!(is_sha256(&original.request_sha256));
    assert!(!original.output_text.is_empty());
    assert!(is_sha256(&original.output_sha256));

    let mut traces = cp.traces().await;
    let current = traces
        .replay_trace(replay(&id, pb::ReplayMode::CurrentRouting))
        .await
        .unwrap()
        .into_inner();
    let first = current.replay.unwrap();
    assert_eq!(current.original.unwrap().trace_id, id);
    assert_eq!(first.replay_of, id);
    assert_ne!(first.trace_id, id);
    assert_eq!(first.outcome(), pb::Outcome::Success);
    // The mock answers the same question with the same text.
    assert!(current.outputs_equal);

    let pinned = traces
        .replay_trace(pb::ReplayTraceRequest {
            target_id: "dear/mock-model".into(),
            ..replay(&id, pb::ReplayMode::PinnedTarget)
        })
        .await
        .unwrap()
        .into_inner()
        .replay
        .unwrap();
    assert_eq!(pinned.final_target, "dear/mock-model");
    assert_eq!(pinned.replay_of, id);

    let under_cost = traces
        .replay_trace(pb::ReplayTraceRequest {
            strategy: "cost".into(),
            ..replay(&id, pb::ReplayMode::Strategy)
        })
        .await
        .unwrap()
        .into_inner()
        .replay
        .unwrap();
    assert_eq!(under_cost.strategy, "cost");
    assert_eq!(under_cost.final_target, "cheap/mock-model");

    // Replays are found by their origin; originals stay apart.
    let list = |origin: pb::ReplayOrigin, of: &str| pb::ListTracesRequest {
        replay_origin: origin.into(),
        replay_of: of.into(),
        ..Default::default()
    };
    let replays = traces
        .list_traces(list(pb::ReplayOrigin::Any, &id))
        .await
        .unwrap()
        .into_inner()
        .traces;
    assert_eq!(replays.len(), 3);
    let originals = traces
        .list_traces(list(pb::ReplayOrigin::Originals, ""))
        .await
        .unwrap()
        .into_inner()
        .traces;
    assert_eq!(originals.len(), 1);
    assert_eq!(originals[0].trace_id, id);

    // Bad input gets the right status, naming the field.
    for (request, code, starts) in [
        (
            replay("no-such-trace", pb::ReplayMode::CurrentRouting),
            tonic::Code::NotFound,
            "trace",
        ),
        (
            replay(&id, pb::ReplayMode::Unspecified),
            tonic::Code::InvalidArgument,
            "mode",
        ),
        (
            replay(&id, pb::ReplayMode::PinnedTarget),
            tonic::Code::InvalidArgument,
            "target_id",
        ),
        (
            replay(&id, pb::ReplayMode::Strategy),
            tonic::Code::InvalidArgument,
            "strategy",
        ),
        (
            pb::ReplayTraceRequest {
                target_id: "nowhere/none".into(),
                ..replay(&id, pb::ReplayMode::PinnedTarget)
            },
            tonic::Code::FailedPrecondition,
            "the data plane refused",
        ),
    ] {
        let status = traces.replay_trace(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().starts_with(starts), "{}", status.message());
    }
}

#[tokio::test]
async fn the_payload_policy_decides_what_traces_keep_and_only_whole_requests_replay() {
    let mock = MockProvider::start().await.unwrap();
    // The default policy: hashes only.
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let id = dp.chat("mock-model", None).await;
    let hashed = cp.wait_for_trace(&id).await;
    assert_eq!(hashed.payload(), pb::TracePayload::Hash);
    assert!(is_sha256(&hashed.request_sha256));
    assert!(is_sha256(&hashed.output_sha256));
    assert!(hashed.request_json.is_empty());
    assert!(hashed.output_text.is_empty());
    let status = cp
        .traces()
        .await
        .replay_trace(replay(&id, pb::ReplayMode::CurrentRouting))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("--trace-payload full"),
        "{}",
        status.message()
    );

    // Nothing kept by default, but one workspace's policy keeps its requests whole.
    let registry = registry_yaml(&[("alpha", &mock.base_url())])
        + "workspaces:\n  - name: audited\n    trace_payload: full\n";
    let cp = ControlPlane::start_with(&registry, &["--trace-payload", "none"])
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let id = dp.chat("mock-model", None).await;
    let bare = cp.wait_for_trace(&id).await;
    assert_eq!(bare.payload(), pb::TracePayload::None);
    assert!(bare.request_sha256.is_empty() && bare.output_sha256.is_empty());
    assert!(bare.request_json.is_empty() && bare.output_text.is_empty());

    let key = cp.api_key("audited").await;
    let response = support::http_client()
        .post(dp.chat_url())
        .bearer_auth(&key)
        .json(&serde_json::json!({
            "model": "mock-model",
            "messages": [{"role": "user", "content": "kept"}],
        }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let whole = cp.wait_for_trace(&id).await;
    assert_eq!(whole.workspace, "audited");
    assert_eq!(whole.payload(), pb::TracePayload::Full);
    let request: serde_json::Value = serde_json::from_slice(&whole.request_json).unwrap();
    assert_eq!(request["messages"][0]["content"], "kept");
    assert!(!whole.output_text.is_empty());
}

#[tokio::test]
async fn a_streamed_tool_call_is_kept_and_compared_with_its_replay() {
    let mock = MockProvider::start().await.unwrap();
    let weather = r#"{"city":"Oslo"}"#;
    mock.set_default(Behavior::tool_call("get_weather", weather));
    let registry = registry_yaml(&[("alpha", &mock.base_url())])
        .replace("{ streaming: true }", "{ streaming: true, tools: true }");
    let mut cp = ControlPlane::start_with(&registry, &["--trace-payload", "full"])
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    cp.restart_with(&["--replay-via", &dp.http]).await.unwrap();

    let response = support::http_client()
        .post(dp.chat_url())
        .json(&serde_json::json!({
            "model": "mock-model",
            "stream": true,
            "messages": [{"role": "user", "content": "weather in Oslo?"}],
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            }}],
        }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    support::sse_data(response).await;
    let original = cp.wait_for_trace(&id).await;
    assert!(original.stream);
    assert_eq!(
        original.output_tool_calls,
        vec![pb::OutputToolCall {
            name: "get_weather".into(),
            arguments: weather.into(),
        }]
    );
    assert_eq!(
        original.output_sha256,
        // The documented form: the text (none here), then NUL, name, NUL, arguments.
        format!(
            "{:x}",
            sha2::Sha256::digest(format!("\0get_weather\0{weather}").as_bytes())
        )
    );

    // The replay is not streamed, yet the same call compares equal...
    let mut traces = cp.traces().await;
    let same = traces
        .replay_trace(replay(&id, pb::ReplayMode::CurrentRouting))
        .await
        .unwrap()
        .into_inner();
    assert!(same.outputs_equal);
    assert_eq!(
        same.replay.unwrap().output_tool_calls,
        original.output_tool_calls
    );
    // ... and a call with other arguments does not.
    mock.set_default(Behavior::tool_call("get_weather", r#"{"city":"Rome"}"#));
    let other = traces
        .replay_trace(replay(&id, pb::ReplayMode::CurrentRouting))
        .await
        .unwrap()
        .into_inner();
    assert!(!other.outputs_equal);
}

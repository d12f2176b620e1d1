//! A data plane's graceful stop with real processes: on SIGTERM readiness
//! turns false at once, a long stream under way finishes within the grace
//! period, its trace reaches the control plane, and the process exits
//! cleanly; a stream longer than the grace is cut, traced as cancelled, and
//! its client told why.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use support::{ControlPlane, DataPlane, http_client, registry_yaml};
use switchyard_proto::v1 as pb;
use switchyard_testkit::{Behavior, MockProvider};

/// Starts a streamed chat completion and returns its trace id and the body,
/// once the first content has arrived.
async fn start_stream(
    dp: &DataPlane,
) -> (
    String,
    impl futures::Stream<Item = reqwest::Result<bytes::Bytes>>,
    String,
) {
    let response = http_client()
        .post(dp.chat_url())
        .json(&json!({
            "model": "mock-model",
            "stream": true,
            "messages": [{"role": "user", "content": "tell me a long story"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("part0") {
        let chunk = body.next().await.expect("the stream started").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    (trace_id, body, seen)
}

/// Reads the rest of a body, however it ends.
async fn read_rest(
    mut body: impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    mut seen: String,
) -> String {
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), body.next())
        .await
        .expect("the stream ended within 30 s")
    {
        match chunk {
            Ok(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Err(_) => break,
        }
    }
    seen
}

async fn readiness(dp: &DataPlane) -> Option<u16> {
    http_client()
        .get(format!("{}/readyz", dp.http))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Waits for the process to exit on its own; returns whether it succeeded.
async fn exit_status(dp: &mut DataPlane) -> bool {
    for _ in 0..600 {
        if let Some(status) = dp.process.exited() {
            return status.success();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the data plane did not exit within 30 s of SIGTERM:\n{}",
        dp.process.log_text()
    );
}

async fn start(
    mock: &MockProvider,
    grace: &str,
    drain_delay: &str,
) -> (ControlPlane, DataPlane, tempfile::TempDir) {
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let envs = [
        ("SWITCHYARD_SHUTDOWN_GRACE", grace.to_owned()),
        ("SWITCHYARD_DRAIN_DELAY", drain_delay.to_owned()),
    ];
    let dp = DataPlane::start_on(&[&cp], "dp-draining", dir.path(), &envs)
        .await
        .unwrap();
    (cp, dp, dir)
}

#[tokio::test]
async fn sigterm_during_a_long_stream_lets_it_finish_within_the_grace_period() {
    let mock = MockProvider::start().await.unwrap();
    // About 3 s of answer, well past the drain delay.
    mock.set_default(Behavior::SlowStream {
        chunks: 30,
        every: Duration::from_millis(100),
    });
    let (cp, mut dp, _dir) = start(&mock, "30s", "1s").await;
    assert_eq!(readiness(&dp).await, Some(200));

    let (trace_id, body, seen) = start_stream(&dp).await;
    dp.process.signal("TERM").await;
    // Readiness turns false at once, while the stream goes on.
    let mut not_ready = false;
    for _ in 0..100 {
        if readiness(&dp).await == Some(503) {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(not_ready, "readiness stayed true after SIGTERM");

    let text = read_rest(Box::pin(body), seen).await;
    assert!(text.contains("part29"), "the stream was cut:\n{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(exit_status(&mut dp).await, "{}", dp.process.log_text());

    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.outcome, i32::from(pb::Outcome::Success));
}

#[tokio::test]
async fn a_stream_longer_than_the_grace_is_cut_traced_and_its_client_told() {
    let mock = MockProvider::start().await.unwrap();
    // About 60 s of answer against a grace of 1 s.
    mock.set_default(Behavior::SlowStream {
        chunks: 600,
        every: Duration::from_millis(100),
    });
    let (cp, mut dp, _dir) = start(&mock, "1s", "0s").await;

    let (trace_id, body, seen) = start_stream(&dp).await;
    dp.process.signal("TERM").await;
    let text = read_rest(Box::pin(body), seen).await;
    assert!(!text.contains("part599"), "the stream ran to its end");
    assert!(
        !text.contains("[DONE]"),
        "a cut stream must not look finished"
    );
    assert!(
        text.contains("shutting_down"),
        "the client was not told:\n{text}"
    );
    assert!(exit_status(&mut dp).await, "{}", dp.process.log_text());

    let trace = cp.wait_for_trace(&trace_id).await;
    assert_eq!(trace.outcome, i32::from(pb::Outcome::Cancelled));
    assert!(trace.error_message.contains("shut down"), "{trace:?}");
}

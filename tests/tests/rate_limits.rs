//! Rate limits across data planes: two real data planes share a workspace's
//! limit through one Redis and never admit more than it allows; a request
//! over it gets 429 with `Retry-After` and OpenAI's `x-ratelimit-*` headers.
//! With Redis killed, traffic goes on under each node's share of the limit,
//! and the metrics say so.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{ControlPlane, DataPlane, Redis, http_client, registry_yaml};
use switchyard_testkit::MockProvider;

/// Requests a minute the workspace may make (and its burst).
const RPM: u64 = 6;

/// The sum of a metric's samples whose line contains every `labels` part.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends `n` requests at once, spread over the data planes from `first` on.
async fn send_all(dps: &[&DataPlane], key: &str, n: usize, first: usize) -> Vec<reqwest::Response> {
    let sends = (0..n).map(|i| {
        let url = dps[(first + i) % dps.len()].chat_url();
        let key = key.to_owned();
        async move {
            http_client()
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}))
                .send()
                .await
                .unwrap()
        }
    });
    futures::future::join_all(sends).await
}

/// Sends `n` requests at once; returns the statuses and one 429 response's
/// headers and body, if any.
async fn burst(
    dps: &[&DataPlane],
    key: &str,
    n: usize,
) -> (
    Vec<u16>,
    Option<(reqwest::header::HeaderMap, serde_json::Value)>,
) {
    let mut statuses = Vec::new();
    let mut denied = None;
    for response in send_all(dps, key, n, 0).await {
        statuses.push(response.status().as_u16());
        if response.status() == 429 && denied.is_none() {
            let headers = response.headers().clone();
            denied = Some((headers, response.json().await.unwrap()));
        }
    }
    (statuses, denied)
}

#[tokio::test]
async fn two_data_planes_share_one_limit_and_fall_back_to_their_share_without_redis() {
    let mock = MockProvider::start().await.unwrap();
    let mut redis = Redis::start().await.unwrap();
    let registry = registry_yaml(&[("alpha", &mock.base_url())])
        + &format!(
            "workspaces:\n  - name: metered\n    limits: {{ requests_per_minute: {RPM} }}\n"
        );
    let cp = ControlPlane::start(&registry).await.unwrap();
    let envs = [
        ("SWITCHYARD_REDIS_URL", redis.url.clone()),
        ("SWITCHYARD_RATE_LIMIT_PROBE_INTERVAL", "100ms".to_owned()),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = DataPlane::start_on(&[&cp], "dp-a", dir_a.path(), &envs)
        .await
        .unwrap();
    let b = DataPlane::start_on(&[&cp], "dp-b", dir_b.path(), &envs)
        .await
        .unwrap();
    let key = cp.api_key("metered").await;
    // Both data planes hold the key and a snapshot that counts both of them.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = cp.status().await.unwrap();
        let version = status.snapshot_version;
        let mut ready = true;
        for dp in [&a, &b] {
            ready &= metric(&dp.metrics().await, "switchyard_dp_snapshot_version", &[]) as u64
                >= version;
        }
        if ready && status.data_planes.len() == 2 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            break;
        }
        assert!(Instant::now() < deadline, "the data planes never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Shared through Redis: across both, the burst and no more.
    let started = Instant::now();
    let (statuses, denied) = burst(&[&a, &b], &key, 20).await;
    let earned = (started.elapsed().as_secs_f64() * RPM as f64 / 60.0).floor() as u64;
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(
        (RPM..=RPM + earned).contains(&admitted),
        "admitted {admitted} of 20 with a limit of {RPM} (+{earned} earned back): {statuses:?}"
    );
    let (headers, body) = denied.expect("some requests are over the limit");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("workspace"),
        "{body}"
    );
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(
        headers["x-ratelimit-limit-requests"],
        RPM.to_string().as_str()
    );
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    let mut shared_denials = 0.0;
    for dp in [&a, &b] {
        shared_denials += metric(
            &dp.metrics().await,
            "switchyard_dp_limiter_decisions_total",
            &["mode=\"redis\"", "decision=\"denied\""],
        );
    }
    assert_eq!(shared_denials as u64, 20 - admitted);

    // Redis gone: each node enforces its half of the limit on its own.
    redis.kill().await;
    let (statuses, _) = burst(&[&a, &b], &key, 20).await;
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    // Each starts from a full bucket of its share (3), once.
    assert!(
        (2..=RPM).contains(&admitted),
        "admitted {admitted} without Redis: {statuses:?}"
    );
    for dp in [&a, &b] {
        let metrics = dp.metrics().await;
        assert_eq!(
            metric(&metrics, "switchyard_dp_limiter_local_mode", &[]),
            1.0,
            "{metrics}"
        );
        assert!(
            metric(
                &metrics,
                "switchyard_dp_limiter_decisions_total",
                &["mode=\"local\""]
            ) > 0.0,
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn a_workspace_budget_holds_across_two_data_planes() {
    let mock = MockProvider::start().await.unwrap();
    // About eight requests' worth at the mock's prices (1 and 2 USD per
    // million input and output tokens), as the snapshot prices them.
    let cap = 0.0002;
    let registry = registry_yaml(&[("alpha", &mock.base_url())])
        + &format!("workspaces:\n  - name: capped\n    budget: {{ daily_usd: {cap} }}\n");
    let cp = ControlPlane::start(&registry).await.unwrap();
    let redis = std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .expect("SWITCHYARD_TEST_REDIS_URL is not set: run the suite with ./scripts/test.sh");
    let envs = [
        ("SWITCHYARD_REDIS_URL", redis),
        // Counters of this test's own.
        (
            "SWITCHYARD_RATE_LIMIT_KEY_PREFIX",
            format!("test-{}", uuid::Uuid::new_v4().simple()),
        ),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = DataPlane::start_on(&[&cp], "dp-a", dir_a.path(), &envs)
        .await
        .unwrap();
    let b = DataPlane::start_on(&[&cp], "dp-b", dir_b.path(), &envs)
        .await
        .unwrap();
    let key = cp.api_key("capped").await;
    let version = cp.status().await.unwrap().snapshot_version;
    for dp in [&a, &b] {
        while (metric(&dp.metrics().await, "switchyard_dp_snapshot_version", &[]) as u64) < version
        {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    let mut admitted = Vec::new();
    let mut refusal = None;
    for round in 0..6 {
        for response in send_all(&[&a, &b], &key, 6, round).await {
            match response.status().as_u16() {
                200 => admitted.push(
                    response.headers()["x-switchyard-trace-id"]
                        .to_str()
                        .unwrap()
                        .to_owned(),
                ),
                429 => {
                    let retry: u64 = response.headers()["retry-after"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    let body: serde_json::Value = response.json().await.unwrap();
                    refusal = Some((retry, body));
                }
                other => panic!("unexpected status {other}"),
            }
        }
    }
    let (retry, body) = refusal.expect("the budget ran out");
    assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("daily budget") && message.contains("resets at"),
        "{message}"
    );
    assert!((1..=86_400).contains(&retry), "retry-after {retry}");
    assert!(!admitted.is_empty());
    // Every reservation was an upper bound (max_tokens is set), so what was
    // spent stays within the cap: the documented overshoot here is zero.
    let mut spent = 0.0;
    for id in &admitted {
        spent += cp.wait_for_trace(id).await.cost_usd;
    }
    assert!(spent <= cap, "spent {spent} with a cap of {cap}");
    assert!(
        spent > cap / 4.0,
        "spent only {spent} of {cap}: the cap refused too early"
    );
}

#[tokio::test]
async fn limits_that_fail_closed_answer_503_while_redis_is_unreachable() {
    let mock = MockProvider::start().await.unwrap();
    let registry = registry_yaml(&[("alpha", &mock.base_url())])
        + &format!(
            "workspaces:\n  - name: metered\n    limits: {{ requests_per_minute: {RPM} }}\n"
        );
    let cp = ControlPlane::start(&registry).await.unwrap();
    // Nothing listens there: Redis is down from the start.
    let envs = [
        (
            "SWITCHYARD_REDIS_URL",
            format!("redis://127.0.0.1:{}", support::free_port()),
        ),
        ("SWITCHYARD_RATE_LIMIT_ON_REDIS_DOWN", "deny".to_owned()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let dp = DataPlane::start_on(&[&cp], "dp-closed", dir.path(), &envs)
        .await
        .unwrap();
    let key = cp.api_key("metered").await;
    let mut refused = None;
    for _ in 0..100 {
        let response = send_all(&[&dp], &key, 1, 0).await.remove(0);
        // The key reaches the data plane with the next snapshot.
        if response.status() != 401 {
            refused = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = refused.expect("the key never reached the data plane");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limits_unavailable", "{body}");
    // A workspace without limits does not depend on Redis.
    let response = send_all(&[&dp], support::API_KEY, 1, 0).await.remove(0);
    assert_eq!(response.status(), 200);
}

//! API keys and the admin token end to end: data planes refuse requests
//! without a working key (HTTP and gRPC), keep a key to its workspace and
//! models, and stop accepting a revoked or rotated secret on every data plane
//! with the snapshot that carries the change; control-plane RPCs need the
//! admin token. Keys are managed with the real CLI.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use serde_json::{Value, json};
use support::{
    ADMIN_TOKEN, API_KEY, ControlPlane, DataPlane, anonymous_http_client, binary, registry_yaml,
};
use switchyard_proto::v1 as pb;
use switchyard_testkit::MockProvider;
use tokio::process::Command;

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

/// Status and body of one chat completion sent with `key` (or none).
async fn send(dp: &DataPlane, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = anonymous_http_client().post(dp.chat_url()).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Runs `switchyard keys <args>` against `cp`; returns its stdout, or panics.
async fn keys(cp: &ControlPlane, args: &[&str]) -> String {
    let output = Command::new(binary("switchyard"))
        .arg("keys")
        .args(args)
        .args(["--control-plane", &cp.addr])
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "switchyard keys {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The snapshot version a data plane has applied, from its metrics.
async fn applied_version(dp: &DataPlane) -> u64 {
    let metrics = dp.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_dp_snapshot_version "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Waits until every data plane has applied `version` or a later snapshot.
async fn wait_for_version(dps: &[&DataPlane], version: u64) {
    for _ in 0..200 {
        let mut all = true;
        for dp in dps {
            all &= applied_version(dp).await >= version;
        }
        if all {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the data planes never applied snapshot {version}");
}

async fn leader_version(cp: &ControlPlane) -> u64 {
    cp.status().await.unwrap().snapshot_version
}

#[tokio::test]
async fn requests_need_a_key_bound_to_its_workspace_and_models() {
    let mock = MockProvider::start().await.unwrap();
    let registry =
        registry_yaml(&[("alpha", &mock.base_url())]) + "workspaces:\n  - name: finance\n";
    let cp = ControlPlane::start(&registry).await.unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();

    // No key, a malformed header, an unknown key: 401 in OpenAI's shape.
    let (status, body) = send(&dp, None, &chat("mock-model")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "authentication_error");
    let unknown = "sy-not-a-key-0123456789abcdefghijklmnopqrst";
    let (status, body) = send(&dp, Some(unknown), &chat("mock-model")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        !body.to_string().contains(unknown),
        "the key is echoed: {body}"
    );
    let response = anonymous_http_client()
        .get(format!("{}/v1/models", dp.http))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    // Every answer carries the security headers, refusals included.
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(response.headers()[name], value, "{name}");
    }
    // Health, readiness and metrics stay open for probes and scrapers.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = anonymous_http_client()
            .get(format!("{}{path}", dp.http))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }

    // The same on gRPC.
    let channel = tonic::transport::Channel::from_shared(dp.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = pb::CompleteRequest {
        model: "mock-model".into(),
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: "hello".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let status = pb::inference_service_client::InferenceServiceClient::new(channel)
        .complete(request.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let answer = dp.inference().await.complete(request).await.unwrap();
    assert!(!answer.into_inner().content.is_empty());

    // A key of the default workspace cannot act for another one.
    let response = support::http_client()
        .post(dp.chat_url())
        .header("x-switchyard-workspace", "finance")
        .json(&chat("mock-model"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // A finance key makes finance's requests, and only for the models it lists.
    let issued = keys(
        &cp,
        &[
            "create",
            "--workspace",
            "finance",
            "--name",
            "ledger",
            "--model",
            "auto",
            "--json",
        ],
    )
    .await;
    let issued: Value = serde_json::from_str(&issued).unwrap();
    let secret = issued["secret"].as_str().unwrap().to_owned();
    wait_for_version(&[&dp], leader_version(&cp).await).await;
    let (status, body) = send(&dp, Some(&secret), &chat("mock-model")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "permission_denied");
    let (status, body) = send(&dp, Some(&secret), &chat("auto")).await;
    assert_eq!(status, 200, "{body}");
    let trace = cp
        .wait_for_trace(body["switchyard"]["trace_id"].as_str().unwrap())
        .await;
    assert_eq!(trace.workspace, "finance");

    // Keys of an unregistered workspace are refused up front.
    let output = Command::new(binary("switchyard"))
        .args(["keys", "create", "--workspace", "nowhere", "--name", "x"])
        .args(["--control-plane", &cp.addr])
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("FailedPrecondition") && stderr.contains("nowhere"),
        "{stderr}"
    );

    // The control plane's RPCs need the admin token; health does not.
    let channel = cp.channel().await;
    for token in [None, Some("wrong-token-wrong-token-wrong-token-x")] {
        let mut registry = pb::registry_service_client::RegistryServiceClient::with_interceptor(
            channel.clone(),
            move |mut r: tonic::Request<()>| {
                if let Some(token) = token {
                    r.metadata_mut()
                        .insert("authorization", format!("Bearer {token}").parse().unwrap());
                }
                Ok(r)
            },
        );
        let status = registry
            .list_providers(pb::ListProvidersRequest {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    }
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(health.into_inner().status, 1);

    // No secret reaches a log.
    for log in [cp.process.log_text(), dp.process.log_text()] {
        for secret in [secret.as_str(), API_KEY, ADMIN_TOKEN, unknown] {
            assert!(!log.contains(secret), "a secret is in a log");
        }
    }
}

#[tokio::test]
async fn a_revoked_or_rotated_key_stops_working_on_every_data_plane_with_the_next_snapshot() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let (a, b) = (
        DataPlane::start_as(&cp, "dp-a").await.unwrap(),
        DataPlane::start_as(&cp, "dp-b").await.unwrap(),
    );
    let issued: Value =
        serde_json::from_str(&keys(&cp, &["create", "--name", "svc", "--json"]).await).unwrap();
    let (id, secret) = (
        issued["key"]["id"].as_str().unwrap().to_owned(),
        issued["secret"].as_str().unwrap().to_owned(),
    );
    wait_for_version(&[&a, &b], leader_version(&cp).await).await;
    for dp in [&a, &b] {
        assert_eq!(send(dp, Some(&secret), &chat("mock-model")).await.0, 200);
    }

    // Rotation: the new secret works and the old one does not, on both.
    let rotated: Value =
        serde_json::from_str(&keys(&cp, &["rotate", &id, "--json"]).await).unwrap();
    let fresh = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(fresh, secret);
    wait_for_version(&[&a, &b], leader_version(&cp).await).await;
    for dp in [&a, &b] {
        assert_eq!(send(dp, Some(&secret), &chat("mock-model")).await.0, 401);
        assert_eq!(send(dp, Some(&fresh), &chat("mock-model")).await.0, 200);
    }

    // Revocation: refused by both as soon as they hold the snapshot after it.
    let listed = keys(&cp, &["list"]).await;
    assert!(
        listed.contains(&id) && listed.contains("active"),
        "{listed}"
    );
    keys(&cp, &["revoke", &id]).await;
    wait_for_version(&[&a, &b], leader_version(&cp).await).await;
    for dp in [&a, &b] {
        let (status, body) = send(dp, Some(&fresh), &chat("mock-model")).await;
        assert_eq!(status, 401, "{body}");
    }
    let listed = keys(&cp, &["list", "--all"]).await;
    assert!(listed.contains("revoked"), "{listed}");
    // The harness's own key is untouched.
    assert_eq!(send(&a, Some(API_KEY), &chat("mock-model")).await.0, 200);
}

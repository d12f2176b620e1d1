//! Configuration read again without a restart (SIGHUP), where that is safe:
//! a control plane applies its bootstrap file again and publishes the
//! change, refusing a broken file without harm; a data plane reads its
//! provider secrets again, so a key mounted or rotated in a file is used at
//! once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{ControlPlane, DataPlane, http_client, registry_yaml, with_api_key};
use switchyard_proto::v1 as pb;
use switchyard_testkit::MockProvider;

async fn provider_names(cp: &ControlPlane) -> Vec<String> {
    cp.registry()
        .await
        .list_providers(pb::ListProvidersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .providers
        .into_iter()
        .map(|p| p.name)
        .collect()
}

async fn chat(dp: &DataPlane, model: &str) -> reqwest::Response {
    http_client()
        .post(dp.chat_url())
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sighup_applies_the_bootstrap_file_again_and_a_broken_one_changes_nothing() {
    let (alpha, beta) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &alpha.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    assert_eq!(provider_names(&cp).await, ["alpha"]);

    // A broken file: the control plane stays up and changes nothing.
    std::fs::write(cp.bootstrap_path(), "providers: [ {").unwrap();
    cp.process.signal("HUP").await;
    let mut logged = false;
    for _ in 0..100 {
        if cp.process.log_text().contains("bootstrap file not applied") {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logged, "{}", cp.process.log_text());
    assert_eq!(provider_names(&cp).await, ["alpha"]);

    // A second provider in the file: registered and published on SIGHUP.
    let registry = registry_yaml(&[("alpha", &alpha.base_url()), ("beta", &beta.base_url())]);
    std::fs::write(cp.bootstrap_path(), with_api_key(&registry)).unwrap();
    cp.process.signal("HUP").await;
    let mut served = false;
    for _ in 0..200 {
        if chat(&dp, "beta/mock-model").await.status() == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "beta never reached the data plane");
    assert_eq!(provider_names(&cp).await, ["alpha", "beta"]);
    assert_eq!(beta.client_request_count(), 1);
}

#[tokio::test]
async fn sighup_makes_a_data_plane_read_provider_secrets_again() {
    let mock = MockProvider::start().await.unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("alpha-key");
    let registry = registry_yaml(&[("alpha", &mock.base_url())]).replace(
        "api_key_ref: env:MOCK_API_KEY",
        &format!("api_key_ref: file:{}", key_file.display()),
    );
    let cp = ControlPlane::start(&registry).await.unwrap();
    let mut dp = DataPlane::start(&cp).await.unwrap();

    // No key file yet: the provider cannot be called from this node.
    let response = chat(&dp, "mock-model").await;
    assert_eq!(response.status(), 503, "{:?}", response.text().await);
    assert_eq!(mock.client_request_count(), 0);

    // The key appears (a Secret mounted late); SIGHUP, and it is used.
    std::fs::write(&key_file, "sk-first\n").unwrap();
    dp.process.signal("HUP").await;
    let mut served = false;
    for _ in 0..100 {
        if chat(&dp, "mock-model").await.status() == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "{}", dp.process.log_text());

    // Rotated: the next request after SIGHUP carries the new key.
    std::fs::write(&key_file, "sk-second\n").unwrap();
    dp.process.signal("HUP").await;
    let mut rotated = false;
    for _ in 0..100 {
        assert_eq!(chat(&dp, "mock-model").await.status(), 200);
        let last = mock.requests().last().unwrap().authorization.clone();
        if last.as_deref() == Some("Bearer sk-second") {
            rotated = true;
            break;
        }
        assert_eq!(last.as_deref(), Some("Bearer sk-first"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rotated, "the rotated key was never used");
    // Still the same process: nothing restarted.
    assert!(dp.process.exited().is_none());
}

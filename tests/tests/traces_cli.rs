//! `switchyard traces` as operators run it: the real CLI binary against a
//! running control plane holding the traces of real requests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use serde_json::Value;
use support::{ControlPlane, DataPlane, binary, registry_yaml};
use switchyard_testkit::MockProvider;
use tokio::process::Command;

/// Runs `switchyard traces <args> --control-plane <cp>`; returns (success, stdout, stderr).
async fn traces(cp: &ControlPlane, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary("switchyard"))
        .arg("traces")
        .args(args)
        .args(["--control-plane", &cp.addr])
        .env("SWITCHYARD_ADMIN_TOKEN", support::ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn the_cli_lists_gets_and_aggregates_traces_as_tables_and_json() {
    let mock = MockProvider::start().await.unwrap();
    let mut cp = ControlPlane::start_with(
        &registry_yaml(&[("alpha", &mock.base_url())]),
        &["--trace-payload", "full"],
    )
    .await
    .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    cp.restart_with(&["--replay-via", &dp.http]).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(dp.chat("mock-model", None).await);
    }
    for id in &ids {
        cp.wait_for_trace(id).await;
    }

    // JSON in the proto3 mapping, newest first, paged.
    let (ok, out, err) = traces(&cp, &["list", "--limit", "2", "--json"]).await;
    assert!(ok, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    let listed: Vec<&str> = page["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    let token = page["nextPageToken"].as_str().unwrap();
    let (ok, out, _) = traces(&cp, &["list", "--json", "--page-token", token]).await;
    assert!(ok);
    let rest: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rest["traces"][0]["traceId"], ids[0].as_str());

    // A table, filtered.
    let (ok, out, _) = traces(&cp, &["list", "--provider", "alpha", "--since", "1h"]).await;
    assert!(ok);
    assert!(out.starts_with("RECEIVED (UTC)"), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("alpha/mock-model"))
            .count(),
        3
    );
    let (ok, out, _) = traces(&cp, &["list", "--outcome", "failed"]).await;
    assert!(ok);
    assert!(out.contains("(no traces)"), "{out}");

    // One trace whole.
    let (ok, out, _) = traces(&cp, &["get", &ids[0]]).await;
    assert!(ok);
    for expected in [
        ids[0].as_str(),
        "candidates",
        "attempts",
        "alpha/mock-model",
        "success",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }

    // Aggregates per provider.
    let (ok, out, _) = traces(&cp, &["aggregate", "--by", "provider", "--json"]).await;
    assert!(ok);
    let groups: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(groups["groups"][0]["key"], "alpha");
    assert_eq!(groups["groups"][0]["requests"], "3");

    // What another strategy would have done, by name or by weights.
    let (ok, out, err) = traces(&cp, &["what-if", "--strategy", "cost"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("3 traces re-scored"), "{out}");
    assert!(out.contains("alpha/mock-model"), "{out}");
    let (ok, out, err) = traces(
        &cp,
        &[
            "what-if",
            "--weight",
            "cost=3",
            "--weight",
            "quality=1",
            "--json",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["tracesConsidered"], "3");
    let (ok, _, err) = traces(&cp, &["what-if", "--weight", "colour=1"]).await;
    assert!(!ok);
    assert!(err.contains("unknown dimension"), "{err}");

    // A replay, side by side with its original.
    let (ok, out, err) = traces(&cp, &["replay", &ids[0], "--strategy", "cost"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&ids[0]) && out.contains("same answer text: yes"),
        "{out}"
    );

    // Bad input: a clear error and a failing exit status.
    let (ok, _, err) = traces(&cp, &["get", "no-such-trace"]).await;
    assert!(!ok);
    assert!(err.contains("NotFound"), "{err}");
    let (ok, _, err) = traces(&cp, &["aggregate", "--by", "colour"]).await;
    assert!(!ok);
    assert!(
        err.contains("expected workspace, provider or model"),
        "{err}"
    );
}

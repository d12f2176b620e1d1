//! The control plane's face to operators and data planes: registry validation,
//! registry changes reaching a running data plane, cluster status.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::time::Duration;

use support::{ControlPlane, DataPlane, http_client, registry_yaml};
use switchyard_proto::v1 as pb;
use switchyard_testkit::MockProvider;

fn model(provider: &str, name: &str) -> pb::Model {
    pb::Model {
        provider: provider.into(),
        name: name.into(),
        family: "late".into(),
        capabilities: Some(pb::Capabilities {
            streaming: true,
            ..Default::default()
        }),
        context_window: 8192,
        input_price_per_mtok: 0.5,
        output_price_per_mtok: 1.5,
        tier: pb::Tier::Standard.into(),
        enabled: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_registry_change_reaches_the_data_plane_as_a_new_acked_snapshot() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let mut registry = cp.registry().await;
    let mut cluster = cp.cluster().await;
    let before = cluster
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .snapshot_version;

    registry
        .create_model(pb::CreateModelRequest {
            model: Some(model("alpha", "added-later")),
        })
        .await
        .unwrap();

    // The data plane serves the new model...
    let client = http_client();
    let mut listed = false;
    for _ in 0..100 {
        let models: serde_json::Value = client
            .get(format!("{}/v1/models", dp.http))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "added-later")
        {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listed, "the new model never reached the data plane");

    // ...and the control plane knows it acked a newer version. (Fleet
    // telemetry may publish versions of its own meanwhile.)
    let status = cluster
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.snapshot_version > before);
    assert_eq!(status.leader, "test-cp");
    let node = status
        .data_planes
        .iter()
        .find(|d| d.node_id == "test-dp")
        .expect("data plane listed");
    assert!(node.sent_version > before);
    for _ in 0..100 {
        let status = cluster
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if status.data_planes.iter().any(|d| {
            d.node_id == "test-dp"
                && d.acked_version == status.snapshot_version
                && d.lag_versions == 0
                && d.last_ack_at.is_some()
        }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the data plane never acked the newest version");
}

/// The snapshot version once the control plane's first fleet telemetry (which
/// publishes versions of its own) has gone out: unchanged for 1.5 s.
async fn settled_version(cp: &ControlPlane) -> u64 {
    let mut cluster = cp.cluster().await;
    let mut last = (0, std::time::Instant::now());
    for _ in 0..100 {
        let version = cluster
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .snapshot_version;
        if version != last.0 {
            last = (version, std::time::Instant::now());
        } else if last.1.elapsed() >= Duration::from_millis(1500) {
            return version;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the snapshot version never settled");
}

#[tokio::test]
async fn registry_validation_names_the_bad_field_and_changes_nothing() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let mut registry = cp.registry().await;
    let revision_before = settled_version(&cp).await;

    let bad_url = pb::Provider {
        name: "beta".into(),
        kind: pb::ProviderKind::Openai.into(),
        base_url: "not a url".into(),
        enabled: true,
        ..Default::default()
    };
    let status = registry
        .create_provider(pb::CreateProviderRequest {
            provider: Some(bad_url),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("provider.base_url:"),
        "{}",
        status.message()
    );

    let mut bad_model = model("alpha", "m2");
    bad_model.input_price_per_mtok = -1.0;
    let status = registry
        .create_model(pb::CreateModelRequest {
            model: Some(bad_model),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("model.input_price_per_mtok:"),
        "{}",
        status.message()
    );

    let status = registry
        .create_model(pb::CreateModelRequest {
            model: Some(model("ghost", "m")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);

    let status = registry
        .create_provider(pb::CreateProviderRequest { provider: None })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("provider:"),
        "{}",
        status.message()
    );

    let status = registry
        .get_provider(pb::GetProviderRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    let status = registry
        .delete_provider(pb::DeleteProviderRequest {
            name: "alpha".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);

    let revision_after = cp
        .cluster()
        .await
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .snapshot_version;
    assert_eq!(
        revision_before, revision_after,
        "a rejected write must not publish anything"
    );
    let providers = registry
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers;
    assert_eq!(
        providers
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["alpha"]
    );
}

#[tokio::test]
async fn list_traces_rejects_bad_arguments() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let mut traces = cp.traces().await;
    for (request, field) in [
        (
            pb::ListTracesRequest {
                page_size: 100_000,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListTracesRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::ListTracesRequest {
                outcome: 99,
                ..Default::default()
            },
            "outcome",
        ),
        (
            pb::ListTracesRequest {
                error_class: 99,
                ..Default::default()
            },
            "error_class",
        ),
        (
            pb::ListTracesRequest {
                min_cost_usd: f64::NAN,
                ..Default::default()
            },
            "min_cost_usd",
        ),
        (
            pb::ListTracesRequest {
                min_cost_usd: -1.0,
                ..Default::default()
            },
            "min_cost_usd",
        ),
        (
            pb::ListTracesRequest {
                replay_origin: 7,
                ..Default::default()
            },
            "replay_origin",
        ),
        (
            pb::ListTracesRequest {
                replay_origin: pb::ReplayOrigin::Originals.into(),
                replay_of: "some-trace".into(),
                ..Default::default()
            },
            "replay_of",
        ),
    ] {
        let status = traces.list_traces(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    for (request, field) in [
        (pb::AggregateTracesRequest::default(), "group_by"),
        (
            pb::AggregateTracesRequest {
                group_by: 42,
                ..Default::default()
            },
            "group_by",
        ),
        (
            pb::AggregateTracesRequest {
                group_by: pb::TraceGrouping::Model.into(),
                start_time: Some(prost_types::Timestamp {
                    seconds: 2_000_000_000,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: 1_000_000_000,
                    nanos: 0,
                }),
                ..Default::default()
            },
            "end_time",
        ),
    ] {
        let status = traces.aggregate_traces(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    // Nothing stored yet: no groups, not an error.
    let empty = traces
        .aggregate_traces(pb::AggregateTracesRequest {
            group_by: pb::TraceGrouping::Workspace.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.groups.is_empty());
    let status = traces
        .get_trace(pb::GetTraceRequest {
            trace_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

/// The registry revision in the database, from the control plane's metrics.
async fn registry_revision(cp: &ControlPlane) -> u64 {
    let metrics = cp.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_cp_registry_revision "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .expect("the registry revision is exposed")
}

#[tokio::test]
async fn writes_that_would_leave_the_registry_unpublishable_are_refused() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let mut registry = cp.registry().await;

    let status = registry
        .delete_strategy(pb::DeleteStrategyRequest {
            name: "balanced".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");

    let ghost_default = pb::Workspace {
        name: "team".into(),
        default_strategy: "ghost".into(),
        ..Default::default()
    };
    let status = registry
        .create_workspace(pb::CreateWorkspaceRequest {
            workspace: Some(ghost_default),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().starts_with("workspace.default_strategy:"),
        "{}",
        status.message()
    );

    let team = pb::Workspace {
        name: "team".into(),
        default_strategy: "cost".into(),
        ..Default::default()
    };
    registry
        .create_workspace(pb::CreateWorkspaceRequest {
            workspace: Some(team),
        })
        .await
        .unwrap();
    // The registry's revision, not the snapshot version: the fleet's
    // telemetry publishes snapshots of its own.
    let before = registry_revision(&cp).await;

    let status = registry
        .delete_strategy(pb::DeleteStrategyRequest {
            name: "cost".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("workspace \"team\""),
        "{}",
        status.message()
    );

    // Scoping "cost" to another workspace would take it from "team".
    let mut cost = registry
        .get_strategy(pb::GetStrategyRequest {
            name: "cost".into(),
        })
        .await
        .unwrap()
        .into_inner();
    cost.workspace = "other".into();
    let status = registry
        .update_strategy(pb::UpdateStrategyRequest {
            strategy: Some(cost),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);

    let after = registry_revision(&cp).await;
    assert_eq!(before, after, "refused writes change nothing");
    assert!(
        registry
            .get_strategy(pb::GetStrategyRequest {
                name: "cost".into()
            })
            .await
            .is_ok()
    );
}

//! WhatIf against the traces of real requests: re-scoring stored traffic
//! under the strategy that routed it reproduces every choice (the control
//! plane weighs the stored scores exactly as the data plane did), and
//! another strategy moves the traffic as its weights say.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use support::{ControlPlane, DataPlane, registry_yaml};
use switchyard_proto::v1 as pb;
use switchyard_testkit::MockProvider;

async fn what_if(cp: &ControlPlane, request: pb::WhatIfRequest) -> pb::WhatIfResponse {
    cp.traces()
        .await
        .what_if(request)
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn what_if_reproduces_the_routing_of_stored_traffic_and_weighs_another_strategy() {
    let (cheap, dear) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    // registry_yaml prices each provider above the one before it.
    let cp = ControlPlane::start(&registry_yaml(&[
        ("cheap", &cheap.base_url()),
        ("dear", &dear.base_url()),
    ]))
    .await
    .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(dp.chat("mock-model", Some("speed")).await);
    }
    for id in &ids {
        cp.wait_for_trace(id).await;
    }

    // Re-scored under the weights they were routed with: no choice changes.
    let by_name = |name: &str| pb::WhatIfRequest {
        strategy: name.into(),
        ..Default::default()
    };
    let same = what_if(&cp, by_name("speed")).await;
    assert_eq!(same.traces_considered, 12);
    assert_eq!(same.traces_skipped, 0);
    assert_eq!(same.traces_changed, 0);
    assert_eq!(same.actual, same.what_if);
    assert_eq!(same.cost_change, 0.0);

    // Under the cost strategy everything goes to the cheap provider.
    let cost = what_if(&cp, by_name("cost")).await;
    assert_eq!(cost.what_if.len(), 1, "{:?}", cost.what_if);
    assert_eq!(cost.what_if[0].target_id, "cheap/mock-model");
    assert_eq!(cost.what_if[0].requests, 12);
    assert!(cost.cost_change <= 0.0, "{}", cost.cost_change);
    assert!(cost.cost_after_usd <= cost.cost_before_usd);
    assert!((0.0..=1.0).contains(&cost.confidence));

    // Ad-hoc weights work like a named strategy.
    let adhoc = what_if(
        &cp,
        pb::WhatIfRequest {
            weights: Some(pb::StrategyWeights {
                quality: 0.3,
                speed: 0.3,
                cost: 3.0,
                health: 1.0,
                workspace_fit: 1.0,
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(adhoc.what_if, cost.what_if);

    // Bad input names the field.
    let mut traces = cp.traces().await;
    for (request, field, code) in [
        (
            pb::WhatIfRequest::default(),
            "strategy",
            tonic::Code::InvalidArgument,
        ),
        (
            pb::WhatIfRequest {
                strategy: "cost".into(),
                weights: Some(pb::StrategyWeights::default()),
                ..Default::default()
            },
            "strategy",
            tonic::Code::InvalidArgument,
        ),
        (
            pb::WhatIfRequest {
                weights: Some(pb::StrategyWeights {
                    cost: -1.0,
                    ..Default::default()
                }),
                ..Default::default()
            },
            "weights.cost",
            tonic::Code::InvalidArgument,
        ),
        (
            by_name("no-such-strategy"),
            "strategy",
            tonic::Code::NotFound,
        ),
    ] {
        let status = traces.what_if(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().starts_with(field), "{}", status.message());
    }
}

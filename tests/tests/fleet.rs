//! The fleet loop end to end: data planes report health windows, the control
//! plane judges targets and pushes its verdicts back in snapshots over a stream
//! done like xDS (debounced, acked, refused versions never resent).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::time::{Duration, Instant};

use support::{ControlPlane, DataPlane, http_client, registry_yaml};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::snapshot_service_client::SnapshotServiceClient;
use switchyard_proto::v1::sync_request::Kind;
use switchyard_testkit::{Behavior, MockProvider};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A subscriber speaking the snapshot protocol by hand, like a data plane.
struct RawSubscriber {
    tx: mpsc::Sender<pb::SyncRequest>,
    inbound: tonic::Streaming<pb::SyncResponse>,
}

impl RawSubscriber {
    async fn connect(cp_addr: &str, node_id: &str) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let hello = pb::Hello {
            node_id: node_id.into(),
            region: "test".into(),
            last_applied_version: 0,
        };
        tx.send(pb::SyncRequest {
            kind: Some(Kind::Hello(hello)),
        })
        .await
        .unwrap();
        let channel = tonic::transport::Channel::from_shared(cp_addr.to_owned())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let inbound = SnapshotServiceClient::new(channel)
            .sync(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Self { tx, inbound }
    }

    async fn next(&mut self, within: Duration) -> Option<pb::SyncResponse> {
        tokio::time::timeout(within, self.inbound.message())
            .await
            .ok()
            .map(|m| m.unwrap().expect("stream open"))
    }

    async fn reply(&self, kind: Kind) {
        self.tx
            .send(pb::SyncRequest { kind: Some(kind) })
            .await
            .unwrap();
    }

    async fn ack(&self, m: &pb::SyncResponse) {
        let version = m.snapshot.as_ref().unwrap().version;
        self.reply(Kind::Ack(pb::Ack {
            version,
            nonce: m.nonce.clone(),
        }))
        .await;
    }
}

async fn status(cp: &ControlPlane) -> pb::StatusResponse {
    cp.cluster()
        .await
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn priced(provider: &str, price: f64) -> pb::Model {
    pb::Model {
        provider: provider.into(),
        name: "mock-model".into(),
        family: format!("mock-{provider}"),
        capabilities: Some(pb::Capabilities {
            streaming: true,
            ..Default::default()
        }),
        context_window: 100_000,
        input_price_per_mtok: price,
        output_price_per_mtok: price * 2.0,
        tier: pb::Tier::Standard.into(),
        enabled: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn every_subscriber_converges_on_the_last_version_under_a_burst_of_registry_changes() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dps = [
        DataPlane::start_as(&cp, "dp-1").await.unwrap(),
        DataPlane::start_as(&cp, "dp-2").await.unwrap(),
        DataPlane::start_as(&cp, "dp-3").await.unwrap(),
    ];
    // Two hand-made subscribers record every version and epoch they are sent.
    let watchers = ["watch-1", "watch-2"].map(|node| {
        let cp_addr = cp.addr.clone();
        tokio::spawn(async move {
            let mut s = RawSubscriber::connect(&cp_addr, node).await;
            let mut seen = Vec::new();
            while let Some(m) = s.next(Duration::from_secs(4)).await {
                let snap = m.snapshot.as_ref().unwrap();
                seen.push((snap.epoch, snap.version));
                s.ack(&m).await;
            }
            seen
        })
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Forty price changes, ten at a time.
    let writes = 40;
    for round in 0..writes / 10 {
        let mut burst = Vec::new();
        for i in 0..10 {
            let mut registry = cp.registry().await;
            let price = 1.0 + f64::from(round * 10 + i) / 100.0;
            burst.push(tokio::spawn(async move {
                registry
                    .update_model(pb::UpdateModelRequest {
                        model: Some(priced("alpha", price)),
                    })
                    .await
                    .unwrap()
            }));
        }
        for write in burst {
            write.await.unwrap();
        }
    }
    let last = status(&cp).await.snapshot_version;

    // Every data plane reaches the last version (or a later one) and says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(&cp).await;
        let current: Vec<_> = s
            .data_planes
            .iter()
            .filter(|d| d.node_id.starts_with("dp-") && d.acked_version >= last)
            .collect();
        if current.len() == dps.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "data planes never converged: {:?}",
            s.data_planes
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for watcher in watchers {
        let seen = watcher.await.unwrap();
        assert!(
            seen.last().is_some_and(|&(_, v)| v >= last),
            "a subscriber missed the last version {last}: {seen:?}"
        );
        // Versions only grow and epochs never go back.
        assert!(
            seen.windows(2).all(|w| w[1].1 > w[0].1 && w[1].0 >= w[0].0),
            "{seen:?}"
        );
        // Debounced: bursts of writes were published as far fewer snapshots.
        assert!(
            seen.len() < writes as usize,
            "{} snapshots for {writes} writes",
            seen.len()
        );
    }
}

#[tokio::test]
async fn a_refused_version_is_recorded_and_never_sent_to_that_node_again() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let mut s = RawSubscriber::connect(&cp.addr, "picky").await;
    let first = s
        .next(Duration::from_secs(5))
        .await
        .expect("the full snapshot at once");
    let refused = first.snapshot.as_ref().unwrap().version;
    s.reply(Kind::Nack(pb::Nack {
        version: refused,
        nonce: first.nonce.clone(),
        error: "models[0]: not supported here".into(),
    }))
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let node = loop {
        let st = status(&cp).await;
        if let Some(d) = st
            .data_planes
            .iter()
            .find(|d| d.node_id == "picky" && d.nacked_version == refused)
        {
            break d.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the NACK never showed: {:?}",
            st.data_planes
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(node.nack_error, "models[0]: not supported here");
    assert!(node.last_nack_at.is_some());
    assert_eq!(node.acked_version, 0);
    assert!(node.lag_versions >= 1);
    drop(s);

    // A new stream from the same node does not get the refused version again…
    let mut again = RawSubscriber::connect(&cp.addr, "picky").await;
    if let Some(m) = again.next(Duration::from_millis(1500)).await {
        assert!(
            m.snapshot.unwrap().version > refused,
            "the refused version was resent"
        );
    }
    // …but the next one, which it accepts.
    cp.registry()
        .await
        .update_model(pb::UpdateModelRequest {
            model: Some(priced("alpha", 3.0)),
        })
        .await
        .unwrap();
    let next = loop {
        let m = again
            .next(Duration::from_secs(5))
            .await
            .expect("a newer version");
        let snap = m.snapshot.as_ref().unwrap();
        assert!(snap.version > refused);
        if snap.models.iter().any(|m| m.input_price_per_mtok == 3.0) {
            again.ack(&m).await;
            break snap.version;
        }
        again.ack(&m).await;
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = status(&cp).await;
        if st
            .data_planes
            .iter()
            .any(|d| d.node_id == "picky" && d.acked_version >= next)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the ACK never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bad_health_windows_are_refused_naming_the_field_and_good_ones_are_stored() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ts = |ms: i64| prost_types::Timestamp {
        seconds: ms / 1000,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    };
    let window = |node: &str, successes: u64| pb::HealthWindow {
        node_id: node.into(),
        target_id: "alpha/mock-model".into(),
        start: Some(ts(now - 1000)),
        end: Some(ts(now)),
        attempts: 4,
        successes,
        ..Default::default()
    };
    let batch = pb::ReportRequest {
        batch_id: 1,
        traces: vec![],
        health: vec![window("raw-dp", 4), window("raw-dp-2", 9)],
    };
    let mut acks = cp
        .traces()
        .await
        .report(tokio_stream::iter([batch]))
        .await
        .unwrap()
        .into_inner();
    let ack = acks.message().await.unwrap().unwrap();
    assert!(ack.stored);
    assert_eq!(ack.rejected, 1);
    assert!(ack.error.contains("health[1].attempts"), "{}", ack.error);

    // The good one reaches the aggregate, with its node counted.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health = cp
            .health()
            .await
            .list_target_health(pb::ListTargetHealthRequest {
                target_id: "alpha/mock-model".into(),
            })
            .await;
        if let Ok(h) = health {
            let t = &h.into_inner().targets[0];
            if t.windows[0].attempts == 4 {
                assert_eq!(t.windows[0].reporting_nodes, 1);
                assert_eq!(t.windows[0].success_rate, 1.0);
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the window never reached the aggregate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unknown = cp
        .health()
        .await
        .list_target_health(pb::ListTargetHealthRequest {
            target_id: "nobody/none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

async fn send(dp: &DataPlane) {
    let response = http_client()
        .post(dp.chat_url())
        .json(&serde_json::json!({
            "model": "mock-model",
            "messages": [{ "role": "user", "content": "hello" }],
            "max_tokens": 8
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn target_health(cp: &ControlPlane, target: &str) -> Option<pb::TargetHealth> {
    cp.health()
        .await
        .list_target_health(pb::ListTargetHealthRequest {
            target_id: target.into(),
        })
        .await
        .ok()
        .map(|h| h.into_inner().targets.remove(0))
}

#[tokio::test]
async fn a_failing_target_is_ejected_by_the_fleet_and_wins_its_traffic_back_after_recovery() {
    let (alpha, beta) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    let cp = ControlPlane::start_with(
        &registry_yaml(&[("alpha", &alpha.base_url()), ("beta", &beta.base_url())]),
        &[
            "--health-interval",
            "200ms",
            "--ejection-base",
            "2s",
            "--probe-interval",
            "500ms",
        ],
    )
    .await
    .unwrap();
    let dps = [
        DataPlane::start_as(&cp, "dp-1").await.unwrap(),
        DataPlane::start_as(&cp, "dp-2").await.unwrap(),
    ];
    // Healthy: the cheaper alpha answers.
    for i in 0..4 {
        send(&dps[i % 2]).await;
    }
    assert_eq!(alpha.client_request_count(), 4);

    // Alpha fails: every request still succeeds (beta answers after alpha's
    // 503s), and the fleet ejects alpha on the evidence of both data planes.
    alpha.set_default(Behavior::Status {
        status: 503,
        message: "overloaded".into(),
        retry_after_secs: None,
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let ejected = loop {
        send(&dps[0]).await;
        send(&dps[1]).await;
        if let Some(h) = target_health(&cp, "alpha/mock-model").await
            && h.state == i32::from(pb::HealthState::Ejected)
        {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "alpha was never ejected: {:?}\n{}",
            target_health(&cp, "alpha/mock-model").await,
            cp.process.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(ejected.reason.contains("failed"), "{}", ejected.reason);
    assert!(ejected.until.is_some() && ejected.ejections >= 1);
    assert!(ejected.probe, "an ejected target is probed");
    // Once both data planes have the verdict, client traffic stays off alpha.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = alpha.client_request_count();
    for i in 0..10 {
        send(&dps[i % 2]).await;
    }
    assert_eq!(
        alpha.client_request_count(),
        before,
        "requests were sent into the ejected target"
    );

    // Alpha recovers: probes see it, the ejection ends after its back-off,
    // and alpha wins its traffic back.
    alpha.set_default(Behavior::Ok);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(h) = target_health(&cp, "alpha/mock-model").await
            && h.state == i32::from(pb::HealthState::Healthy)
        {
            break;
        }
        assert!(Instant::now() < deadline, "alpha never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        alpha
            .requests()
            .iter()
            .any(|r| r.body["messages"][0]["content"] == "ping"),
        "no probe reached alpha"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut in_a_row = 0;
    while in_a_row < 10 {
        let before = alpha.client_request_count();
        send(&dps[in_a_row % 2]).await;
        in_a_row = if alpha.client_request_count() > before {
            in_a_row + 1
        } else {
            0
        };
        assert!(Instant::now() < deadline, "traffic never returned to alpha");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_burst_that_removes_most_targets_is_held_until_the_registry_still_says_so() {
    let mock = MockProvider::start().await.unwrap();
    let url = mock.base_url();
    let cp = ControlPlane::start_with(
        &registry_yaml(&[("p1", &url), ("p2", &url), ("p3", &url), ("p4", &url)]),
        &["--mass-removal-hold", "3s"],
    )
    .await
    .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let route = |dp_grpc: String| async move {
        let channel = tonic::transport::Channel::from_shared(dp_grpc)
            .unwrap()
            .connect()
            .await
            .unwrap();
        switchyard_proto::v1::inference_service_client::InferenceServiceClient::with_interceptor(
            channel,
            support::bearer(support::API_KEY),
        )
        .route(pb::CompleteRequest {
            model: "mock-model".into(),
            messages: vec![pb::ChatMessage {
                role: "user".into(),
                content: "hi".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .candidates
        .len()
    };
    assert_eq!(route(dp.grpc.clone()).await, 4);

    // Three of four targets deleted at once: the writes succeed, the snapshot waits.
    let deletes: Vec<_> = ["p1", "p2", "p3"]
        .into_iter()
        .map(|p| {
            let cp_registry = cp.registry();
            async move {
                cp_registry
                    .await
                    .delete_model(pb::DeleteModelRequest {
                        provider: p.into(),
                        name: "mock-model".into(),
                    })
                    .await
                    .unwrap()
            }
        })
        .collect();
    futures::future::join_all(deletes).await;
    let held_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        route(dp.grpc.clone()).await,
        4,
        "the mass removal was published at once"
    );

    // Still what the registry says after the hold: published.
    let deadline = Instant::now() + Duration::from_secs(10);
    while route(dp.grpc.clone()).await != 1 {
        assert!(
            Instant::now() < deadline,
            "the held snapshot was never published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        held_at.elapsed() >= Duration::from_secs(2),
        "published before the hold ended"
    );
}

//! Follows the control plane's snapshot stream: hello, then validate each
//! snapshot, swap it in, ACK; or NACK and keep the last good one. Reconnects
//! with jittered back-off and keeps serving on the last good snapshot while the
//! control plane is away.

use std::sync::Arc;
use std::time::Duration;

use switchyard_domain::RoutingSnapshot;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::snapshot_service_client::SnapshotServiceClient;
use switchyard_proto::v1::sync_request::Kind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::backoff::Backoff;
use crate::breaker::Breakers;
use crate::metrics::Metrics;
use crate::snapshot::{LiveSnapshot, SnapshotCell};

pub struct Subscriber {
    pub client: SnapshotServiceClient<Channel>,
    pub cell: SnapshotCell,
    pub node_id: String,
    pub region: String,
    pub metrics: Arc<Metrics>,
    /// Take the operators' circuit overrides from each snapshot applied.
    pub breakers: Arc<Breakers>,
}

impl Subscriber {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let session = tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.session(&mut backoff) => result,
            };
            let wait = backoff.next_delay();
            match session {
                Ok(()) => {
                    tracing::warn!(retry_in = ?wait, "snapshot stream closed by the control plane")
                }
                Err(e) => {
                    tracing::warn!(error = %e.message(), retry_in = ?wait, "snapshot stream unavailable; serving the last good snapshot")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn session(&mut self, backoff: &mut Backoff) -> Result<(), tonic::Status> {
        let (tx, rx) = mpsc::channel(8);
        let last_applied = self.cell.load().as_ref().map_or(0, |s| s.version());
        let hello = pb::Hello {
            node_id: self.node_id.clone(),
            region: self.region.clone(),
            last_applied_version: last_applied,
        };
        let _ = tx
            .send(pb::SyncRequest {
                kind: Some(Kind::Hello(hello)),
            })
            .await;
        let mut inbound = self
            .client
            .sync(ReceiverStream::new(rx))
            .await?
            .into_inner();
        while let Some(message) = inbound.message().await? {
            backoff.reset();
            let reply = self.apply(message);
            if tx
                .send(pb::SyncRequest { kind: Some(reply) })
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(())
    }

    /// Validates and swaps in one snapshot; returns the ACK or NACK to send.
    fn apply(&self, message: pb::SyncResponse) -> Kind {
        let nonce = message.nonce;
        let Some(wire) = message.snapshot else {
            return self.reject(0, nonce, "message carries no snapshot".into());
        };
        let version = wire.version;
        let current = self.cell.load_full();
        if let Some(current) = &current {
            if wire.epoch < current.routing.epoch {
                return self.reject(
                    version,
                    nonce,
                    format!(
                        "epoch {} is older than the current {}",
                        wire.epoch, current.routing.epoch
                    ),
                );
            }
            if version == current.version() && wire.epoch == current.routing.epoch {
                return Kind::Ack(pb::Ack { version, nonce });
            }
        }
        match RoutingSnapshot::try_from(wire) {
            Ok(routing) => {
                // Overrides first: a target forced open gets no request from the new snapshot.
                self.breakers.apply_overrides(&routing);
                let live = LiveSnapshot::prepare(routing);
                for (provider, endpoint) in &live.endpoints {
                    if let Some(reason) = endpoint.unavailable_reason() {
                        tracing::warn!(%provider, %reason, "provider not callable on this node");
                    }
                }
                self.cell.store(Some(Arc::new(live)));
                self.metrics
                    .snapshot_version
                    .set(i64::try_from(version).unwrap_or(i64::MAX));
                tracing::info!(version, "applied snapshot");
                Kind::Ack(pb::Ack { version, nonce })
            }
            Err(e) => self.reject(version, nonce, e.to_string()),
        }
    }

    fn reject(&self, version: u64, nonce: String, error: String) -> Kind {
        self.metrics.snapshots_rejected.inc();
        tracing::warn!(version, %error, "rejected snapshot; keeping the last good one");
        Kind::Nack(pb::Nack {
            version,
            nonce,
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arc_swap::ArcSwapOption;
    use switchyard_domain::{ProviderKind, ProviderSpec, SimulatedParams, builtin_strategies};

    use super::*;

    fn subscriber() -> Subscriber {
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        Subscriber {
            client: SnapshotServiceClient::new(channel),
            cell: Arc::new(ArcSwapOption::empty()),
            node_id: "n".into(),
            region: String::new(),
            metrics: Arc::new(Metrics::new()),
            breakers: Arc::new(Breakers::default()),
        }
    }

    fn snapshot(version: u64, epoch: u64) -> pb::SyncResponse {
        let provider = ProviderSpec {
            name: "sim".into(),
            kind: ProviderKind::Simulated,
            base_url: String::new(),
            api_key_ref: String::new(),
            headers: BTreeMap::new(),
            enabled: true,
            simulated: Some(SimulatedParams {
                seed: 1,
                first_token_latency_ms: 1,
                tokens_per_second: 10,
                failure_rate: 0.0,
                output_tokens: 2,
            }),
        };
        let routing = RoutingSnapshot::new(
            version,
            epoch,
            0,
            vec![provider],
            vec![],
            builtin_strategies(),
            "balanced".into(),
        )
        .unwrap();
        pb::SyncResponse {
            nonce: format!("nonce-{version}"),
            snapshot: Some(routing.to_wire()),
        }
    }

    fn served(s: &Subscriber) -> Option<u64> {
        s.cell.load().as_ref().map(|l| l.version())
    }

    #[tokio::test]
    async fn valid_snapshots_are_swapped_in_and_acked() {
        let s = subscriber();
        assert!(
            matches!(s.apply(snapshot(3, 1)), Kind::Ack(pb::Ack { version: 3, ref nonce }) if nonce == "nonce-3")
        );
        assert_eq!(served(&s), Some(3));
        // The same version again (a reconnect) is acked without a swap.
        let before = s.cell.load_full();
        assert!(matches!(s.apply(snapshot(3, 1)), Kind::Ack(_)));
        assert!(Arc::ptr_eq(&before.unwrap(), &s.cell.load_full().unwrap()));
    }

    #[tokio::test]
    async fn invalid_and_stale_epoch_snapshots_are_nacked_and_the_last_good_one_stays() {
        let s = subscriber();
        s.apply(snapshot(3, 2));

        let mut broken = snapshot(4, 2);
        if let Some(wire) = broken.snapshot.as_mut() {
            wire.default_strategy = "missing".into();
        }
        match s.apply(broken) {
            Kind::Nack(nack) => {
                assert_eq!(nack.version, 4);
                assert!(nack.error.contains("default_strategy"), "{}", nack.error);
            }
            other => panic!("expected a NACK, got {other:?}"),
        }
        assert_eq!(served(&s), Some(3));

        match s.apply(snapshot(9, 1)) {
            Kind::Nack(nack) => assert!(nack.error.contains("epoch 1 is older"), "{}", nack.error),
            other => panic!("expected a NACK, got {other:?}"),
        }
        assert!(matches!(
            s.apply(pb::SyncResponse {
                nonce: "x".into(),
                snapshot: None
            }),
            Kind::Nack(_)
        ));
        assert_eq!(served(&s), Some(3));
        assert_eq!(s.metrics.snapshots_rejected.get(), 3);
    }
}

//! Simulated data planes: each opens its own connection and snapshot stream
//! to the control plane, says hello, and for every snapshot it receives does
//! what a data plane does before it acknowledges one (validates it into a
//! `RoutingSnapshot`), then ACKs with the nonce echoed. Each one logs when it
//! received and when it acknowledged every version, and the price the changed
//! model had in it, so a registry change can be traced to the first snapshot
//! that carried it on every node.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use prost::Message as _;
use switchyard_domain::RoutingSnapshot;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::snapshot_service_client::SnapshotServiceClient;
use switchyard_proto::v1::sync_request::Kind;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::control_plane::{CHANGED_MODEL, ControlPlane, PROVIDER};

/// Region every simulated data plane reports.
pub const REGION: &str = "local";

/// One snapshot a subscriber received and acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    pub version: u64,
    /// Input price of the changed model in this snapshot.
    pub price: Option<f64>,
    /// Encoded size of the snapshot, in bytes.
    pub bytes: usize,
    pub received: Instant,
    /// Just after the ACK was handed to the stream.
    pub acked: Instant,
}

/// A running subscriber.
#[derive(Debug)]
pub struct Subscriber {
    pub node_id: String,
    /// The newest version it acknowledged; closed when it stops.
    pub latest: watch::Receiver<u64>,
    task: JoinHandle<anyhow::Result<Vec<Acked>>>,
}

/// Every subscriber, and the signal that stops them.
#[derive(Debug)]
pub struct Subscribers {
    pub all: Vec<Subscriber>,
    stop: watch::Sender<bool>,
}

impl Subscribers {
    /// Connects `count` subscribers, each on a connection of its own, and
    /// waits until every one has acknowledged the current snapshot.
    pub async fn start(
        control_plane: &ControlPlane,
        count: usize,
        within: Duration,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let mut all = Vec::with_capacity(count);
        for i in 0..count {
            let node_id = format!("bench-dp-{i:02}");
            let channel = control_plane.connect().await?;
            let (latest_tx, latest) = watch::channel(0);
            let task = tokio::spawn(run(node_id.clone(), channel, latest_tx, stopped.clone()));
            all.push(Subscriber {
                node_id,
                latest,
                task,
            });
        }
        let mut subscribers = Self { all, stop };
        subscribers
            .wait_all_acked(1, within)
            .await
            .context("waiting for the first snapshot on every stream")?;
        Ok(subscribers)
    }

    /// Waits until every subscriber has acknowledged `version` or a later one.
    pub async fn wait_all_acked(&mut self, version: u64, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for subscriber in &mut self.all {
            let mut latest = subscriber.latest.clone();
            // `is_ok` drops the watch guard at once.
            let acked = tokio::time::timeout_at(deadline, latest.wait_for(|v| *v >= version))
                .await
                .map(|r| r.is_ok());
            match acked {
                Ok(true) => {}
                Ok(false) => {
                    // It dropped its sender: it has ended, say why.
                    let why =
                        match tokio::time::timeout(Duration::from_secs(5), &mut subscriber.task)
                            .await
                        {
                            Ok(Ok(Err(e))) => format!("{e:#}"),
                            Ok(Ok(Ok(_))) => "it stopped".to_owned(),
                            Ok(Err(e)) => format!("its task failed: {e}"),
                            Err(_) => "it did not say why".to_owned(),
                        };
                    bail!(
                        "subscriber {} stopped before it acknowledged version {version}: {why}",
                        subscriber.node_id
                    );
                }
                Err(_) => bail!(
                    "subscriber {} had not acknowledged version {version} within {within:?} \
                     (it is at {})",
                    subscriber.node_id,
                    *latest.borrow()
                ),
            }
        }
        Ok(())
    }

    /// Stops every subscriber and returns each one's log, in subscriber order.
    pub async fn stop(self) -> anyhow::Result<Vec<(String, Vec<Acked>)>> {
        self.stop.send_replace(true);
        let mut logs = Vec::with_capacity(self.all.len());
        for subscriber in self.all {
            let log = tokio::time::timeout(Duration::from_secs(5), subscriber.task)
                .await
                .map_err(|_| anyhow!("subscriber {} did not stop", subscriber.node_id))?
                .with_context(|| format!("subscriber {} failed", subscriber.node_id))?
                .with_context(|| format!("subscriber {}", subscriber.node_id))?;
            logs.push((subscriber.node_id, log));
        }
        Ok(logs)
    }
}

/// The price of the changed model in a snapshot.
fn changed_price(snapshot: &pb::Snapshot) -> Option<f64> {
    snapshot
        .models
        .iter()
        .find(|m| m.provider == PROVIDER && m.name == CHANGED_MODEL)
        .map(|m| m.input_price_per_mtok)
}

async fn run(
    node_id: String,
    channel: Channel,
    latest: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<Acked>> {
    let mut client = SnapshotServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    let hello = pb::Hello {
        node_id: node_id.clone(),
        region: REGION.to_owned(),
        last_applied_version: 0,
    };
    tx.send(pb::SyncRequest {
        kind: Some(Kind::Hello(hello)),
    })
    .await
    .context("queueing the hello")?;
    let mut inbound = client
        .sync(ReceiverStream::new(rx))
        .await
        .context("opening the snapshot stream")?
        .into_inner();
    let mut log = Vec::new();
    loop {
        let message = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            message = inbound.message() => message.context("reading the snapshot stream")?,
        };
        let Some(message) = message else {
            bail!("the control plane closed the snapshot stream");
        };
        let received = Instant::now();
        let snapshot = message.snapshot.context("a message without a snapshot")?;
        let version = snapshot.version;
        let price = changed_price(&snapshot);
        let bytes = snapshot.encoded_len();
        // What a data plane checks before it acknowledges a snapshot.
        if let Err(e) = RoutingSnapshot::try_from(snapshot) {
            let nack = pb::Nack {
                version,
                nonce: message.nonce,
                error: e.to_string(),
            };
            let _ = tx
                .send(pb::SyncRequest {
                    kind: Some(Kind::Nack(nack)),
                })
                .await;
            bail!("snapshot {version} is invalid: {e}");
        }
        let ack = pb::Ack {
            version,
            nonce: message.nonce,
        };
        tx.send(pb::SyncRequest {
            kind: Some(Kind::Ack(ack)),
        })
        .await
        .context("queueing an ACK")?;
        log.push(Acked {
            version,
            price,
            bytes,
            received,
            acked: Instant::now(),
        });
        latest.send_replace(version);
    }
    Ok(log)
}

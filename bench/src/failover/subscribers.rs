//! Raw snapshot subscribers, one on each replica: a snapshot stream opened by
//! hand (`SnapshotService/Sync`: hello, then an ACK with the nonce echoed for
//! every snapshot) on a connection of its own, noting when it first received
//! each epoch. They see what a data plane connected to that replica would be
//! offered, without a data plane's reconnection policy in the way.

use std::time::Duration;

use anyhow::{Context as _, bail};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::snapshot_service_client::SnapshotServiceClient;
use switchyard_proto::v1::sync_request::Kind;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

/// What a subscriber has seen so far.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Each epoch with the instant its first snapshot arrived, in arrival order.
    pub epochs: Vec<(u64, Instant)>,
    /// Why the stream ended, once it has.
    pub ended: Option<String>,
}

impl Seen {
    /// When the first snapshot of an epoch above `old` arrived.
    pub fn first_above(&self, old: u64) -> Option<Instant> {
        self.epochs
            .iter()
            .find(|(epoch, _)| *epoch > old)
            .map(|&(_, at)| at)
    }

    pub fn latest_epoch(&self) -> Option<u64> {
        self.epochs.last().map(|&(epoch, _)| epoch)
    }
}

/// A cloneable view of one subscriber's progress.
#[derive(Debug, Clone)]
pub struct Watch {
    pub replica: String,
    seen: watch::Receiver<Seen>,
}

impl Watch {
    /// Waits for the first snapshot of an epoch above `old`; returns when it arrived.
    pub async fn first_above(mut self, old: u64, deadline: Instant) -> anyhow::Result<Instant> {
        let waited = tokio::time::timeout_at(
            deadline,
            self.seen
                .wait_for(|s| s.first_above(old).is_some() || s.ended.is_some()),
        )
        .await
        // `is_ok` drops the watch guard at once.
        .map(|r| r.is_ok());
        let seen = self.seen.borrow().clone();
        if let Some(at) = seen.first_above(old) {
            return Ok(at);
        }
        let latest = seen.latest_epoch();
        match (waited, seen.ended) {
            (_, Some(why)) => {
                bail!(
                    "the subscriber on {} lost its stream before a snapshot above epoch {old}: {why}",
                    self.replica
                )
            }
            (Ok(false), None) => bail!("the subscriber on {} stopped", self.replica),
            _ => bail!(
                "the subscriber on {} got no snapshot above epoch {old} in time (its newest is at epoch {latest:?})",
                self.replica,
            ),
        }
    }

    /// Waits until its newest snapshot is of `epoch` exactly.
    pub async fn wait_epoch(mut self, epoch: u64, within: Duration) -> anyhow::Result<()> {
        let waited = tokio::time::timeout(
            within,
            self.seen
                .wait_for(|s| s.latest_epoch() == Some(epoch) || s.ended.is_some()),
        )
        .await
        .map(|r| r.is_ok());
        let seen = self.seen.borrow().clone();
        let latest = seen.latest_epoch();
        if latest == Some(epoch) {
            return Ok(());
        }
        match (waited, seen.ended) {
            (_, Some(why)) => bail!("the subscriber on {} lost its stream: {why}", self.replica),
            _ => bail!(
                "the subscriber on {} did not get a snapshot of epoch {epoch} within {within:?} \
                 (its newest is at epoch {latest:?})",
                self.replica,
            ),
        }
    }
}

/// A running subscriber; its task stops when it is dropped.
#[derive(Debug)]
pub struct Subscriber {
    watch: Watch,
    task: JoinHandle<()>,
}

impl Subscriber {
    /// Opens the stream to the replica at `url`, named `node_id` in the
    /// replica's fleet view.
    pub async fn connect(
        replica: &str,
        url: &str,
        node_id: &str,
        within: Duration,
    ) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(url.to_owned())
            .context("a control plane's URL")?
            .connect_timeout(within)
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting a subscriber to {replica} at {url}"))?;
        let (tx, rx) = mpsc::channel(16);
        let hello = pb::Hello {
            node_id: node_id.to_owned(),
            region: "local".to_owned(),
            last_applied_version: 0,
        };
        tx.send(pb::SyncRequest {
            kind: Some(Kind::Hello(hello)),
        })
        .await
        .context("queueing the hello")?;
        let inbound = tokio::time::timeout(
            within,
            SnapshotServiceClient::new(channel).sync(ReceiverStream::new(rx)),
        )
        .await
        .with_context(|| format!("{replica} did not open a snapshot stream within {within:?}"))?
        .with_context(|| format!("opening a snapshot stream to {replica}"))?
        .into_inner();
        let (seen_tx, seen) = watch::channel(Seen::default());
        let task = tokio::spawn(async move {
            let result = follow(inbound, &tx, &seen_tx).await;
            let why = match result {
                Ok(()) => "the control plane closed the stream".to_owned(),
                Err(e) => format!("{e:#}"),
            };
            seen_tx.send_modify(|s| s.ended = Some(why));
        });
        Ok(Self {
            watch: Watch {
                replica: replica.to_owned(),
                seen,
            },
            task,
        })
    }

    pub fn watch(&self) -> Watch {
        self.watch.clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads snapshots and ACKs each one until the stream ends.
async fn follow(
    mut inbound: tonic::Streaming<pb::SyncResponse>,
    tx: &mpsc::Sender<pb::SyncRequest>,
    seen: &watch::Sender<Seen>,
) -> anyhow::Result<()> {
    while let Some(message) = inbound
        .message()
        .await
        .context("reading the snapshot stream")?
    {
        let received = Instant::now();
        let snapshot = message.snapshot.context("a message without a snapshot")?;
        seen.send_if_modified(|s| {
            let new = s.latest_epoch() != Some(snapshot.epoch);
            if new {
                s.epochs.push((snapshot.epoch, received));
            }
            new
        });
        let ack = pb::Ack {
            version: snapshot.version,
            nonce: message.nonce,
        };
        tx.send(pb::SyncRequest {
            kind: Some(Kind::Ack(ack)),
        })
        .await
        .context("queueing an ACK")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_snapshot_above_an_epoch_counts() {
        let t = Instant::now();
        let later = t + Duration::from_millis(300);
        let seen = Seen {
            epochs: vec![(5, t), (9, later), (12, later + Duration::from_secs(1))],
            ended: None,
        };
        assert_eq!(seen.first_above(5), Some(later));
        assert_eq!(seen.first_above(12), None);
        assert_eq!(seen.latest_epoch(), Some(12));
    }
}

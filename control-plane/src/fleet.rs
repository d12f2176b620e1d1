//! Which data plane runs which snapshot version, as seen by this replica: what
//! was sent on each stream, what came back (ACK or NACK, and when), how far
//! behind each node is, and which version each node refused, so a refused
//! version is never sent to it again, not even on a new stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_domain::timestamp_from_millis;
use switchyard_proto::v1 as pb;
use tokio::sync::Mutex;

use crate::store::now_ms;

/// Identifies one snapshot stream; a node that reconnects gets a new one.
pub type StreamId = u64;

/// Nodes whose refusals are remembered; beyond it the oldest entries go.
const MAX_REMEMBERED_NODES: usize = 10_000;

struct Stream {
    status: pb::DataPlaneStatus,
    /// When the node first had a sent version it has not acknowledged; 0 when current.
    behind_since_ms: i64,
}

#[derive(Default)]
struct Inner {
    streams: HashMap<StreamId, Stream>,
    /// The last version each node NACKed, by node id.
    refused: HashMap<String, u64>,
}

#[derive(Default)]
pub struct Fleet {
    next_stream: AtomicU64,
    inner: Mutex<Inner>,
}

impl Fleet {
    pub async fn connect(&self, status: pb::DataPlaneStatus) -> StreamId {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        self.inner.lock().await.streams.insert(
            id,
            Stream {
                status,
                behind_since_ms: 0,
            },
        );
        id
    }

    pub async fn sent(&self, id: StreamId, version: u64, nonce: &str) {
        if let Some(s) = self.inner.lock().await.streams.get_mut(&id) {
            s.status.sent_version = version;
            s.status.last_nonce = nonce.to_owned();
            if s.behind_since_ms == 0 && s.status.acked_version < version {
                s.behind_since_ms = now_ms();
            }
        }
    }

    pub async fn acked(&self, id: StreamId, version: u64) {
        if let Some(s) = self.inner.lock().await.streams.get_mut(&id) {
            s.status.acked_version = s.status.acked_version.max(version);
            s.status.last_ack_at = Some(timestamp_from_millis(now_ms()));
            if s.status.acked_version >= s.status.sent_version {
                s.behind_since_ms = 0;
            }
        }
    }

    pub async fn nacked(&self, id: StreamId, version: u64, error: String) {
        let mut inner = self.inner.lock().await;
        let Some(s) = inner.streams.get_mut(&id) else {
            return;
        };
        s.status.nacked_version = version;
        s.status.nack_error = error;
        s.status.last_nack_at = Some(timestamp_from_millis(now_ms()));
        let node = s.status.node_id.clone();
        if inner.refused.len() >= MAX_REMEMBERED_NODES && !inner.refused.contains_key(&node) {
            inner.refused.clear();
        }
        inner.refused.insert(node, version);
    }

    /// The last version `node_id` refused; 0 when none.
    pub async fn refused_by(&self, node_id: &str) -> u64 {
        self.inner
            .lock()
            .await
            .refused
            .get(node_id)
            .copied()
            .unwrap_or(0)
    }

    pub async fn disconnect(&self, id: StreamId) {
        self.inner.lock().await.streams.remove(&id);
    }

    /// Distinct data planes connected to this replica.
    pub async fn node_count(&self) -> usize {
        let inner = self.inner.lock().await;
        let mut nodes: Vec<&str> = inner
            .streams
            .values()
            .map(|s| s.status.node_id.as_str())
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes.len()
    }

    /// Every stream, with its lag behind `newest` (the newest snapshot version).
    pub async fn list(&self, newest: u64) -> Vec<pb::DataPlaneStatus> {
        let now = now_ms();
        let inner = self.inner.lock().await;
        let mut all: Vec<_> = inner
            .streams
            .values()
            .map(|s| {
                let mut status = s.status.clone();
                status.lag_versions = newest.saturating_sub(status.acked_version);
                status.lag_ms = if s.behind_since_ms > 0 {
                    u64::try_from(now - s.behind_since_ms).unwrap_or(0)
                } else {
                    0
                };
                status
            })
            .collect();
        all.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        all
    }
}

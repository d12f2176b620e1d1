//! Which data plane runs which snapshot version, as seen by this replica.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_proto::v1 as pb;
use tokio::sync::Mutex;

#[derive(Default)]
pub struct Fleet {
    next_stream: AtomicU64,
    streams: Mutex<HashMap<u64, pb::DataPlaneStatus>>,
}

/// Identifies one snapshot stream; a node that reconnects gets a new one.
pub type StreamId = u64;

impl Fleet {
    pub async fn connect(&self, status: pb::DataPlaneStatus) -> StreamId {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        self.streams.lock().await.insert(id, status);
        id
    }

    pub async fn update(&self, id: StreamId, change: impl FnOnce(&mut pb::DataPlaneStatus)) {
        if let Some(status) = self.streams.lock().await.get_mut(&id) {
            change(status);
        }
    }

    pub async fn disconnect(&self, id: StreamId) {
        self.streams.lock().await.remove(&id);
    }

    pub async fn list(&self) -> Vec<pb::DataPlaneStatus> {
        let mut all: Vec<_> = self.streams.lock().await.values().cloned().collect();
        all.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        all
    }
}

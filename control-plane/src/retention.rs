//! Time-based trace retention: while this replica leads, deletes traces
//! older than the retention in small batches (short transactions, no long
//! lock on the table), fenced like every leader-only write.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::leadership::Leadership;
use crate::store::{Store, StoreError, now_ms};

/// How often the leader looks for expired traces.
const CHECK_EVERY: Duration = Duration::from_secs(600);
/// Traces deleted per transaction.
const BATCH: i64 = 5_000;

pub struct TraceRetention {
    pub store: Store,
    pub leadership: Arc<Leadership>,
    /// Traces received longer ago than this are deleted.
    pub keep: Duration,
}

impl TraceRetention {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(CHECK_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Some(epoch) = self.leadership.leading_epoch() {
                self.sweep(epoch, &shutdown).await;
            }
        }
    }

    /// Deletes expired traces batch by batch until none is left.
    async fn sweep(&self, epoch: u64, shutdown: &CancellationToken) {
        let keep_ms = i64::try_from(self.keep.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(keep_ms);
        let mut deleted = 0;
        while !shutdown.is_cancelled() {
            match self.store.delete_traces_before(epoch, before, BATCH).await {
                Ok(n) => {
                    deleted += n;
                    if n < u64::try_from(BATCH).unwrap_or(u64::MAX) {
                        break;
                    }
                }
                Err(e @ StoreError::Fenced { .. }) => {
                    tracing::warn!(error = %e, "not deleting expired traces");
                    self.leadership.deposed(epoch);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot delete expired traces; trying again later");
                    return;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, retention = ?self.keep, "deleted expired traces");
        }
    }
}

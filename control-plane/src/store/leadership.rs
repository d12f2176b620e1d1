//! Leader-only writes, fenced by epoch: claiming leadership, publishing
//! snapshots, deleting old health windows. Each runs in one transaction that
//! first checks the writer's epoch against `leader_fence`; a deposed leader's
//! write fails with [`StoreError::Fenced`] and changes nothing.

use prost::Message;
use sqlx::{Any, Transaction};
use switchyard_proto::v1 as pb;

use super::{Store, StoreError, now_ms};

/// Published snapshots kept for followers to relay; only the newest matters.
const KEPT_SNAPSHOTS: i64 = 16;

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Checks that `epoch` is still the fenced epoch, and holds the fence's row
/// lock until the transaction ends, so no newer leader claims in between.
async fn check_fence(tx: &mut Transaction<'static, Any>, epoch: u64) -> Result<(), StoreError> {
    let held = sqlx::query("UPDATE leader_fence SET epoch = epoch WHERE id = 1 AND epoch = $1")
        .bind(to_i64(epoch))
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if held == 1 {
        return Ok(());
    }
    let current: i64 = sqlx::query_scalar("SELECT epoch FROM leader_fence WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    Err(StoreError::Fenced {
        epoch,
        current: u64::try_from(current).unwrap_or_default(),
    })
}

fn decode_snapshot(body: &[u8], version: i64) -> Result<pb::Snapshot, StoreError> {
    pb::Snapshot::decode(body).map_err(|e| StoreError::Corrupt {
        entity: "published snapshot",
        key: version.to_string(),
        reason: e.to_string(),
    })
}

impl Store {
    /// Raises the fence to `epoch` for `leader`. Fails when a newer epoch
    /// already holds it: that leader came later, this one must not act.
    pub async fn claim_epoch(&self, epoch: u64, leader: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE leader_fence SET epoch = $1, leader = $2, claimed_at_ms = $3 WHERE id = 1 AND epoch <= $1",
        )
        .bind(to_i64(epoch))
        .bind(leader.to_owned())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed != 1 {
            check_fence(&mut tx, epoch).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The fenced epoch, for a control plane without etcd: as the only
    /// replica it leads at whatever epoch the store last saw, so data planes
    /// that ran under an elected leader keep accepting its snapshots.
    pub async fn adopt_epoch(&self, leader: &str) -> Result<u64, StoreError> {
        let epoch: i64 = sqlx::query_scalar(
            "UPDATE leader_fence SET leader = $1, claimed_at_ms = $2 WHERE id = 1 RETURNING epoch",
        )
        .bind(leader.to_owned())
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(epoch).unwrap_or_default())
    }

    /// Gives `snapshot` the next version and stores it, if `epoch` still
    /// holds the fence. Versions only grow, across leaders and restarts.
    pub async fn publish_snapshot(
        &self,
        epoch: u64,
        snapshot: &mut pb::Snapshot,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        check_fence(&mut tx, epoch).await?;
        let version: i64 = sqlx::query_scalar(
            "UPDATE snapshot_version SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut *tx)
        .await?;
        snapshot.version = u64::try_from(version).unwrap_or_default();
        snapshot.epoch = epoch;
        sqlx::query(
            "INSERT INTO published_snapshots (version, epoch, published_at_ms, body) VALUES ($1, $2, $3, $4)",
        )
        .bind(version)
        .bind(to_i64(epoch))
        .bind(now_ms())
        .bind(snapshot.encode_to_vec())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM published_snapshots WHERE version <= $1")
            .bind(version - KEPT_SNAPSHOTS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(snapshot.version)
    }

    /// The newest published snapshot, if it is newer than `version`.
    pub async fn snapshot_newer_than(
        &self,
        version: u64,
    ) -> Result<Option<pb::Snapshot>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT version, body FROM published_snapshots WHERE version > $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(to_i64(version))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(version, body)| decode_snapshot(&body, version))
            .transpose()
    }

    /// Deletes up to `limit` of the oldest traces received before
    /// `before_ms`, with their attempts, if `epoch` still holds the fence.
    /// Returns how many traces went.
    pub async fn delete_traces_before(
        &self,
        epoch: u64,
        before_ms: i64,
        limit: i64,
    ) -> Result<u64, StoreError> {
        // The same oldest rows for both statements: ordered by the whole key.
        const OLDEST: &str = "SELECT trace_id FROM traces WHERE received_at_ms < $1 \
                              ORDER BY received_at_ms, trace_id LIMIT $2";
        let mut tx = self.pool.begin().await?;
        check_fence(&mut tx, epoch).await?;
        for children in ["trace_attempts", "trace_candidates"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {children} WHERE trace_id IN ({OLDEST})"
            )))
            .bind(before_ms)
            .bind(limit)
            .execute(&mut *tx)
            .await?;
        }
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM traces WHERE trace_id IN ({OLDEST})"
        )))
        .bind(before_ms)
        .bind(limit)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Deletes health windows received before `before_ms`, if `epoch` still
    /// holds the fence.
    pub async fn delete_windows_before(
        &self,
        epoch: u64,
        before_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        check_fence(&mut tx, epoch).await?;
        let done = sqlx::query("DELETE FROM health_windows WHERE received_at_ms < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

//! What the quality engine reads: recent attempts and request outcomes.

use sqlx::Row;

use super::{Store, StoreError};

/// One attempt on one target, as the quality engine needs it.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub target_id: String,
    /// 0 for the first attempt of a request; more for fallbacks.
    pub position: i64,
    pub success: bool,
    pub error_class: i32,
    pub duration_ms: i64,
    pub ttft_ms: i64,
}

/// A request's strategy, the target that answered it, and how it ended.
#[derive(Debug, Clone)]
pub struct OutcomeRow {
    pub strategy: String,
    pub final_target: String,
    pub outcome: i32,
}

impl Store {
    /// Attempts started at or after `since_ms`, newest first, at most `limit`.
    pub async fn attempts_since(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<AttemptRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT target_id, position, success, error_class, duration_ms, ttft_ms FROM trace_attempts \
             WHERE started_at_ms >= $1 ORDER BY started_at_ms DESC LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRow {
                    target_id: r.try_get("target_id")?,
                    position: r.try_get("position")?,
                    success: r.try_get::<i64, _>("success")? != 0,
                    error_class: i32::try_from(r.try_get::<i64, _>("error_class")?)
                        .unwrap_or_default(),
                    duration_ms: r.try_get("duration_ms")?,
                    ttft_ms: r.try_get("ttft_ms")?,
                })
            })
            .collect()
    }

    /// Requests received at or after `since_ms` that reached a target, at most `limit`.
    pub async fn outcomes_since(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutcomeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT strategy, final_target, outcome FROM traces \
             WHERE received_at_ms >= $1 AND final_target <> '' ORDER BY received_at_ms DESC LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutcomeRow {
                    strategy: r.try_get("strategy")?,
                    final_target: r.try_get("final_target")?,
                    outcome: i32::try_from(r.try_get::<i64, _>("outcome")?).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The next snapshot version: larger than every version handed out before.
    pub async fn next_snapshot_version(&self) -> Result<u64, StoreError> {
        let version: i64 = sqlx::query_scalar(
            "UPDATE snapshot_version SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(version).unwrap_or_default())
    }
}

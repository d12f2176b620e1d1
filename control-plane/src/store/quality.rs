//! What strategy effectiveness reads: recent request outcomes.

use sqlx::Row;

use super::{Store, StoreError};

/// A request's strategy, the target that answered it, and how it ended.
#[derive(Debug, Clone)]
pub struct OutcomeRow {
    pub strategy: String,
    pub final_target: String,
    pub outcome: i32,
}

impl Store {
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
}

//! Health windows: stored with the trace batch that carried them, read back
//! by the aggregator in arrival order.

use prost::Message;
use sqlx::{Any, Row, Transaction};
use switchyard_domain::timestamp_to_millis;
use switchyard_proto::v1 as pb;

use super::sql::SqlBuilder;
use super::{Store, StoreError};

const ROWS_PER_STATEMENT: usize = 500;

/// A stored window and when it arrived.
#[derive(Debug, Clone)]
pub struct StoredWindow {
    pub received_at_ms: i64,
    pub window: pb::HealthWindow,
}

fn millis(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map(timestamp_to_millis).unwrap_or_default()
}

pub(super) async fn insert_windows(
    tx: &mut Transaction<'static, Any>,
    windows: &[pb::HealthWindow],
    received_at_ms: i64,
) -> Result<(), StoreError> {
    for chunk in windows.chunks(ROWS_PER_STATEMENT) {
        let mut b = SqlBuilder::new(
            "INSERT INTO health_windows (node_id, target_id, start_ms, end_ms, received_at_ms, body) VALUES ",
        );
        for (i, w) in chunk.iter().enumerate() {
            b.push(if i == 0 { "(" } else { ", (" });
            b.bind(w.node_id.clone())?.push(", ");
            b.bind(w.target_id.clone())?.push(", ");
            b.bind(millis(w.start.as_ref()))?.push(", ");
            b.bind(millis(w.end.as_ref()))?.push(", ");
            b.bind(received_at_ms)?.push(", ");
            b.bind(w.encode_to_vec())?.push(")");
        }
        b.push(" ON CONFLICT (node_id, target_id, start_ms) DO NOTHING");
        b.build().execute(&mut **tx).await?;
    }
    Ok(())
}

impl Store {
    /// Windows that arrived at or after `since_ms`, oldest first, at most `limit`.
    pub async fn windows_received_since(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<StoredWindow>, StoreError> {
        let rows = sqlx::query(
            "SELECT received_at_ms, body FROM health_windows WHERE received_at_ms >= $1 \
             ORDER BY received_at_ms LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let body: Vec<u8> = r.try_get("body")?;
                let window =
                    pb::HealthWindow::decode(body.as_slice()).map_err(|e| StoreError::Corrupt {
                        entity: "health window",
                        key: String::new(),
                        reason: e.to_string(),
                    })?;
                Ok(StoredWindow {
                    received_at_ms: r.try_get("received_at_ms")?,
                    window,
                })
            })
            .collect()
    }
}

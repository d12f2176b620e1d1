//! Cost and latency per workspace, provider or model over a time range, in
//! SQL both backends speak: sums in one query, nearest-rank latency
//! quantiles in a second one with window functions (no `percentile_*`,
//! which SQLite lacks).

use std::collections::HashMap;

use sqlx::Row;
use switchyard_proto::v1 as pb;

use super::sql::SqlBuilder;
use super::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    Workspace,
    Provider,
    Model,
}

impl Grouping {
    fn column(self) -> &'static str {
        match self {
            Self::Workspace => "workspace",
            Self::Provider => "final_provider",
            Self::Model => "final_model",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AggregateQuery {
    pub start_ms: i64,
    pub end_ms: i64,
    pub group_by: Grouping,
    pub workspace: Option<String>,
}

/// Latency quantiles reported, in percent (also written out in the ranking query).
const QUANTILES: [i64; 3] = [50, 95, 99];

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

impl AggregateQuery {
    /// `FROM traces WHERE …` for this query's range and workspace.
    fn scope(&self, b: &mut SqlBuilder) -> Result<(), StoreError> {
        b.push(" FROM traces WHERE received_at_ms >= ")
            .bind(self.start_ms)?;
        b.push(" AND received_at_ms < ").bind(self.end_ms)?;
        if let Some(workspace) = &self.workspace {
            b.push(" AND workspace = ").bind(workspace.clone())?;
        }
        Ok(())
    }
}

impl Store {
    /// One row per group, most requests first.
    pub async fn aggregate_traces(
        &self,
        query: &AggregateQuery,
    ) -> Result<Vec<pb::TraceAggregate>, StoreError> {
        let key = query.group_by.column();
        let failed = i64::from(i32::from(pb::Outcome::Failed));
        // SUM of a BIGINT is NUMERIC on Postgres: cast back for one decoding.
        let mut b = SqlBuilder::new("SELECT ");
        b.push(key)
            .push(" AS key, COUNT(*) AS requests, CAST(SUM(CASE WHEN outcome = ")
            .bind(failed)?;
        b.push(
            " THEN 1 ELSE 0 END) AS BIGINT) AS failed, SUM(cost_usd) AS cost_usd, \
             CAST(SUM(tokens_in) AS BIGINT) AS tokens_in, CAST(SUM(tokens_out) AS BIGINT) AS tokens_out, \
             CAST(SUM(latency_ms) AS BIGINT) AS latency_sum",
        );
        query.scope(&mut b)?;
        b.push(" GROUP BY ")
            .push(key)
            .push(" ORDER BY requests DESC, key");
        let rows = b.build().fetch_all(&self.pool).await?;
        let mut groups = Vec::with_capacity(rows.len());
        let mut index = HashMap::with_capacity(rows.len());
        for row in &rows {
            let key: String = row.try_get("key")?;
            let requests: i64 = row.try_get("requests")?;
            let latency_sum: i64 = row.try_get("latency_sum")?;
            index.insert(key.clone(), groups.len());
            groups.push(pb::TraceAggregate {
                key,
                requests: to_u64(requests),
                failed: to_u64(row.try_get("failed")?),
                cost_usd: row.try_get("cost_usd")?,
                tokens_in: to_u64(row.try_get("tokens_in")?),
                tokens_out: to_u64(row.try_get("tokens_out")?),
                latency_mean_ms: latency_sum as f64 / requests.max(1) as f64,
                ..Default::default()
            });
        }

        // Rank each group's latencies; keep the rows at the quantiles' ranks.
        let mut b = SqlBuilder::new("SELECT key, rn, n, latency_ms FROM (SELECT ");
        b.push(key)
            .push(" AS key, latency_ms, ROW_NUMBER() OVER (PARTITION BY ")
            .push(key)
            .push(" ORDER BY latency_ms) AS rn, COUNT(*) OVER (PARTITION BY ")
            .push(key)
            .push(") AS n");
        query.scope(&mut b)?;
        // The nearest ranks of QUANTILES, in integer arithmetic.
        b.push(
            ") ranked WHERE rn = (n * 50 + 99) / 100 OR rn = (n * 95 + 99) / 100 \
             OR rn = (n * 99 + 99) / 100",
        );
        for row in b.build().fetch_all(&self.pool).await? {
            let key: String = row.try_get("key")?;
            let (rn, n): (i64, i64) = (row.try_get("rn")?, row.try_get("n")?);
            let latency = to_u64(row.try_get("latency_ms")?);
            let Some(group) = index.get(&key).and_then(|&i| groups.get_mut(i)) else {
                continue;
            };
            for q in QUANTILES {
                if rn == (n * q + 99) / 100 {
                    match q {
                        50 => group.latency_p50_ms = latency,
                        95 => group.latency_p95_ms = latency,
                        _ => group.latency_p99_ms = latency,
                    }
                }
            }
        }
        Ok(groups)
    }
}

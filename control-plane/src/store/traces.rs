//! The trace store: idempotent batch ingest and filtered, cursor-paginated reads.

use prost::Message;
use sqlx::Row;
use switchyard_domain::timestamp_to_millis;
use switchyard_proto::v1 as pb;

use super::sql::SqlBuilder;
use super::{Store, StoreError, now_ms};

/// Rows per INSERT statement: keeps the bind count under SQLite's and Postgres's limits.
const ROWS_PER_STATEMENT: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceInsertOutcome {
    /// Traces stored by this call.
    pub inserted: u64,
    /// Traces already stored earlier (a resent batch).
    pub duplicates: u64,
}

#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub outcome: Option<i32>,
    pub workspace: Option<String>,
    pub strategy: Option<String>,
    pub error_class: Option<i32>,
    pub min_latency_ms: Option<u64>,
    pub min_cost_usd: Option<f64>,
    pub replays: ReplayFilter,
    pub limit: u32,
    /// Position after which the page starts: (received_at_ms, trace_id) of the previous page's last row.
    pub after: Option<(i64, String)>,
}

/// Which traces a list takes by replay origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReplayFilter {
    #[default]
    Any,
    Originals,
    Replays,
    /// Replays of this trace.
    Of(String),
}

#[derive(Debug, Clone, Default)]
pub struct TracePage {
    pub traces: Vec<pb::TraceSummary>,
    /// Position of the last row, when more rows may follow.
    pub next: Option<(i64, String)>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

impl Store {
    /// Stores a batch (traces and the health windows it carries) in one
    /// transaction; traces and windows already stored are skipped, so a resent
    /// batch is harmless. Returns once the transaction is committed.
    pub async fn insert_traces(
        &self,
        traces: &[pb::Trace],
        windows: &[pb::HealthWindow],
    ) -> Result<TraceInsertOutcome, StoreError> {
        let stored_at = now_ms();
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for chunk in traces.chunks(ROWS_PER_STATEMENT) {
            let mut b = SqlBuilder::new(
                "INSERT INTO traces (trace_id, request_id, workspace, requested_model, strategy, final_target, \
                 final_provider, final_model, outcome, error_class, attempt_count, latency_ms, ttft_ms, tokens_in, \
                 tokens_out, cost_usd, received_at_ms, snapshot_version, node_id, stored_at_ms, body, replay_of) VALUES ",
            );
            for (i, t) in chunk.iter().enumerate() {
                b.push(if i == 0 { "(" } else { ", (" });
                b.bind(t.trace_id.clone())?.push(", ");
                b.bind(t.request_id.clone())?.push(", ");
                b.bind(t.workspace.clone())?.push(", ");
                b.bind(t.requested_model.clone())?.push(", ");
                b.bind(t.strategy.clone())?.push(", ");
                b.bind(t.final_target.clone())?.push(", ");
                b.bind(t.final_provider.clone())?.push(", ");
                b.bind(t.final_model.clone())?.push(", ");
                b.bind(i64::from(t.outcome))?.push(", ");
                b.bind(i64::from(t.error_class))?.push(", ");
                b.bind(i64::try_from(t.attempts.len()).unwrap_or(i64::MAX))?
                    .push(", ");
                b.bind(to_i64(t.latency_ms))?.push(", ");
                b.bind(to_i64(t.ttft_ms))?.push(", ");
                b.bind(to_i64(t.tokens_in))?.push(", ");
                b.bind(to_i64(t.tokens_out))?.push(", ");
                b.bind(t.cost_usd)?.push(", ");
                b.bind(
                    t.received_at
                        .as_ref()
                        .map(timestamp_to_millis)
                        .unwrap_or_default(),
                )?
                .push(", ");
                b.bind(to_i64(t.snapshot_version))?.push(", ");
                b.bind(t.node_id.clone())?.push(", ");
                b.bind(stored_at)?.push(", ");
                b.bind(t.encode_to_vec())?.push(", ");
                b.bind(t.replay_of.clone())?.push(")");
            }
            b.push(" ON CONFLICT (trace_id) DO NOTHING");
            inserted += b.build().execute(&mut *tx).await?.rows_affected();
        }
        let attempts: Vec<(&pb::Trace, usize, &pb::Attempt)> = traces
            .iter()
            .flat_map(|t| t.attempts.iter().enumerate().map(move |(i, a)| (t, i, a)))
            .collect();
        for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
            let mut b = SqlBuilder::new(
                "INSERT INTO trace_attempts (trace_id, position, target_id, strategy, success, error_class, \
                 duration_ms, ttft_ms, started_at_ms) VALUES ",
            );
            for (i, (trace, position, a)) in chunk.iter().enumerate() {
                b.push(if i == 0 { "(" } else { ", (" });
                b.bind(trace.trace_id.clone())?.push(", ");
                b.bind(i64::try_from(*position).unwrap_or(i64::MAX))?
                    .push(", ");
                b.bind(a.target_id.clone())?.push(", ");
                b.bind(trace.strategy.clone())?.push(", ");
                b.bind(i64::from(a.success))?.push(", ");
                b.bind(i64::from(a.error_class))?.push(", ");
                b.bind(to_i64(a.duration_ms))?.push(", ");
                b.bind(to_i64(a.ttft_ms))?.push(", ");
                b.bind(
                    a.started_at
                        .as_ref()
                        .map(timestamp_to_millis)
                        .unwrap_or_default(),
                )?
                .push(")");
            }
            b.push(" ON CONFLICT (trace_id, position) DO NOTHING");
            b.build().execute(&mut *tx).await?;
        }
        super::health::insert_windows(&mut tx, windows, stored_at).await?;
        tx.commit().await?;
        let total = u64::try_from(traces.len()).unwrap_or(u64::MAX);
        Ok(TraceInsertOutcome {
            inserted,
            duplicates: total.saturating_sub(inserted),
        })
    }

    /// Whole traces received in `[start_ms, end_ms)`, oldest first, `limit`
    /// at a time after `after` (the last row of the previous page).
    pub async fn traces_between(
        &self,
        start_ms: i64,
        end_ms: i64,
        after: Option<&(i64, String)>,
        limit: i64,
    ) -> Result<Vec<pb::Trace>, StoreError> {
        let mut b = SqlBuilder::new("SELECT trace_id, body FROM traces WHERE received_at_ms >= ");
        b.bind(start_ms)?
            .push(" AND received_at_ms < ")
            .bind(end_ms)?;
        if let Some((at, id)) = after {
            b.push(" AND (received_at_ms > ").bind(*at)?;
            b.push(" OR (received_at_ms = ").bind(*at)?;
            b.push(" AND trace_id > ").bind(id.clone())?.push("))");
        }
        b.push(" ORDER BY received_at_ms, trace_id LIMIT ")
            .bind(limit)?;
        let rows = b.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("trace_id")?;
                let body: Vec<u8> = row.try_get("body")?;
                pb::Trace::decode(body.as_slice()).map_err(|e| StoreError::Corrupt {
                    entity: "trace",
                    key: id,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    pub async fn get_trace(&self, trace_id: &str) -> Result<pb::Trace, StoreError> {
        let body: Vec<u8> = sqlx::query_scalar("SELECT body FROM traces WHERE trace_id = $1")
            .bind(trace_id.to_owned())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "trace",
                key: trace_id.to_owned(),
            })?;
        pb::Trace::decode(body.as_slice()).map_err(|e| StoreError::Corrupt {
            entity: "trace",
            key: trace_id.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Newest first. Pages follow (received_at_ms, trace_id) downwards, so rows
    /// inserted while a client pages never shift the pages it has not read yet.
    pub async fn list_traces(&self, filter: &TraceFilter) -> Result<TracePage, StoreError> {
        let mut b = SqlBuilder::new(
            "SELECT trace_id, request_id, workspace, requested_model, final_target, outcome, error_class, \
             attempt_count, latency_ms, ttft_ms, tokens_in, tokens_out, cost_usd, received_at_ms, snapshot_version, \
             strategy, final_provider FROM traces WHERE 1 = 1",
        );
        if let Some(start) = filter.start_ms {
            b.push(" AND received_at_ms >= ").bind(start)?;
        }
        if let Some(end) = filter.end_ms {
            b.push(" AND received_at_ms < ").bind(end)?;
        }
        if let Some(provider) = &filter.provider {
            b.push(" AND final_provider = ").bind(provider.clone())?;
        }
        if let Some(model) = &filter.model {
            b.push(" AND (final_model = ").bind(model.clone())?;
            b.push(" OR requested_model = ")
                .bind(model.clone())?
                .push(")");
        }
        if let Some(outcome) = filter.outcome {
            b.push(" AND outcome = ").bind(i64::from(outcome))?;
        }
        if let Some(workspace) = &filter.workspace {
            b.push(" AND workspace = ").bind(workspace.clone())?;
        }
        if let Some(strategy) = &filter.strategy {
            b.push(" AND strategy = ").bind(strategy.clone())?;
        }
        if let Some(class) = filter.error_class {
            b.push(" AND error_class = ").bind(i64::from(class))?;
        }
        if let Some(latency) = filter.min_latency_ms {
            b.push(" AND latency_ms >= ").bind(to_i64(latency))?;
        }
        if let Some(cost) = filter.min_cost_usd {
            b.push(" AND cost_usd >= ").bind(cost)?;
        }
        match &filter.replays {
            ReplayFilter::Any => {}
            ReplayFilter::Originals => {
                b.push(" AND replay_of = ''");
            }
            // The literal predicate lets the planner use the partial index.
            ReplayFilter::Replays => {
                b.push(" AND replay_of <> ''");
            }
            ReplayFilter::Of(id) => {
                b.push(" AND replay_of <> '' AND replay_of = ")
                    .bind(id.clone())?;
            }
        }
        if let Some((at, id)) = &filter.after {
            b.push(" AND (received_at_ms < ").bind(*at)?;
            b.push(" OR (received_at_ms = ").bind(*at)?;
            b.push(" AND trace_id < ").bind(id.clone())?.push("))");
        }
        b.push(" ORDER BY received_at_ms DESC, trace_id DESC LIMIT ")
            .bind(i64::from(filter.limit) + 1)?;

        let rows = b.build().fetch_all(&self.pool).await?;
        let mut traces = Vec::with_capacity(rows.len());
        for row in &rows {
            traces.push(pb::TraceSummary {
                trace_id: row.try_get("trace_id")?,
                request_id: row.try_get("request_id")?,
                workspace: row.try_get("workspace")?,
                requested_model: row.try_get("requested_model")?,
                final_target: row.try_get("final_target")?,
                outcome: i32::try_from(row.try_get::<i64, _>("outcome")?).unwrap_or_default(),
                error_class: i32::try_from(row.try_get::<i64, _>("error_class")?)
                    .unwrap_or_default(),
                attempt_count: u32::try_from(row.try_get::<i64, _>("attempt_count")?)
                    .unwrap_or_default(),
                latency_ms: to_u64(row.try_get("latency_ms")?),
                ttft_ms: to_u64(row.try_get("ttft_ms")?),
                tokens_in: to_u64(row.try_get("tokens_in")?),
                tokens_out: to_u64(row.try_get("tokens_out")?),
                cost_usd: row.try_get("cost_usd")?,
                received_at: Some(switchyard_domain::timestamp_from_millis(
                    row.try_get("received_at_ms")?,
                )),
                snapshot_version: to_u64(row.try_get("snapshot_version")?),
                strategy: row.try_get("strategy")?,
                final_provider: row.try_get("final_provider")?,
            });
        }
        let limit = usize::try_from(filter.limit).unwrap_or(usize::MAX);
        let next = if traces.len() > limit {
            traces.truncate(limit);
            traces.last().map(|t| {
                let at = t
                    .received_at
                    .as_ref()
                    .map(timestamp_to_millis)
                    .unwrap_or_default();
                (at, t.trace_id.clone())
            })
        } else {
            None
        };
        Ok(TracePage { traces, next })
    }
}

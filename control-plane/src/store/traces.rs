//! The trace store: idempotent batch ingest and filtered, cursor-paginated reads.

use std::collections::HashSet;

use prost::Message;
use serde::Serialize;
use sqlx::Row;
use switchyard_domain::timestamp_to_millis;
use switchyard_proto::v1 as pb;

use super::sql::SqlBuilder;
use super::{Backend, Store, StoreError, now_ms};

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

/// An INSERT of child rows (attempts, candidates) that takes all its rows as
/// one JSON array in one bound value, unpacked by the database: a placeholder
/// per column would cost a bind per value and cap the rows per statement.
struct ChildInsert {
    postgres: &'static str,
    sqlite: &'static str,
}

const ATTEMPTS: ChildInsert = ChildInsert {
    postgres: "INSERT INTO trace_attempts (trace_id, position, target_id, strategy, success, error_class, \
               duration_ms, ttft_ms, started_at_ms) \
               SELECT trace_id, position, target_id, strategy, success, error_class, duration_ms, ttft_ms, \
               started_at_ms FROM json_to_recordset($1::json) AS r(trace_id TEXT, position BIGINT, \
               target_id TEXT, strategy TEXT, success BIGINT, error_class BIGINT, duration_ms BIGINT, \
               ttft_ms BIGINT, started_at_ms BIGINT) \
               ON CONFLICT (trace_id, position) DO NOTHING",
    // `WHERE true` resolves SQLite's parsing ambiguity of INSERT … SELECT … ON CONFLICT.
    sqlite: "INSERT INTO trace_attempts (trace_id, position, target_id, strategy, success, error_class, \
             duration_ms, ttft_ms, started_at_ms) \
             SELECT json_extract(value, '$.trace_id'), json_extract(value, '$.position'), \
             json_extract(value, '$.target_id'), json_extract(value, '$.strategy'), \
             json_extract(value, '$.success'), json_extract(value, '$.error_class'), \
             json_extract(value, '$.duration_ms'), json_extract(value, '$.ttft_ms'), \
             json_extract(value, '$.started_at_ms') FROM json_each($1) WHERE true \
             ON CONFLICT (trace_id, position) DO NOTHING",
};

const CANDIDATES: ChildInsert = ChildInsert {
    postgres: "INSERT INTO trace_candidates (trace_id, position, target_id, rank, chain_position, score, \
               quality, speed, cost, health, workspace_fit, estimated_cost_usd) \
               SELECT trace_id, position, target_id, rank, chain_position, score, quality, speed, cost, \
               health, workspace_fit, estimated_cost_usd FROM json_to_recordset($1::json) AS r(trace_id TEXT, \
               position BIGINT, target_id TEXT, rank BIGINT, chain_position BIGINT, score DOUBLE PRECISION, \
               quality DOUBLE PRECISION, speed DOUBLE PRECISION, cost DOUBLE PRECISION, \
               health DOUBLE PRECISION, workspace_fit DOUBLE PRECISION, estimated_cost_usd DOUBLE PRECISION) \
               ON CONFLICT (trace_id, position) DO NOTHING",
    sqlite: "INSERT INTO trace_candidates (trace_id, position, target_id, rank, chain_position, score, \
             quality, speed, cost, health, workspace_fit, estimated_cost_usd) \
             SELECT json_extract(value, '$.trace_id'), json_extract(value, '$.position'), \
             json_extract(value, '$.target_id'), json_extract(value, '$.rank'), \
             json_extract(value, '$.chain_position'), json_extract(value, '$.score'), \
             json_extract(value, '$.quality'), json_extract(value, '$.speed'), json_extract(value, '$.cost'), \
             json_extract(value, '$.health'), json_extract(value, '$.workspace_fit'), \
             json_extract(value, '$.estimated_cost_usd') FROM json_each($1) WHERE true \
             ON CONFLICT (trace_id, position) DO NOTHING",
};

async fn insert_child_rows<R: Serialize>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    insert: &ChildInsert,
    rows: &[R],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = match backend {
        Backend::Postgres => insert.postgres,
        Backend::Sqlite => insert.sqlite,
    };
    let json = serde_json::to_string(rows).map_err(|e| StoreError::Corrupt {
        entity: "trace batch",
        key: String::new(),
        reason: e.to_string(),
    })?;
    sqlx::query(sql).bind(json).execute(&mut **tx).await?;
    Ok(())
}

/// JSON has no NaN or infinity, and a null would fail the whole batch.
fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

#[derive(Serialize)]
struct AttemptRow<'a> {
    trace_id: &'a str,
    position: usize,
    target_id: &'a str,
    strategy: &'a str,
    success: i64,
    error_class: i32,
    duration_ms: i64,
    ttft_ms: i64,
    started_at_ms: i64,
}

fn attempt_rows<'a>(traces: &[&'a pb::Trace]) -> Vec<AttemptRow<'a>> {
    traces
        .iter()
        .flat_map(|t| {
            t.attempts
                .iter()
                .enumerate()
                .map(move |(position, a)| AttemptRow {
                    trace_id: &t.trace_id,
                    position,
                    target_id: &a.target_id,
                    strategy: &t.strategy,
                    success: i64::from(a.success),
                    error_class: a.error_class,
                    duration_ms: to_i64(a.duration_ms),
                    ttft_ms: to_i64(a.ttft_ms),
                    started_at_ms: a
                        .started_at
                        .as_ref()
                        .map(timestamp_to_millis)
                        .unwrap_or_default(),
                })
        })
        .collect()
}

#[derive(Serialize)]
struct CandidateRow<'a> {
    trace_id: &'a str,
    position: usize,
    target_id: &'a str,
    rank: u32,
    chain_position: u32,
    score: f64,
    quality: f64,
    speed: f64,
    cost: f64,
    health: f64,
    workspace_fit: f64,
    estimated_cost_usd: f64,
}

fn candidate_rows<'a>(traces: &[&'a pb::Trace]) -> Vec<CandidateRow<'a>> {
    traces
        .iter()
        .flat_map(|t| {
            t.candidates.iter().enumerate().map(move |(position, c)| {
                let d = c.dimensions.clone().unwrap_or_default();
                let score =
                    |s: Option<pb::DimensionScore>| finite(s.map(|s| s.score).unwrap_or_default());
                CandidateRow {
                    trace_id: &t.trace_id,
                    position,
                    target_id: &c.target_id,
                    rank: c.rank,
                    chain_position: c.chain_position,
                    score: finite(c.score),
                    quality: score(d.quality),
                    speed: score(d.speed),
                    cost: score(d.cost),
                    health: score(d.health),
                    workspace_fit: score(d.workspace_fit),
                    estimated_cost_usd: finite(c.estimated_cost_usd),
                }
            })
        })
        .collect()
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
        let mut fresh_ids = HashSet::new();
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
            b.push(" ON CONFLICT (trace_id) DO NOTHING RETURNING trace_id");
            for row in b.build().fetch_all(&mut *tx).await? {
                fresh_ids.insert(row.try_get::<String, _>("trace_id")?);
            }
        }
        // Only traces stored now get child rows: a resent batch adds nothing.
        let fresh: Vec<&pb::Trace> = traces
            .iter()
            .filter(|t| fresh_ids.contains(t.trace_id.as_str()))
            .collect();
        insert_child_rows(&mut tx, self.backend, &ATTEMPTS, &attempt_rows(&fresh)).await?;
        if self.candidate_rows {
            insert_child_rows(&mut tx, self.backend, &CANDIDATES, &candidate_rows(&fresh)).await?;
        }
        super::health::insert_windows(&mut tx, windows, stored_at).await?;
        tx.commit().await?;
        let inserted = u64::try_from(fresh_ids.len()).unwrap_or(u64::MAX);
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

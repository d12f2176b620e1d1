//! `TraceService`: batch ingest acked after commit, and trace queries.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use switchyard_domain::{StrategySpec, StrategyWeights, timestamp_to_millis};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::trace_service_server::TraceService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::{invalid, store_status};
use crate::health::WindowRecord;
use crate::metrics::Metrics;
use crate::replay::Replayer;
use crate::store::{AggregateQuery, Grouping, ReplayFilter, Store, TraceFilter, now_ms};
use crate::whatif;

const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 1000;
const MAX_ID_LEN: usize = 128;

pub struct TraceApi {
    store: Store,
    metrics: Arc<Metrics>,
    replayer: Arc<Replayer>,
    /// Ends report streams on shutdown (after the batch in hand is stored and
    /// acked), so the server can drain; data planes resend the rest elsewhere.
    shutdown: CancellationToken,
}

impl TraceApi {
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        replayer: Arc<Replayer>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            metrics,
            replayer,
            shutdown,
        }
    }
}

/// A trace that can never be stored; resending it would not help.
fn invalid_trace(t: &pb::Trace) -> Option<&'static str> {
    if t.trace_id.is_empty() || t.trace_id.len() > MAX_ID_LEN {
        Some("trace_id: required, at most 128 characters")
    } else if t.received_at.is_none() {
        Some("received_at: required")
    } else if pb::Outcome::try_from(t.outcome).is_err() {
        Some("outcome: unknown value")
    } else {
        None
    }
}

/// Splits windows into those that can be stored and the reasons the others cannot.
fn valid_windows(windows: Vec<pb::HealthWindow>) -> (Vec<pb::HealthWindow>, Vec<String>) {
    let mut valid = Vec::with_capacity(windows.len());
    let mut invalid = Vec::new();
    for (i, w) in windows.into_iter().enumerate() {
        match WindowRecord::try_from(&w) {
            Ok(_) => valid.push(w),
            Err(e) => invalid.push(e.within(&format!("health[{i}]")).to_string()),
        }
    }
    (valid, invalid)
}

fn encode_cursor((at, id): &(i64, String)) -> String {
    format!("{at}:{id}")
}

fn decode_cursor(token: &str) -> Result<(i64, String), Status> {
    let bad = || Status::invalid_argument("page_token: not a token returned by ListTraces");
    let (at, id) = token.split_once(':').ok_or_else(bad)?;
    let at = at.parse().map_err(|_| bad())?;
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(bad());
    }
    Ok((at, id.to_owned()))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn filter_from(req: pb::ListTracesRequest) -> Result<TraceFilter, Status> {
    let limit = match req.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n > MAX_PAGE_SIZE => {
            return Err(Status::invalid_argument("page_size: must be at most 1000"));
        }
        n => n,
    };
    let outcome = match pb::Outcome::try_from(req.outcome) {
        Ok(pb::Outcome::Unspecified) => None,
        Ok(o) => Some(i32::from(o)),
        Err(_) => return Err(Status::invalid_argument("outcome: unknown value")),
    };
    let error_class = match pb::ErrorClass::try_from(req.error_class) {
        Ok(pb::ErrorClass::Unspecified) => None,
        Ok(class) => Some(i32::from(class)),
        Err(_) => return Err(Status::invalid_argument("error_class: unknown value")),
    };
    if !(req.min_cost_usd.is_finite() && req.min_cost_usd >= 0.0) {
        return Err(Status::invalid_argument(
            "min_cost_usd: must be a finite number, 0 or more",
        ));
    }
    let replays = match (
        pb::ReplayOrigin::try_from(req.replay_origin),
        non_empty(req.replay_of),
    ) {
        (Err(_), _) => return Err(Status::invalid_argument("replay_origin: unknown value")),
        (Ok(pb::ReplayOrigin::Originals), Some(_)) => {
            return Err(Status::invalid_argument(
                "replay_of: originals have none; drop replay_origin or replay_of",
            ));
        }
        (Ok(_), Some(id)) if id.len() > MAX_ID_LEN => {
            return Err(Status::invalid_argument(
                "replay_of: a trace id of at most 128 characters",
            ));
        }
        (Ok(_), Some(id)) => ReplayFilter::Of(id),
        (Ok(pb::ReplayOrigin::Any), None) => ReplayFilter::Any,
        (Ok(pb::ReplayOrigin::Originals), None) => ReplayFilter::Originals,
        (Ok(pb::ReplayOrigin::Replays), None) => ReplayFilter::Replays,
    };
    let start_ms = req.start_time.as_ref().map(timestamp_to_millis);
    let end_ms = req.end_time.as_ref().map(timestamp_to_millis);
    if let (Some(s), Some(e)) = (start_ms, end_ms)
        && s >= e
    {
        return Err(Status::invalid_argument(
            "end_time: must be after start_time",
        ));
    }
    Ok(TraceFilter {
        start_ms,
        end_ms,
        provider: non_empty(req.provider),
        model: non_empty(req.model),
        outcome,
        workspace: non_empty(req.workspace),
        strategy: non_empty(req.strategy),
        error_class,
        min_latency_ms: (req.min_latency_ms > 0).then_some(req.min_latency_ms),
        min_cost_usd: (req.min_cost_usd > 0.0).then_some(req.min_cost_usd),
        replays,
        limit,
        after: non_empty(req.page_token)
            .as_deref()
            .map(decode_cursor)
            .transpose()?,
    })
}

/// Aggregates and WhatIf look back this far when the request gives no start.
const DEFAULT_AGGREGATE_SPAN_MS: i64 = 86_400_000;

/// `[start, end)` in Unix ms: end defaults to now, start to a day before it.
fn time_range(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
) -> Result<(i64, i64), Status> {
    let end_ms = end.map_or_else(now_ms, timestamp_to_millis);
    let start_ms = start.map_or(end_ms - DEFAULT_AGGREGATE_SPAN_MS, timestamp_to_millis);
    if start_ms >= end_ms {
        return Err(Status::invalid_argument(
            "end_time: must be after start_time",
        ));
    }
    Ok((start_ms, end_ms))
}

fn aggregate_query(req: pb::AggregateTracesRequest) -> Result<AggregateQuery, Status> {
    let group_by = match pb::TraceGrouping::try_from(req.group_by) {
        Ok(pb::TraceGrouping::Workspace) => Grouping::Workspace,
        Ok(pb::TraceGrouping::Provider) => Grouping::Provider,
        Ok(pb::TraceGrouping::Model) => Grouping::Model,
        Ok(pb::TraceGrouping::Unspecified) | Err(_) => {
            return Err(Status::invalid_argument(
                "group_by: required, one of TRACE_GROUPING_WORKSPACE, TRACE_GROUPING_PROVIDER, TRACE_GROUPING_MODEL",
            ));
        }
    };
    let (start_ms, end_ms) = time_range(req.start_time.as_ref(), req.end_time.as_ref())?;
    Ok(AggregateQuery {
        start_ms,
        end_ms,
        group_by,
        workspace: non_empty(req.workspace),
    })
}

type ReportStream = Pin<Box<dyn Stream<Item = Result<pb::ReportResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TraceService for TraceApi {
    type ReportStream = ReportStream;

    async fn report(
        &self,
        req: Request<Streaming<pb::ReportRequest>>,
    ) -> Result<Response<ReportStream>, Status> {
        let mut inbound = req.into_inner();
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let shutdown = self.shutdown.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    () = shutdown.cancelled() => break,
                    message = inbound.message() => match message {
                        Ok(Some(batch)) => batch,
                        Ok(None) | Err(_) => break,
                    },
                };
                let arrived = std::time::Instant::now();
                let (valid, rejected): (Vec<_>, Vec<_>) = batch
                    .traces
                    .into_iter()
                    .partition(|t| invalid_trace(t).is_none());
                let mut problems = Vec::new();
                if let Some(first) = rejected.first() {
                    let reason = invalid_trace(first).unwrap_or_default();
                    problems.push(format!(
                        "{} invalid trace(s) discarded; first: {reason}",
                        rejected.len()
                    ));
                }
                let (windows, bad_windows) = valid_windows(batch.health);
                if let Some(first) = bad_windows.first() {
                    problems.push(format!(
                        "{} invalid health window(s) discarded; first: {first}",
                        bad_windows.len()
                    ));
                }
                let error = problems.join("; ");
                if !error.is_empty() {
                    tracing::warn!(batch = batch.batch_id, %error, "discarded invalid records");
                }
                metrics.traces_rejected.inc_by(rejected.len() as u64);
                let rejected = rejected.len() + bad_windows.len();
                let response = match store.insert_traces(&valid, &windows).await {
                    Ok(outcome) => {
                        metrics.traces_ingested.inc_by(outcome.inserted);
                        metrics.traces_duplicate.inc_by(outcome.duplicates);
                        metrics.trace_batch("stored");
                        tracing::debug!(
                            batch = batch.batch_id,
                            inserted = outcome.inserted,
                            duplicates = outcome.duplicates,
                            "stored trace batch"
                        );
                        pb::ReportResponse {
                            batch_id: batch.batch_id,
                            stored: true,
                            error,
                            rejected: u32::try_from(rejected).unwrap_or(u32::MAX),
                        }
                    }
                    Err(e) => {
                        metrics.trace_batch("not_stored");
                        tracing::warn!(batch = batch.batch_id, error = %e, "trace batch not stored; the data plane keeps it");
                        pb::ReportResponse {
                            batch_id: batch.batch_id,
                            stored: false,
                            error: "trace store unavailable".to_owned(),
                            rejected: 0,
                        }
                    }
                };
                metrics
                    .trace_ingest_duration
                    .observe(arrived.elapsed().as_secs_f64());
                if tx.send(Ok(response)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_traces(
        &self,
        req: Request<pb::ListTracesRequest>,
    ) -> Result<Response<pb::ListTracesResponse>, Status> {
        let filter = filter_from(req.into_inner())?;
        let page = self
            .store
            .list_traces(&filter)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListTracesResponse {
            traces: page.traces,
            next_page_token: page.next.as_ref().map(encode_cursor).unwrap_or_default(),
        }))
    }

    async fn aggregate_traces(
        &self,
        req: Request<pb::AggregateTracesRequest>,
    ) -> Result<Response<pb::AggregateTracesResponse>, Status> {
        let query = aggregate_query(req.into_inner())?;
        let groups = self
            .store
            .aggregate_traces(&query)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::AggregateTracesResponse { groups }))
    }

    async fn get_trace(
        &self,
        req: Request<pb::GetTraceRequest>,
    ) -> Result<Response<pb::Trace>, Status> {
        let trace_id = req.into_inner().trace_id;
        if trace_id.is_empty() || trace_id.len() > MAX_ID_LEN {
            return Err(Status::invalid_argument(
                "trace_id: required, at most 128 characters",
            ));
        }
        let trace = self
            .store
            .get_trace(&trace_id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(trace))
    }

    async fn replay_trace(
        &self,
        req: Request<pb::ReplayTraceRequest>,
    ) -> Result<Response<pb::ReplayTraceResponse>, Status> {
        self.replayer
            .replay(req.into_inner())
            .await
            .map(Response::new)
    }

    async fn what_if(
        &self,
        req: Request<pb::WhatIfRequest>,
    ) -> Result<Response<pb::WhatIfResponse>, Status> {
        let req = req.into_inner();
        let (start_ms, end_ms) = time_range(req.start_time.as_ref(), req.end_time.as_ref())?;
        let weights = match (non_empty(req.strategy), req.weights) {
            (Some(_), Some(_)) => {
                return Err(Status::invalid_argument(
                    "strategy: give a strategy name or weights, not both",
                ));
            }
            (None, None) => {
                return Err(Status::invalid_argument(
                    "strategy: required (a strategy name, or weights)",
                ));
            }
            (Some(name), None) => {
                let stored = self
                    .store
                    .get::<StrategySpec>(vec![name])
                    .await
                    .map_err(store_status)?;
                stored.spec.weights
            }
            (None, Some(weights)) => {
                let weights = StrategyWeights::from(weights);
                weights
                    .validate()
                    .map_err(|e| invalid(&e.within("weights")))?;
                weights
            }
        };
        whatif::over_window(&self.store, start_ms, end_ms, weights)
            .await
            .map(Response::new)
            .map_err(store_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let cursor = (1_700_000_000_000, "0190-abc".to_owned());
        assert_eq!(decode_cursor(&encode_cursor(&cursor)).unwrap(), cursor);
        for bad in ["", "nocolon", "x:id", "12:"] {
            assert_eq!(
                decode_cursor(bad).unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn page_size_and_time_range_are_checked() {
        let too_big = pb::ListTracesRequest {
            page_size: 5000,
            ..Default::default()
        };
        assert!(
            filter_from(too_big)
                .unwrap_err()
                .message()
                .starts_with("page_size")
        );
        let backwards = pb::ListTracesRequest {
            start_time: Some(prost_types::Timestamp {
                seconds: 10,
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: 5,
                nanos: 0,
            }),
            ..Default::default()
        };
        assert!(
            filter_from(backwards)
                .unwrap_err()
                .message()
                .starts_with("end_time")
        );
        assert_eq!(
            filter_from(pb::ListTracesRequest::default()).unwrap().limit,
            DEFAULT_PAGE_SIZE
        );
    }
}

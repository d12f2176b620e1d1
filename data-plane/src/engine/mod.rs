//! The execution engine: walks the ranked candidates, calls each provider until
//! one answers, streams the answer to the client, and reports the trace of every
//! request, whatever happens, including a client that goes away.
//!
//! Each request runs in its own task that talks to the edge over a channel; a
//! closed channel means the client left, and the task cancels the upstream call.

mod retry;
mod trace;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use switchyard_proto::v1 as pb;
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::breaker::Breakers;
use crate::metrics::{AttemptLabels, Metrics, OutcomeLabels, TargetLabels};
use crate::providers::{ErrorClass, ProviderError, StreamEvent, ToolCall, ToolCallDelta, Usage};
use crate::reporter::TraceReporter;
use crate::request::ChatRequest;
use crate::scoring::RoutePlan;
use crate::snapshot::LiveSnapshot;
use crate::workload::count_tokens;
use trace::TraceBuilder;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most attempts one request may make, across all targets.
    pub max_attempts: usize,
    /// Most retries of one target within one request, before moving on.
    pub retries_per_target: usize,
    /// How long a streamed attempt may take to produce its first token.
    pub first_token_timeout: Duration,
    pub node_id: String,
}

/// Routing facts every response carries.
#[derive(Debug, Clone, Default)]
pub struct ResponseMeta {
    pub request_id: String,
    pub trace_id: String,
    pub target_id: String,
    pub model: String,
    pub latency_ms: u64,
    pub ttft_ms: u64,
    pub cost_usd: f64,
    pub attempts: u32,
    pub snapshot_version: u64,
    pub usage: Usage,
}

#[derive(Debug, Clone)]
pub enum FailureKind {
    /// Every target that serves the model was filtered out.
    NoEligibleTarget,
    /// The last attempt failed with this class.
    Upstream(ErrorClass),
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// The stream had already sent tokens to the client.
    pub partial: bool,
}

#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// A piece of output (streaming requests only).
    Delta(String),
    /// A piece of a tool call (streaming requests only).
    ToolCall(ToolCallDelta),
    /// Success. `content` and `tool_calls` are the whole answer for
    /// non-streaming requests, empty for streams.
    Done {
        content: String,
        tool_calls: Vec<ToolCall>,
        finish_reason: String,
        meta: ResponseMeta,
    },
    Failed(Failure),
}

pub struct Engine {
    client: reqwest::Client,
    reporter: TraceReporter,
    metrics: Arc<Metrics>,
    config: EngineConfig,
    retries: retry::RetryBudget,
    breakers: Arc<Breakers>,
}

enum AttemptResult {
    Done {
        content: String,
        tool_calls: Vec<ToolCall>,
        finish_reason: String,
        usage: Usage,
    },
    /// Failed before anything reached the client: the next candidate may try.
    Failed(ProviderError),
    /// Failed after output reached the client; `output_tokens` were streamed.
    Partial {
        error: ProviderError,
        output_tokens: u64,
    },
    /// The client left; `output_tokens` had been streamed (and are billed).
    Cancelled { output_tokens: u64 },
}

impl Engine {
    pub fn new(
        client: reqwest::Client,
        reporter: TraceReporter,
        metrics: Arc<Metrics>,
        breakers: Arc<Breakers>,
        config: EngineConfig,
    ) -> Self {
        Self {
            client,
            reporter,
            metrics,
            config,
            retries: retry::RetryBudget::default(),
            breakers,
        }
    }

    /// Starts executing; events arrive on the returned channel. Dropping the
    /// receiver cancels the request.
    pub fn execute(
        self: &Arc<Self>,
        snapshot: Arc<LiveSnapshot>,
        request: ChatRequest,
        plan: RoutePlan,
    ) -> mpsc::Receiver<EngineEvent> {
        let (tx, rx) = mpsc::channel(64);
        let engine = self.clone();
        tokio::spawn(async move { engine.run(snapshot, request, plan, tx).await });
        rx
    }

    async fn run(
        &self,
        snapshot: Arc<LiveSnapshot>,
        request: ChatRequest,
        plan: RoutePlan,
        tx: mpsc::Sender<EngineEvent>,
    ) {
        let mut trace = TraceBuilder::new(&request, &plan, &snapshot, &self.config.node_id);
        let mut meta = ResponseMeta {
            request_id: request.request_id.clone(),
            trace_id: trace.trace_id().to_owned(),
            snapshot_version: snapshot.version(),
            ..ResponseMeta::default()
        };

        if plan.chain.is_empty() {
            let message = plan.explanation.clone();
            let record = trace.finish(pb::Outcome::Failed, Some((None, &message)));
            self.finish(record, &mut meta);
            let failure = Failure {
                kind: FailureKind::NoEligibleTarget,
                message,
                partial: false,
            };
            let _ = tx.send(EngineEvent::Failed(failure)).await;
            return;
        }

        // The workload's timeout profile bounds the whole request, retries included.
        let deadline = request.received.at + request.workload.timeout.duration();
        let mut attempts_left = self.config.max_attempts;
        let mut last_error = None;
        'chain: for candidate in plan.chain() {
            let target = &snapshot.routing.targets[candidate.target];
            let Some(endpoint) = snapshot.endpoints.get(&target.spec.provider) else {
                continue;
            };
            self.retries.earn(&target.id);
            let mut backoff = Backoff::new(retry::BACKOFF_BASE, retry::BACKOFF_MAX);
            let mut retries_left = self.config.retries_per_target;
            loop {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if attempts_left == 0 || remaining.is_zero() {
                    if remaining.is_zero() {
                        last_error = Some(ProviderError::new(
                            ErrorClass::Timeout,
                            format!(
                                "request deadline of {}s reached",
                                request.workload.timeout.duration().as_secs()
                            ),
                        ));
                    }
                    break 'chain;
                }
                // A half-open breaker lets one probe through; an open one none.
                if !self
                    .breakers
                    .admit(&target.id, request.received.unix_ms_at(Instant::now()))
                {
                    continue 'chain;
                }
                attempts_left -= 1;
                trace.start_attempt(target);
                let result = if request.stream {
                    self.stream_attempt(
                        endpoint,
                        &request,
                        &target.spec.name,
                        remaining,
                        &mut trace,
                        &tx,
                    )
                    .await
                } else {
                    self.complete_attempt(endpoint, &request, &target.spec.name, remaining, &tx)
                        .await
                };
                meta.attempts = trace.attempts();
                match result {
                    AttemptResult::Done {
                        content,
                        tool_calls,
                        finish_reason,
                        usage,
                    } => {
                        self.count_attempt(&target.id, "ok");
                        self.breakers.success(&target.id);
                        let usage =
                            fill_usage(usage, &request, || output_tokens(&content, &tool_calls));
                        meta.cost_usd = trace.attempt_succeeded(target, usage);
                        meta.usage = usage;
                        meta.target_id.clone_from(&target.id);
                        meta.model.clone_from(&target.spec.name);
                        if !request.stream {
                            trace.first_token();
                        }
                        let record = trace.finish(pb::Outcome::Success, None);
                        self.finish(record, &mut meta);
                        let _ = tx
                            .send(EngineEvent::Done {
                                content,
                                tool_calls,
                                finish_reason,
                                meta,
                            })
                            .await;
                        return;
                    }
                    AttemptResult::Failed(error) => {
                        self.count_attempt(&target.id, error.class.as_str());
                        if error.class.trips_breaker() {
                            self.breakers
                                .failure(&target.id, request.received.unix_ms_at(Instant::now()));
                        }
                        tracing::info!(request_id = %request.request_id, target = %target.id, class = error.class.as_str(), error = %error.message, "attempt failed");
                        trace.attempt_failed(&error);
                        let class = error.class;
                        // Retry-After wins over our own back-off; either must fit the deadline.
                        let wait = error.retry_after.unwrap_or_else(|| backoff.next_delay());
                        let fits = Instant::now() + wait < deadline;
                        last_error = Some(error);
                        if class.retry_same_target()
                            && attempts_left > 0
                            && retries_left > 0
                            && fits
                        {
                            retries_left -= 1;
                            if self.retries.try_spend(&target.id) {
                                self.metrics
                                    .retries
                                    .get_or_create(&TargetLabels {
                                        target: target.id.clone(),
                                    })
                                    .inc();
                                tokio::select! {
                                    () = tx.closed() => {
                                        let record = trace.finish(pb::Outcome::Cancelled, Some((Some(ErrorClass::Cancelled), "client went away")));
                                        self.finish(record, &mut meta);
                                        return;
                                    }
                                    () = tokio::time::sleep(wait) => continue,
                                }
                            }
                            self.metrics
                                .retries_denied
                                .get_or_create(&TargetLabels {
                                    target: target.id.clone(),
                                })
                                .inc();
                        }
                        if !class.try_next_target() {
                            break 'chain;
                        }
                        continue 'chain;
                    }
                    AttemptResult::Partial {
                        error,
                        output_tokens,
                    } => {
                        self.count_attempt(&target.id, error.class.as_str());
                        self.breakers
                            .failure(&target.id, request.received.unix_ms_at(Instant::now()));
                        trace.attempt_failed(&error);
                        let usage = fill_usage(Usage::default(), &request, || output_tokens);
                        meta.cost_usd = trace.partial_from(target, usage);
                        meta.usage = usage;
                        meta.target_id.clone_from(&target.id);
                        let message = format!(
                            "stream from {} failed mid-response: {}",
                            target.id, error.message
                        );
                        let record =
                            trace.finish(pb::Outcome::Partial, Some((Some(error.class), &message)));
                        self.finish(record, &mut meta);
                        let failure = Failure {
                            kind: FailureKind::Upstream(error.class),
                            message,
                            partial: true,
                        };
                        let _ = tx.send(EngineEvent::Failed(failure)).await;
                        return;
                    }
                    AttemptResult::Cancelled { output_tokens } => {
                        self.count_attempt(&target.id, ErrorClass::Cancelled.as_str());
                        trace.attempt_failed(&ProviderError::new(
                            ErrorClass::Cancelled,
                            "client went away",
                        ));
                        if output_tokens > 0 {
                            let usage = fill_usage(Usage::default(), &request, || output_tokens);
                            trace.partial_from(target, usage);
                        }
                        let record = trace.finish(
                            pb::Outcome::Cancelled,
                            Some((Some(ErrorClass::Cancelled), "client went away")),
                        );
                        self.finish(record, &mut meta);
                        return;
                    }
                }
            }
        }

        let error = last_error.unwrap_or_else(|| {
            ProviderError::new(ErrorClass::Configuration, "no target could be called")
        });
        let message = format!(
            "all {} attempt(s) failed; last: {}",
            trace.attempts(),
            error.message
        );
        let record = trace.finish(pb::Outcome::Failed, Some((Some(error.class), &message)));
        self.finish(record, &mut meta);
        let failure = Failure {
            kind: FailureKind::Upstream(error.class),
            message,
            partial: false,
        };
        let _ = tx.send(EngineEvent::Failed(failure)).await;
    }

    async fn complete_attempt(
        &self,
        endpoint: &crate::providers::Endpoint,
        request: &ChatRequest,
        model: &str,
        timeout: Duration,
        tx: &mpsc::Sender<EngineEvent>,
    ) -> AttemptResult {
        tokio::select! {
            () = tx.closed() => AttemptResult::Cancelled { output_tokens: 0 },
            result = endpoint.complete(&self.client, request, model, timeout) => match result {
                Ok(c) => AttemptResult::Done {
                    content: c.content,
                    tool_calls: c.tool_calls,
                    finish_reason: c.finish_reason,
                    usage: c.usage.unwrap_or_default(),
                },
                Err(e) => AttemptResult::Failed(e),
            },
        }
    }

    /// `remaining` bounds the whole attempt; the first token must also come
    /// within the first-token limit, so a stalled target is left while a
    /// backup still has time to answer.
    async fn stream_attempt(
        &self,
        endpoint: &crate::providers::Endpoint,
        request: &ChatRequest,
        model: &str,
        remaining: Duration,
        trace: &mut TraceBuilder,
        tx: &mpsc::Sender<EngineEvent>,
    ) -> AttemptResult {
        let started = tokio::time::Instant::now();
        let deadline = started + remaining;
        let first_token_limit = remaining.min(self.config.first_token_timeout);
        let opened = tokio::select! {
            () = tx.closed() => return AttemptResult::Cancelled { output_tokens: 0 },
            opened = endpoint.stream(&self.client, request, model, first_token_limit) => opened,
        };
        let mut events = match opened {
            Ok(events) => events,
            Err(e) => return AttemptResult::Failed(e),
        };
        let mut sent_any = false;
        // Counted as the output streams, so a stream cut short is still billed.
        let mut output_tokens = 0;
        loop {
            let (wait_until, late) = if sent_any {
                (deadline, "request deadline reached mid-stream")
            } else {
                (started + first_token_limit, "no first token in time")
            };
            let next = tokio::select! {
                () = tx.closed() => return AttemptResult::Cancelled { output_tokens },
                next = tokio::time::timeout_at(wait_until, events.next()) => match next {
                    Ok(next) => next,
                    Err(_) => Some(Err(ProviderError::new(ErrorClass::Timeout, late))),
                },
            };
            let (event, tokens) = match next {
                Some(Ok(StreamEvent::Delta(delta))) => {
                    let tokens = count_tokens(&delta);
                    (EngineEvent::Delta(delta), tokens)
                }
                Some(Ok(StreamEvent::ToolCall(piece))) => {
                    let tokens = piece.name.as_deref().map_or(0, count_tokens)
                        + count_tokens(&piece.arguments);
                    (EngineEvent::ToolCall(piece), tokens)
                }
                Some(Ok(StreamEvent::Finish {
                    finish_reason,
                    usage,
                })) => {
                    let mut usage = usage.unwrap_or_default();
                    if usage.output_tokens == 0 {
                        usage.output_tokens = output_tokens;
                    }
                    return AttemptResult::Done {
                        content: String::new(),
                        tool_calls: Vec::new(),
                        finish_reason,
                        usage,
                    };
                }
                Some(Err(error)) => return ended_early(error, sent_any, output_tokens),
                None => {
                    let error = ProviderError::new(
                        ErrorClass::Protocol,
                        "provider stream ended without finishing",
                    );
                    return ended_early(error, sent_any, output_tokens);
                }
            };
            if !sent_any {
                trace.first_token();
                sent_any = true;
            }
            output_tokens += tokens;
            if tx.send(event).await.is_err() {
                return AttemptResult::Cancelled { output_tokens };
            }
        }
    }

    fn count_attempt(&self, target: &str, result: &'static str) {
        self.metrics
            .attempts
            .get_or_create(&AttemptLabels {
                target: target.to_owned(),
                result,
            })
            .inc();
    }

    /// Records the outcome in metrics and hands the trace to the reporter.
    fn finish(&self, record: pb::Trace, meta: &mut ResponseMeta) {
        meta.latency_ms = record.latency_ms;
        meta.ttft_ms = record.ttft_ms;
        let outcome = match pb::Outcome::try_from(record.outcome) {
            Ok(pb::Outcome::Success) => "success",
            Ok(pb::Outcome::Partial) => "partial",
            Ok(pb::Outcome::Cancelled) => "cancelled",
            _ => "failed",
        };
        self.metrics
            .requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.metrics
            .request_duration
            .observe(record.latency_ms as f64 / 1000.0);
        if record.ttft_ms > 0 {
            self.metrics
                .time_to_first_token
                .observe(record.ttft_ms as f64 / 1000.0);
        }
        self.reporter.submit(record);
    }
}

/// A stream that failed: before its first token the next candidate may try;
/// after it, the client has part of an answer.
fn ended_early(error: ProviderError, sent_any: bool, output_tokens: u64) -> AttemptResult {
    if sent_any {
        AttemptResult::Partial {
            error,
            output_tokens,
        }
    } else {
        AttemptResult::Failed(error)
    }
}

/// Tokens of a whole answer, by our tokenizer: text, tool names and arguments.
fn output_tokens(content: &str, tool_calls: &[ToolCall]) -> u64 {
    count_tokens(content)
        + tool_calls
            .iter()
            .map(|c| count_tokens(&c.name) + count_tokens(&c.arguments))
            .sum::<u64>()
}

/// Providers that report no usage are billed on estimates: the request's
/// counted input and the output counted as it was produced.
fn fill_usage(usage: Usage, request: &ChatRequest, counted_output: impl FnOnce() -> u64) -> Usage {
    Usage {
        input_tokens: if usage.input_tokens > 0 {
            usage.input_tokens
        } else {
            request.workload.input_tokens
        },
        output_tokens: if usage.output_tokens > 0 {
            usage.output_tokens
        } else {
            counted_output()
        },
    }
}

//! The execution engine: walks the ranked candidates, calls each provider until
//! one answers, streams the answer to the client, and reports the trace of every
//! request, whatever happens, including a client that goes away.
//!
//! Each request runs in its own task that talks to the edge over a channel; a
//! closed channel means the client left, and the task cancels the upstream call.

mod attempt;
mod client_link;
mod hedge;
mod retry;
mod trace;

use std::sync::Arc;
use std::time::Duration;

use switchyard_domain::Target;
use switchyard_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::admission::Ticket;
use crate::backoff::Backoff;
use crate::breaker::Breakers;
use crate::health::LocalSignals;
use crate::metrics::{AttemptLabels, InFlight, Metrics, OutcomeLabels, TargetLabels, TokenLabels};
use crate::providers::{Endpoint, ErrorClass, ProviderError, ToolCall, ToolCallDelta, Usage};
use crate::reporter::TraceReporter;
use crate::request::ChatRequest;
use crate::scoring::{HedgePlan, RoutePlan};
use crate::snapshot::LiveSnapshot;
use crate::tool_args::{InvalidToolCall, ToolSchemas};
use crate::workload::count_tokens;
use attempt::{AttemptResult, Head};
use client_link::ClientLink;
use hedge::{HedgeBudget, Race, Side};
use trace::{AttemptId, TraceBuilder};

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
    /// The answer's tool calls that do not match the request's tools.
    pub invalid_tool_calls: Vec<InvalidToolCall>,
}

#[derive(Debug, Clone)]
pub enum FailureKind {
    /// Every target that serves the model was filtered out.
    NoEligibleTarget,
    /// The last attempt failed with this class.
    Upstream(ErrorClass),
    /// The node's shutdown grace ran out before the answer was finished.
    ShuttingDown,
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
    /// A stream's answer begins, from this model (streaming requests only;
    /// once, before the first output).
    Answering {
        model: String,
    },
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
    hedges: HedgeBudget,
    breakers: Arc<Breakers>,
    signals: Arc<LocalSignals>,
    /// Every running request, so a shutdown can wait for their traces.
    tasks: TaskTracker,
    /// Cancelled when the shutdown grace runs out.
    cut: CancellationToken,
}

/// A candidate ready to call.
#[derive(Clone, Copy)]
struct Callee<'a> {
    target: &'a Target,
    endpoint: &'a Endpoint,
    /// The provider's kind ("openai", "anthropic", ...), for spans.
    kind: &'static str,
}

/// What one request's run carries from attempt to attempt.
struct Run<'a> {
    request: &'a ChatRequest,
    /// The request's tools, to check the answer's calls against.
    tools: ToolSchemas,
    trace: TraceBuilder,
    meta: ResponseMeta,
    tx: ClientLink,
    /// The workload's timeout profile bounds the whole request, retries included.
    deadline: Instant,
    /// The rate-limit charge to correct once the tokens are known.
    ticket: Option<Ticket>,
    /// Counts the request in flight until it is finished.
    in_flight: Option<InFlight>,
}

impl Run<'_> {
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// How an attempt ended: `Ok` when the request is over (answered, partly
/// answered or abandoned by its client), else the failure before any output,
/// already recorded, for the run to decide what comes next.
type Attempted = Result<(), ProviderError>;

impl Engine {
    pub fn new(
        client: reqwest::Client,
        reporter: TraceReporter,
        metrics: Arc<Metrics>,
        breakers: Arc<Breakers>,
        signals: Arc<LocalSignals>,
        config: EngineConfig,
    ) -> Self {
        Self {
            client,
            reporter,
            metrics,
            config,
            retries: retry::RetryBudget::default(),
            hedges: HedgeBudget::default(),
            breakers,
            signals,
            tasks: TaskTracker::new(),
            cut: CancellationToken::new(),
        }
    }

    /// Starts executing; events arrive on the returned channel. Dropping the
    /// receiver cancels the request. The answer's tool calls are checked
    /// against `tools`.
    pub fn execute(
        self: &Arc<Self>,
        snapshot: Arc<LiveSnapshot>,
        request: ChatRequest,
        tools: ToolSchemas,
        plan: RoutePlan,
        ticket: Option<Ticket>,
    ) -> mpsc::Receiver<EngineEvent> {
        let (tx, rx) = mpsc::channel(64);
        let tx = ClientLink::new(tx, self.cut.clone());
        let engine = self.clone();
        // Boxed: the request's future is several kilobytes, moved once, not
        // copied through every layer of the spawn. It runs within the
        // request's span, which the edge has entered.
        self.tasks.spawn(Box::pin(
            async move {
                engine.run(snapshot, request, tools, plan, tx, ticket).await;
            }
            .instrument(tracing::Span::current()),
        ));
        rx
    }

    /// Ends every request still running as if its client had left: each
    /// is traced as cancelled and its client, if still there, told why. For
    /// the end of a shutdown's grace period.
    pub fn cut_in_flight(&self) {
        self.cut.cancel();
    }

    /// Requests still running (each reports its trace as it ends).
    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    /// Waits until every request has ended and handed over its trace.
    pub async fn idle(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    async fn run(
        &self,
        snapshot: Arc<LiveSnapshot>,
        request: ChatRequest,
        tools: ToolSchemas,
        plan: RoutePlan,
        tx: ClientLink,
        ticket: Option<Ticket>,
    ) {
        let in_flight = self.metrics.in_flight();
        let trace = TraceBuilder::new(
            &request,
            &plan,
            &snapshot,
            &self.config.node_id,
            tracing::Span::current(),
        );
        let meta = ResponseMeta {
            request_id: request.request_id.clone(),
            trace_id: trace.trace_id().to_owned(),
            snapshot_version: snapshot.version(),
            ..ResponseMeta::default()
        };
        let deadline = Instant::from_std(request.received.at) + request.workload.timeout.duration();
        let mut run = Run {
            request: &request,
            tools,
            trace,
            meta,
            tx,
            deadline,
            ticket,
            in_flight: Some(in_flight),
        };

        if plan.chain.is_empty() {
            let failure = Failure {
                kind: FailureKind::NoEligibleTarget,
                message: plan.explanation.clone(),
                partial: false,
            };
            self.fail(&mut run, None, failure).await;
            return;
        }

        let callees: Vec<Callee<'_>> = plan
            .chain()
            .filter_map(|candidate| {
                let target = &snapshot.routing.targets[candidate.target];
                let provider = &target.spec.provider;
                let endpoint = snapshot.endpoints.get(provider)?;
                let kind = snapshot
                    .routing
                    .providers
                    .get(provider)
                    .map_or("unknown", |p| p.kind.as_str());
                Some(Callee {
                    target,
                    endpoint,
                    kind,
                })
            })
            .collect();
        // Opt-in by strategy, never with tools (a call must not run twice),
        // and only with a backup to hedge on.
        let hedge = plan
            .hedge
            .filter(|_| !request.workload.capabilities.tools && callees.len() > 1);
        if let Some(hedge) = hedge {
            self.hedges.earn(hedge.max_share);
        }

        let mut attempts_left = self.config.max_attempts;
        let mut last_error = None;
        // The chain position that already ran as the hedge, if one did.
        let mut hedged = None;
        // After a prompt too long for a target, only larger windows may try.
        let mut window_needed = 0;
        'chain: for (position, callee) in callees.iter().enumerate() {
            if hedged == Some(position) || callee.target.spec.context_window <= window_needed {
                continue;
            }
            let target = callee.target;
            self.retries.earn(&target.id);
            let mut backoff = Backoff::new(retry::BACKOFF_BASE, retry::BACKOFF_MAX);
            let mut retries_left = self.config.retries_per_target;
            loop {
                if run.remaining().is_zero() {
                    last_error = Some(ProviderError::new(
                        ErrorClass::Timeout,
                        format!(
                            "request deadline of {}s reached",
                            request.workload.timeout.duration().as_secs()
                        ),
                    ));
                    break 'chain;
                }
                if attempts_left == 0 {
                    break 'chain;
                }
                // A half-open breaker lets one probe through; an open one none.
                if !self.admit(&request, target) {
                    continue 'chain;
                }
                attempts_left -= 1;
                // Only the request's first attempt is hedged, by the next candidate.
                let first_of_request = run.trace.attempts() == 0;
                let attempted = match hedge.zip(callees.get(position + 1)) {
                    Some((hedge, backup)) if first_of_request => {
                        let (attempted, backup_ran) = self
                            .hedged_attempt(&mut run, *callee, *backup, hedge, &mut attempts_left)
                            .await;
                        hedged = backup_ran.then_some(position + 1);
                        attempted
                    }
                    _ => self.attempt(&mut run, *callee).await,
                };
                let Err(error) = attempted else {
                    return;
                };
                let class = error.class;
                if class == ErrorClass::ContextLength {
                    window_needed = window_needed.max(target.spec.context_window);
                }
                // Retry-After wins over our own back-off; either must fit the deadline.
                let wait = error.retry_after.unwrap_or_else(|| backoff.next_delay());
                let fits = Instant::now() + wait < run.deadline;
                last_error = Some(error);
                if class.retry_same_target() && attempts_left > 0 && retries_left > 0 && fits {
                    retries_left -= 1;
                    let labels = TargetLabels {
                        target: target.id.clone(),
                    };
                    if self.retries.try_spend(&target.id) {
                        self.metrics.retries.get_or_create(&labels).inc();
                        tokio::select! {
                            () = run.tx.closed() => {
                                self.abandoned(&mut run);
                                return;
                            }
                            () = tokio::time::sleep(wait) => continue,
                        }
                    }
                    self.metrics.retries_denied.get_or_create(&labels).inc();
                }
                if !class.try_next_target() {
                    break 'chain;
                }
                continue 'chain;
            }
        }

        let error = last_error.unwrap_or_else(|| {
            ProviderError::new(ErrorClass::Configuration, "no target could be called")
        });
        let failure = Failure {
            kind: FailureKind::Upstream(error.class),
            message: format!(
                "all {} attempt(s) failed; last: {}",
                run.trace.attempts(),
                error.message
            ),
            partial: false,
        };
        self.fail(&mut run, Some(error.class), failure).await;
    }

    fn admit(&self, request: &ChatRequest, target: &Target) -> bool {
        let now_ms = request.received.unix_ms_at(std::time::Instant::now());
        self.breakers.admit(&target.id, now_ms)
    }

    /// One attempt on `callee`: its head, then the rest delivered.
    async fn attempt(&self, run: &mut Run<'_>, callee: Callee<'_>) -> Attempted {
        let _in_flight = self.signals.start(&callee.target.id);
        let id = run
            .trace
            .start_attempt(run.request, callee.target, callee.kind);
        run.meta.attempts = run.trace.attempts();
        let call = self
            .head(run.request, callee, run.remaining())
            .instrument(run.trace.attempt_span(id));
        let head = tokio::select! {
            () = run.tx.closed() => None,
            head = call => Some(head),
        };
        match head {
            None => {
                self.attempt_abandoned(run, callee.target, id);
                self.abandoned(run);
                Ok(())
            }
            Some(Ok(head)) => {
                self.deliver(run, callee.target, id, head).await;
                Ok(())
            }
            Some(Err(error)) => {
                self.attempt_failed(run, callee.target, id, &error);
                Err(error)
            }
        }
    }

    fn head<'a>(
        &'a self,
        request: &'a ChatRequest,
        callee: Callee<'a>,
        remaining: Duration,
    ) -> impl Future<Output = Result<Head, ProviderError>> + 'a {
        attempt::head(
            &self.client,
            callee.endpoint,
            request,
            &callee.target.spec.name,
            remaining,
            self.config.first_token_timeout,
        )
    }

    /// The request's first attempt, hedged: if `primary` has no first output
    /// after the plan's delay, `backup` starts beside it (budget and breaker
    /// permitting) and the first to answer wins; the other is cancelled.
    /// Also says whether the backup ran.
    async fn hedged_attempt(
        &self,
        run: &mut Run<'_>,
        primary: Callee<'_>,
        backup: Callee<'_>,
        hedge: HedgePlan,
        attempts_left: &mut usize,
    ) -> (Attempted, bool) {
        // Both count as in flight for the whole race (the backup may start late).
        let _in_flight = (
            self.signals.start(&primary.target.id),
            self.signals.start(&backup.target.id),
        );
        let primary_id = run
            .trace
            .start_attempt(run.request, primary.target, primary.kind);
        let mut backup_id = None;
        let race = {
            let (request, deadline) = (run.request, run.deadline);
            let primary_head = self
                .head(request, primary, run.remaining())
                .instrument(run.trace.attempt_span(primary_id));
            let trace = &mut run.trace;
            let start_backup = || {
                let go = *attempts_left > 0
                    && self.admit(request, backup.target)
                    && self.hedges.try_spend();
                if !go {
                    return None;
                }
                *attempts_left -= 1;
                let id = trace.start_attempt(request, backup.target, backup.kind);
                trace.mark_hedge(id);
                backup_id = Some(id);
                let labels = TargetLabels {
                    target: backup.target.id.clone(),
                };
                self.metrics.hedges.get_or_create(&labels).inc();
                let remaining = deadline.saturating_duration_since(Instant::now());
                Some(
                    self.head(request, backup, remaining)
                        .instrument(trace.attempt_span(id)),
                )
            };
            tokio::select! {
                () = run.tx.closed() => None,
                race = hedge::race(primary_head, hedge.delay, start_backup) => Some(race),
            }
        };
        run.meta.attempts = run.trace.attempts();
        let hedged = backup_id.is_some();
        let attempted = match (race, backup_id) {
            (None, _) => {
                self.attempt_abandoned(run, primary.target, primary_id);
                if let Some(id) = backup_id {
                    self.attempt_abandoned(run, backup.target, id);
                }
                self.abandoned(run);
                Ok(())
            }
            (Some(Race::Alone(Ok(head))), _) => {
                self.deliver(run, primary.target, primary_id, head).await;
                Ok(())
            }
            (Some(Race::Alone(Err(error))), _) => {
                self.attempt_failed(run, primary.target, primary_id, &error);
                Err(error)
            }
            (
                Some(Race::Won {
                    winner,
                    head,
                    loser_error,
                }),
                Some(backup_id),
            ) => {
                let ((won, won_id), (lost, lost_id)) = match winner {
                    Side::Primary => ((primary, primary_id), (backup, backup_id)),
                    Side::Backup => ((backup, backup_id), (primary, primary_id)),
                };
                match loser_error {
                    Some(error) => self.attempt_failed(run, lost.target, lost_id, &error),
                    None => {
                        let error = ProviderError::new(
                            ErrorClass::Cancelled,
                            format!("cancelled: the hedge race was won by {}", won.target.id),
                        );
                        self.count_attempt(&lost.target.id, "hedge_lost");
                        run.trace.attempt_failed(lost_id, &error);
                    }
                }
                self.deliver(run, won.target, won_id, head).await;
                Ok(())
            }
            (
                Some(Race::BothFailed {
                    primary: p,
                    backup: b,
                }),
                Some(backup_id),
            ) => {
                self.attempt_failed(run, primary.target, primary_id, &p);
                self.attempt_failed(run, backup.target, backup_id, &b);
                Err(p)
            }
            // A race is only won, or lost twice, once the backup has started.
            (Some(Race::Won { .. } | Race::BothFailed { .. }), None) => Err(ProviderError::new(
                ErrorClass::Configuration,
                "hedge race ended without its backup",
            )),
        };
        (attempted, hedged)
    }

    /// Hands a head and the rest of its answer to the client, and closes the
    /// request however that ends.
    async fn deliver(&self, run: &mut Run<'_>, target: &Target, id: AttemptId, head: Head) {
        let result = attempt::deliver(
            head,
            &target.spec.name,
            run.request,
            run.deadline,
            &run.tools,
            &mut run.trace,
            id,
            &run.tx,
        )
        .await;
        match result {
            AttemptResult::Done {
                content,
                tool_calls,
                finish_reason,
                usage,
                invalid_tool_calls,
            } => {
                self.count_attempt(&target.id, "ok");
                if !invalid_tool_calls.is_empty() {
                    tracing::info!(request_id = %run.request.request_id, target = %target.id, invalid = invalid_tool_calls.len(), "tool calls do not match the request's tools");
                    run.trace.invalid_tool_calls(&invalid_tool_calls);
                }
                self.breakers.success(&target.id);
                let mut meta = std::mem::take(&mut run.meta);
                meta.cost_usd = run.trace.attempt_succeeded(id, target, usage);
                meta.usage = usage;
                meta.target_id.clone_from(&target.id);
                meta.model.clone_from(&target.spec.name);
                meta.invalid_tool_calls = invalid_tool_calls;
                let record = run.trace.take_finished(pb::Outcome::Success, None);
                self.finish(record, &mut meta, run.ticket.take(), run.in_flight.take());
                let done = EngineEvent::Done {
                    content,
                    tool_calls,
                    finish_reason,
                    meta,
                };
                let _ = run.tx.send(done).await;
            }
            AttemptResult::Partial {
                error,
                output_tokens,
            } => {
                self.attempt_failed(run, target, id, &error);
                let usage = fill_usage(Usage::default(), run.request, || output_tokens);
                run.meta.cost_usd = run.trace.partial_from(target, usage);
                run.meta.usage = usage;
                run.meta.target_id.clone_from(&target.id);
                let message = format!(
                    "stream from {} failed mid-response: {}",
                    target.id, error.message
                );
                let failure = Failure {
                    kind: FailureKind::Upstream(error.class),
                    message,
                    partial: true,
                };
                self.fail(run, Some(error.class), failure).await;
            }
            AttemptResult::Cancelled { output_tokens } => {
                self.attempt_abandoned(run, target, id);
                if output_tokens > 0 {
                    let usage = fill_usage(Usage::default(), run.request, || output_tokens);
                    run.trace.partial_from(target, usage);
                }
                self.abandoned(run);
            }
        }
    }

    /// Records an attempt that failed: metrics, breaker, trace, log.
    fn attempt_failed(
        &self,
        run: &mut Run<'_>,
        target: &Target,
        id: AttemptId,
        error: &ProviderError,
    ) {
        self.count_attempt(&target.id, error.class.as_str());
        if error.class.trips_breaker() {
            let now_ms = run.request.received.unix_ms_at(std::time::Instant::now());
            self.breakers.failure(&target.id, now_ms);
        }
        tracing::info!(request_id = %run.request.request_id, target = %target.id, class = error.class.as_str(), error = %error.message, "attempt failed");
        run.trace.attempt_failed(id, error);
    }

    /// Records an attempt cut short because the client left (or the
    /// shutdown grace ran out).
    fn attempt_abandoned(&self, run: &mut Run<'_>, target: &Target, id: AttemptId) {
        self.count_attempt(&target.id, ErrorClass::Cancelled.as_str());
        let why = ProviderError::new(ErrorClass::Cancelled, abandon_reason(&run.tx));
        run.trace.attempt_failed(id, &why);
    }

    /// The client left: the request ends cancelled, with nobody to tell.
    /// Cut by the shutdown instead, the client may still be there: it is
    /// told, so it can retry on another node.
    fn abandoned(&self, run: &mut Run<'_>) {
        let reason = abandon_reason(&run.tx);
        let record = run.trace.take_finished(
            pb::Outcome::Cancelled,
            Some((Some(ErrorClass::Cancelled), reason)),
        );
        let partial = record.ttft_ms > 0;
        self.finish(
            record,
            &mut run.meta,
            run.ticket.take(),
            run.in_flight.take(),
        );
        if run.tx.cut_by_shutdown() {
            run.tx.try_tell(EngineEvent::Failed(Failure {
                kind: FailureKind::ShuttingDown,
                message: SHUT_DOWN.to_owned(),
                partial,
            }));
        }
    }

    /// The request failed: traced, then told to the client.
    async fn fail(&self, run: &mut Run<'_>, class: Option<ErrorClass>, failure: Failure) {
        let outcome = if failure.partial {
            pb::Outcome::Partial
        } else {
            pb::Outcome::Failed
        };
        let record = run
            .trace
            .take_finished(outcome, Some((class, &failure.message)));
        self.finish(
            record,
            &mut run.meta,
            run.ticket.take(),
            run.in_flight.take(),
        );
        let _ = run.tx.send(EngineEvent::Failed(failure)).await;
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

    /// Records the outcome in metrics, settles the rate-limit charge with
    /// the tokens used, and hands the trace to the reporter. The request is
    /// no longer in flight once its client is about to hear the end.
    fn finish(
        &self,
        record: pb::Trace,
        meta: &mut ResponseMeta,
        ticket: Option<Ticket>,
        in_flight: Option<InFlight>,
    ) {
        drop(in_flight);
        if let Some(ticket) = ticket {
            ticket.settle(
                record.tokens_in.saturating_add(record.tokens_out),
                record.cost_usd,
            );
        }
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
        if !record.final_target.is_empty() {
            for (direction, tokens) in [("input", record.tokens_in), ("output", record.tokens_out)]
            {
                let labels = TokenLabels {
                    target: record.final_target.clone(),
                    direction,
                };
                self.metrics.tokens.get_or_create(&labels).inc_by(tokens);
            }
            let labels = TargetLabels {
                target: record.final_target.clone(),
            };
            self.metrics
                .cost
                .get_or_create(&labels)
                .inc_by(record.cost_usd);
        }
        self.metrics
            .request_duration
            .observe(record.latency_ms as f64 / 1000.0);
        if record.ttft_ms > 0 {
            self.metrics
                .time_to_first_token
                .observe(record.ttft_ms as f64 / 1000.0);
        }
        self.observe_first_tokens(&record);
        self.reporter.submit(record);
    }

    /// Feeds this node's peak-EWMA with each attempt's time to first token;
    /// an attempt that timed out waiting counts with the time it waited.
    fn observe_first_tokens(&self, record: &pb::Trace) {
        let timeout = i32::from(pb::ErrorClass::Timeout);
        for a in &record.attempts {
            let waited = if a.ttft_ms > 0 {
                a.ttft_ms
            } else if a.error_class == timeout {
                a.duration_ms
            } else {
                continue;
            };
            let started = a
                .started_at
                .as_ref()
                .map(switchyard_domain::timestamp_to_millis)
                .unwrap_or_default();
            let seen_at = started + i64::try_from(waited).unwrap_or(i64::MAX / 2);
            self.signals
                .observe_ttft(&a.target_id, waited as f64, seen_at);
        }
    }
}

const CLIENT_LEFT: &str = "client went away";
const SHUT_DOWN: &str =
    "the data plane shut down before the answer was finished (its shutdown grace ran out); retry";

fn abandon_reason(tx: &ClientLink) -> &'static str {
    if tx.cut_by_shutdown() {
        SHUT_DOWN
    } else {
        CLIENT_LEFT
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

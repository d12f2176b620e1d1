//! Builds the execution trace of one request as it runs, and its spans
//! beside it: the request's (given) and one per attempt.

use std::time::Instant;

use switchyard_domain::{Target, TracePayload, answer_sha256, sha256_hex, timestamp_from_millis};
use switchyard_proto::v1 as pb;

use crate::providers::{ErrorClass, ProviderError, ToolCall, Usage};
use crate::request::ChatRequest;
use crate::scoring::{RoutePlan, cost_usd};
use crate::snapshot::LiveSnapshot;
use crate::tool_args::InvalidToolCall;

pub struct TraceBuilder {
    trace: pb::Trace,
    /// What the trace keeps of the request and the answer.
    payload: TracePayload,
    received: crate::request::Received,
    /// When each attempt started, by position; two run at once when hedging.
    attempt_started: Vec<Instant>,
    /// The request's span.
    span: tracing::Span,
    /// Each attempt's span, by position, until the attempt ends.
    attempt_spans: Vec<tracing::Span>,
}

/// One attempt of the trace (its position in `attempts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptId(usize);

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl TraceBuilder {
    pub fn new(
        request: &ChatRequest,
        plan: &RoutePlan,
        snapshot: &LiveSnapshot,
        node_id: &str,
        span: tracing::Span,
    ) -> Self {
        let (candidates, ineligible) = crate::plan_wire::candidates(plan, snapshot);
        let payload = snapshot.routing.trace_payload_for(&request.workspace);
        let now = Instant::now();
        let trace = pb::Trace {
            trace_id: request.trace_id.clone(),
            request_id: request.request_id.clone(),
            workspace: request.workspace.clone(),
            requested_model: request.model.clone(),
            strategy: plan.strategy.clone(),
            stream: request.stream,
            candidates,
            ineligible,
            received_at: Some(timestamp_from_millis(request.received.unix_ms)),
            routed_at: Some(timestamp_from_millis(request.received.unix_ms_at(now))),
            snapshot_version: snapshot.version(),
            node_id: node_id.to_owned(),
            workload: Some(crate::plan_wire::workload(&request.workload)),
            fallback_chain: crate::plan_wire::chain(plan, snapshot),
            explanation: plan.explanation.clone(),
            payload: payload.to_wire().into(),
            replay_of: request.replay_of.clone().unwrap_or_default(),
            otel_trace_id: crate::spans::otel_trace_id(&span, request).unwrap_or_default(),
            ..Default::default()
        };
        let mut builder = Self {
            trace,
            payload,
            received: request.received,
            attempt_started: Vec::new(),
            span,
            attempt_spans: Vec::new(),
        };
        builder.keep_request(request);
        builder
    }

    /// The request, as the payload policy says: its hash, or whole.
    fn keep_request(&mut self, request: &ChatRequest) {
        if self.payload == TracePayload::None {
            return;
        }
        let json = serde_json::to_vec(&request.body).unwrap_or_default();
        self.trace.request_sha256 = sha256_hex(&json);
        if self.payload == TracePayload::Full {
            self.trace.request_json = json;
        }
    }

    /// Whether the policy keeps anything of the answer (its hash or its text).
    pub fn keeps_output(&self) -> bool {
        self.payload != TracePayload::None
    }

    /// The answer (text and tool calls), as the payload policy says: its
    /// hash, or whole.
    pub fn keep_output(&mut self, text: &str, tool_calls: &[ToolCall]) {
        if self.payload == TracePayload::None {
            return;
        }
        self.trace.output_sha256 = answer_sha256(
            text,
            tool_calls
                .iter()
                .map(|c| (c.name.as_str(), c.arguments.as_str())),
        );
        if self.payload == TracePayload::Full {
            self.trace.output_text = text.to_owned();
            self.trace.output_tool_calls = tool_calls
                .iter()
                .map(|c| pb::OutputToolCall {
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                })
                .collect();
        }
    }

    /// The answer's tool calls that do not match the request's tools. Kept
    /// whatever the payload policy: reasons carry no argument values.
    pub fn invalid_tool_calls(&mut self, calls: &[InvalidToolCall]) {
        self.trace.invalid_tool_calls = calls.iter().map(InvalidToolCall::to_wire).collect();
    }

    pub fn trace_id(&self) -> &str {
        &self.trace.trace_id
    }

    pub fn attempts(&self) -> u32 {
        u32::try_from(self.trace.attempts.len()).unwrap_or(u32::MAX)
    }

    /// An attempt of `request` on `target`, whose provider is of `kind`.
    pub fn start_attempt(
        &mut self,
        request: &ChatRequest,
        target: &Target,
        kind: &'static str,
    ) -> AttemptId {
        let now = Instant::now();
        let id = AttemptId(self.trace.attempts.len());
        self.attempt_started.push(now);
        let number = u32::try_from(id.0 + 1).unwrap_or(u32::MAX);
        self.attempt_spans.push(crate::spans::attempt(
            &self.span, request, target, kind, number,
        ));
        self.trace.attempts.push(pb::Attempt {
            target_id: target.id.clone(),
            provider: target.spec.provider.clone(),
            model: target.spec.name.clone(),
            started_at: Some(timestamp_from_millis(self.received.unix_ms_at(now))),
            ..Default::default()
        });
        id
    }

    /// The attempt started as a hedge beside another.
    pub fn mark_hedge(&mut self, id: AttemptId) {
        if let Some(attempt) = self.trace.attempts.get_mut(id.0) {
            attempt.hedge = true;
        }
        crate::spans::attempt_hedged(&self.attempt_span(id));
    }

    /// The span of attempt `id`, for the calls it makes; a disabled span
    /// once the attempt has ended.
    pub fn attempt_span(&self, id: AttemptId) -> tracing::Span {
        self.attempt_spans
            .get(id.0)
            .cloned()
            .unwrap_or_else(tracing::Span::none)
    }

    /// Closes the attempt's span: it ends now, not with the request.
    fn end_attempt_span(&mut self, id: AttemptId) -> tracing::Span {
        self.attempt_spans
            .get_mut(id.0)
            .map(|span| std::mem::replace(span, tracing::Span::none()))
            .unwrap_or_else(tracing::Span::none)
    }

    fn finish_attempt(&mut self, id: AttemptId) -> Option<&mut pb::Attempt> {
        let started = *self.attempt_started.get(id.0)?;
        let attempt = self.trace.attempts.get_mut(id.0)?;
        attempt.duration_ms = millis(started.elapsed());
        Some(attempt)
    }

    /// The first output of attempt `id` reached the client.
    pub fn first_token(&mut self, id: AttemptId) {
        let now = Instant::now();
        self.trace.ttft_ms = millis(now.duration_since(self.received.at));
        self.trace.first_token_at = Some(timestamp_from_millis(self.received.unix_ms_at(now)));
        if let (Some(started), Some(attempt)) = (
            self.attempt_started.get(id.0),
            self.trace.attempts.get_mut(id.0),
        ) {
            attempt.ttft_ms = millis(now.duration_since(*started));
        }
    }

    pub fn attempt_failed(&mut self, id: AttemptId, error: &ProviderError) {
        crate::spans::attempt_failed(&self.end_attempt_span(id), error);
        if let Some(attempt) = self.finish_attempt(id) {
            attempt.http_status = u32::from(error.http_status);
            attempt.error_class = pb::ErrorClass::from(error.class).into();
            attempt.error_message.clone_from(&error.message);
            attempt.retry_after_ms = error
                .retry_after
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
    }

    /// The attempt produced the response; returns its cost in USD.
    pub fn attempt_succeeded(&mut self, id: AttemptId, target: &Target, usage: Usage) -> f64 {
        if let Some(attempt) = self.finish_attempt(id) {
            attempt.success = true;
        }
        let cost = self.answered_by(target, usage);
        let span = self.end_attempt_span(id);
        crate::spans::attempt_answered(&span, &target.spec.name, usage, cost);
        cost
    }

    /// A stream ended early after output reached the client: the target
    /// answered partly, and what it produced is billed. Returns the cost in USD.
    pub fn partial_from(&mut self, target: &Target, usage: Usage) -> f64 {
        self.answered_by(target, usage)
    }

    fn answered_by(&mut self, target: &Target, usage: Usage) -> f64 {
        let cost = cost_usd(target, usage.input_tokens, usage.output_tokens);
        self.trace.final_target.clone_from(&target.id);
        self.trace.final_provider.clone_from(&target.spec.provider);
        self.trace.final_model.clone_from(&target.spec.name);
        self.trace.tokens_in = usage.input_tokens;
        self.trace.tokens_out = usage.output_tokens;
        self.trace.cost_usd = cost;
        cost
    }

    /// Closes the trace and hands it over, with its latency; call once.
    pub fn take_finished(
        &mut self,
        outcome: pb::Outcome,
        error: Option<(Option<ErrorClass>, &str)>,
    ) -> pb::Trace {
        let now = Instant::now();
        self.trace.outcome = outcome.into();
        if let Some((class, message)) = error {
            if let Some(class) = class {
                self.trace.error_class = pb::ErrorClass::from(class).into();
            }
            message.clone_into(&mut self.trace.error_message);
        }
        self.trace.latency_ms = millis(now.duration_since(self.received.at));
        self.trace.completed_at = Some(timestamp_from_millis(self.received.unix_ms_at(now)));
        // Attempts still open end with the request.
        self.attempt_spans.clear();
        crate::spans::request_finished(&self.span, &self.trace);
        std::mem::take(&mut self.trace)
    }
}

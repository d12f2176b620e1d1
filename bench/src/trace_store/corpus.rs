//! Realistic traces to store: what data planes report for a fleet of 20
//! workspaces, 5 providers and 10 models under 3 strategies. Each trace has
//! 3–5 scored candidates (five dimensions each), the targets the filter
//! removed, 1–3 attempts, the workload profile, the fallback chain and the
//! explanation in words, like the traces the data plane builds.
//!
//! A few thousand traces are drawn once, from a fixed seed, as templates
//! whose times are offsets from zero. Trace number `n` of the run is a copy
//! of a template, moved to its receive time (`n` steps after the start of
//! the span, so the span is replayed in order, as traces arrive) with a fresh
//! UUIDv7 trace id of that time and a fresh request id. Copying keeps the
//! benchmark's own share of the CPU small.

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use switchyard_domain::{timestamp_from_millis, timestamp_to_millis};
use switchyard_proto::v1 as pb;

use super::fleet::{
    ATTEMPT_ERRORS, FAILED, INTENTS, MODELS, Model, NODES, PARTIAL, STRATEGIES, SUCCESS, WORKSPACES,
};

/// Traces drawn once and copied.
const TEMPLATES: usize = 8_192;

/// The traces of one run, numbered from 0 and spread evenly over a span.
#[derive(Debug)]
pub struct Corpus {
    templates: Vec<pb::Trace>,
    seed: u64,
    start_ms: i64,
    /// Milliseconds between trace `n` and trace `n + 1`.
    step_ms: f64,
}

impl Corpus {
    /// Traces `0..spread` fall evenly into `span_ms` from `start_ms`; later
    /// ones carry on at the same pace.
    pub fn new(seed: u64, start_ms: i64, span_ms: i64, spread: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let templates = (0..TEMPLATES).map(|_| template(&mut rng)).collect();
        Self {
            templates,
            seed,
            start_ms,
            step_ms: span_ms as f64 / spread.max(1) as f64,
        }
    }

    /// When trace `n` was received, in Unix ms.
    pub fn received_ms(&self, n: u64) -> i64 {
        self.start_ms + (n as f64 * self.step_ms) as i64
    }

    /// Traces `first..first + len`.
    pub fn batch(&self, first: u64, len: usize) -> Vec<pb::Trace> {
        let mut rng = StdRng::seed_from_u64(self.seed ^ first.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        (first..first + len as u64)
            .map(|n| self.trace(n, &mut rng))
            .collect()
    }

    /// Sizes in bytes of the protobuf bodies of as many traces as there are
    /// templates (ids and times included), sorted.
    pub fn body_sizes(&self) -> Vec<usize> {
        let mut sizes: Vec<usize> = self
            .batch(0, self.templates.len())
            .iter()
            .map(prost::Message::encoded_len)
            .collect();
        sizes.sort_unstable();
        sizes
    }

    fn trace(&self, n: u64, rng: &mut StdRng) -> pb::Trace {
        // Consecutive numbers take templates far apart.
        let index = (n.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize % self.templates.len();
        let mut trace = self.templates.get(index).cloned().unwrap_or_default();
        let at = self.received_ms(n);
        let mut random = [0u8; 10];
        rng.fill(&mut random);
        trace.trace_id =
            uuid::Builder::from_unix_timestamp_millis(u64::try_from(at).unwrap_or(0), &random)
                .into_uuid()
                .to_string();
        trace.request_id = format!("req_{:024x}", rng.random::<u128>() >> 32);
        for ts in [
            &mut trace.received_at,
            &mut trace.routed_at,
            &mut trace.first_token_at,
            &mut trace.completed_at,
        ] {
            shift(ts, at);
        }
        for attempt in &mut trace.attempts {
            shift(&mut attempt.started_at, at);
        }
        trace
    }
}

/// Moves a time given as an offset from zero to `at` plus that offset.
fn shift(ts: &mut Option<prost_types::Timestamp>, at: i64) {
    if let Some(t) = ts {
        *t = timestamp_from_millis(timestamp_to_millis(t) + at);
    }
}

/// An index drawn with the given shares (which need not sum to 1).
fn pick(rng: &mut StdRng, shares: impl Iterator<Item = f64> + Clone) -> usize {
    let total: f64 = shares.clone().sum();
    let mut left = rng.random::<f64>() * total;
    let mut last = 0;
    for (i, share) in shares.enumerate() {
        if left < share {
            return i;
        }
        left -= share;
        last = i;
    }
    last
}

/// A candidate before ranking.
struct Scored {
    model: Model,
    score: f64,
    dimensions: pb::DimensionScores,
    cost_usd: f64,
}

fn dimension(raw: f64, unit: &str, score: f64, weight: f64, source: &str) -> pb::DimensionScore {
    pb::DimensionScore {
        raw,
        unit: unit.to_owned(),
        score,
        weight,
        contribution: score * weight,
        source: source.to_owned(),
    }
}

/// One trace, its times as offsets from its receipt at 0.
fn template(rng: &mut StdRng) -> pb::Trace {
    // Some workspaces send far more than others.
    let workspace = WORKSPACES[pick(rng, (1..=WORKSPACES.len()).map(|i| 1.0 / i as f64))];
    let (strategy, _, [quality_w, speed_w, cost_w]) =
        STRATEGIES[pick(rng, STRATEGIES.iter().map(|s| s.1))];
    let (intent, _, default_out, timeout_profile, timeout_ms) =
        INTENTS[pick(rng, INTENTS.iter().map(|i| i.1))];
    let requested = if rng.random_bool(0.45) {
        "auto".to_owned()
    } else {
        MODELS[rng.random_range(0..MODELS.len())].name.to_owned()
    };
    let input_tokens = (150.0 * 100f64.powf(rng.random::<f64>())) as u64;
    let output_tokens = if rng.random_bool(0.6) {
        default_out
    } else {
        rng.random_range(16..=default_out)
    };
    let stream = rng.random_bool(0.6);
    let needs_tools = rng.random_bool(0.3);
    let workload = pb::WorkloadProfile {
        intent: intent.to_owned(),
        intent_requested: rng.random_bool(0.2),
        intent_reason: format!("{input_tokens} prompt tokens, last message reads as {intent}"),
        input_tokens,
        output_tokens,
        needs_tools,
        needs_vision: rng.random_bool(0.05),
        needs_json_output: rng.random_bool(0.15),
        needs_streaming: stream,
        timeout_profile: timeout_profile.to_owned(),
        timeout_ms,
    };

    // Candidates: the requested model first when there is one, then others.
    let mut order: Vec<usize> = (0..MODELS.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    if let Some(at) = order.iter().position(|&i| MODELS[i].name == requested) {
        order.swap(0, at);
    }
    let count = rng.random_range(3..=5);
    let weight_sum = quality_w + speed_w + cost_w + 1.0 + 0.5;
    let mut scored: Vec<Scored> = order[..count]
        .iter()
        .map(|&i| {
            let m = MODELS[i];
            let cost_usd = (input_tokens as f64 * m.price_in + output_tokens as f64 * m.price_out)
                / 1_000_000.0;
            let speed_ms = m.ttft_ms + output_tokens as f64 / m.tokens_per_second * 1000.0;
            let error_rate = rng.random::<f64>() * 0.05;
            let telemetry = rng.random_bool(0.8);
            let source = if telemetry { "telemetry" } else { "prior" };
            let quality = dimension(
                f64::from(m.tier),
                "tier",
                f64::from(m.tier) / 3.0,
                quality_w / weight_sum,
                "prior",
            );
            let speed = dimension(
                speed_ms,
                "ms",
                1.0 / (1.0 + speed_ms / 5_000.0),
                speed_w / weight_sum,
                source,
            );
            let cost = dimension(
                cost_usd,
                "usd",
                1.0 / (1.0 + cost_usd / 0.01),
                cost_w / weight_sum,
                "estimate",
            );
            let health = dimension(
                error_rate,
                "error_rate",
                1.0 - error_rate * 10.0,
                1.0 / weight_sum,
                source,
            );
            let fit = rng.random_range(0.5..=1.0);
            let workspace_fit = dimension(fit, "fit", fit, 0.5 / weight_sum, "prior");
            let score = quality.contribution
                + speed.contribution
                + cost.contribution
                + health.contribution
                + workspace_fit.contribution;
            Scored {
                model: m,
                score,
                dimensions: pb::DimensionScores {
                    quality: Some(quality),
                    speed: Some(speed),
                    cost: Some(cost),
                    health: Some(health),
                    workspace_fit: Some(workspace_fit),
                },
                cost_usd,
            }
        })
        .collect();
    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
    let chain_len = scored.len().min(3);
    let target = |m: &Model| format!("{}/{}", m.provider, m.name);
    let fallback_chain: Vec<String> = scored[..chain_len]
        .iter()
        .map(|s| target(&s.model))
        .collect();
    let explanation = match (scored.first(), scored.get(1)) {
        (Some(first), Some(second)) => format!(
            "chose {} ({strategy}, {:.2}): {:.0}% {} and {:.0}% {} than {} ({:.2}); {} more in the chain",
            target(&first.model),
            first.score,
            (1.0 - first.cost_usd / second.cost_usd).abs() * 100.0,
            if first.cost_usd <= second.cost_usd {
                "cheaper"
            } else {
                "more expensive"
            },
            (1.0 - first.model.ttft_ms / second.model.ttft_ms).abs() * 100.0,
            if first.model.ttft_ms <= second.model.ttft_ms {
                "faster"
            } else {
                "slower"
            },
            target(&second.model),
            second.score,
            chain_len - 1,
        ),
        _ => format!("no eligible target for {requested:?}"),
    };
    let ineligible: Vec<pb::Ineligible> = order[count..]
        .iter()
        .take(rng.random_range(0..=2))
        .map(|&i| pb::Ineligible {
            target_id: target(&MODELS[i]),
            reason: if needs_tools && rng.random_bool(0.5) {
                "missing capability: tools".to_owned()
            } else {
                format!(
                    "region {} is not allowed for workspace {workspace}",
                    MODELS[i].region
                )
            },
        })
        .collect();
    let candidates: Vec<pb::Candidate> = scored
        .iter()
        .enumerate()
        .map(|(i, s)| pb::Candidate {
            target_id: target(&s.model),
            provider: s.model.provider.to_owned(),
            model: s.model.name.to_owned(),
            rank: u32::try_from(i + 1).unwrap_or(0),
            score: s.score,
            dimensions: Some(s.dimensions.clone()),
            estimated_cost_usd: s.cost_usd,
            chain_position: if i < chain_len {
                u32::try_from(i + 1).unwrap_or(0)
            } else {
                0
            },
            family: s.model.family.to_owned(),
            region: s.model.region.to_owned(),
            tier: ["economy", "standard", "frontier"][usize::from(s.model.tier.clamp(1, 3)) - 1]
                .to_owned(),
            circuit: if rng.random_bool(0.97) {
                "closed"
            } else {
                "half_open"
            }
            .to_owned(),
        })
        .collect();

    // Attempts along the chain: failures first, then the answer (if any).
    let outcome_draw = rng.random::<f64>();
    let outcome = if outcome_draw < SUCCESS {
        pb::Outcome::Success
    } else if outcome_draw < SUCCESS + FAILED {
        pb::Outcome::Failed
    } else if outcome_draw < SUCCESS + FAILED + PARTIAL {
        pb::Outcome::Partial
    } else {
        pb::Outcome::Cancelled
    };
    let failures = match outcome {
        pb::Outcome::Failed => chain_len,
        pb::Outcome::Success => {
            [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2][rng.random_range(0..11)].min(chain_len - 1)
        }
        _ => 0,
    };
    let routed = rng.random_range(1..=6);
    let mut clock: u64 = routed;
    let mut attempts = Vec::with_capacity(chain_len);
    let mut last_error = pb::ErrorClass::Unspecified;
    let mut last_message = String::new();
    for s in &scored[..failures] {
        let (class, _, status, message) =
            ATTEMPT_ERRORS[pick(rng, ATTEMPT_ERRORS.iter().map(|e| e.1))];
        let duration = match class {
            pb::ErrorClass::Timeout => timeout_ms.min(10_000),
            _ => rng.random_range(20..800),
        };
        attempts.push(pb::Attempt {
            target_id: target(&s.model),
            provider: s.model.provider.to_owned(),
            model: s.model.name.to_owned(),
            started_at: Some(timestamp_from_millis(clock as i64)),
            duration_ms: duration,
            success: false,
            http_status: status,
            error_class: class.into(),
            error_message: message.to_owned(),
            ttft_ms: 0,
            hedge: false,
            retry_after_ms: if class == pb::ErrorClass::RateLimited {
                rng.random_range(1..=20) * 1_000
            } else {
                0
            },
        });
        clock += duration + rng.random_range(0..50);
        last_error = class;
        message.clone_into(&mut last_message);
    }
    let answering = (outcome != pb::Outcome::Failed).then(|| &scored[failures]);
    let mut trace = pb::Trace {
        workspace: workspace.to_owned(),
        requested_model: requested.clone(),
        strategy: strategy.to_owned(),
        stream,
        candidates,
        ineligible,
        received_at: Some(timestamp_from_millis(0)),
        routed_at: Some(timestamp_from_millis(routed as i64)),
        snapshot_version: rng.random_range(1_000..1_200),
        node_id: format!("dp-{}", rng.random_range(0..NODES)),
        workload: Some(workload),
        fallback_chain,
        explanation,
        outcome: outcome.into(),
        ..Default::default()
    };
    match answering {
        Some(s) => {
            let m = s.model;
            let ttft = (m.ttft_ms * rng.random_range(0.6..2.0)) as u64;
            let mut out = output_tokens.min(rng.random_range(8..=output_tokens.max(8)));
            let (success, class, message) = match outcome {
                pb::Outcome::Success => (true, pb::ErrorClass::Unspecified, ""),
                pb::Outcome::Partial => {
                    out /= 2;
                    (
                        false,
                        pb::ErrorClass::Protocol,
                        "the stream broke after the first token",
                    )
                }
                _ => {
                    out /= 4;
                    (false, pb::ErrorClass::Cancelled, "the client went away")
                }
            };
            let duration = ttft + (out as f64 / m.tokens_per_second * 1000.0) as u64;
            attempts.push(pb::Attempt {
                target_id: target(&m),
                provider: m.provider.to_owned(),
                model: m.name.to_owned(),
                started_at: Some(timestamp_from_millis(clock as i64)),
                duration_ms: duration,
                success,
                http_status: 200,
                error_class: class.into(),
                error_message: message.to_owned(),
                ttft_ms: ttft,
                hedge: false,
                retry_after_ms: 0,
            });
            trace.ttft_ms = clock + ttft;
            trace.first_token_at = Some(timestamp_from_millis((clock + ttft) as i64));
            clock += duration;
            if outcome != pb::Outcome::Cancelled {
                trace.final_target = target(&m);
                trace.final_provider = m.provider.to_owned();
                trace.final_model = m.name.to_owned();
                trace.tokens_in = input_tokens;
                trace.tokens_out = out;
                trace.cost_usd =
                    (input_tokens as f64 * m.price_in + out as f64 * m.price_out) / 1_000_000.0;
            }
            if outcome != pb::Outcome::Success {
                trace.error_class = class.into();
                message.clone_into(&mut trace.error_message);
            }
        }
        None => {
            trace.error_class = last_error.into();
            trace.error_message = format!("every target failed; last: {last_message}");
        }
    }
    trace.attempts = attempts;
    trace.latency_ms = clock;
    trace.completed_at = Some(timestamp_from_millis(clock as i64));
    trace
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_look_like_the_data_planes_and_spread_over_the_span() {
        let corpus = Corpus::new(7, 1_000_000, 7 * 86_400_000, 10_000);
        let batch = corpus.batch(0, 256);
        assert_eq!(batch.len(), 256);
        let ids: std::collections::HashSet<&str> =
            batch.iter().map(|t| t.trace_id.as_str()).collect();
        assert_eq!(ids.len(), 256);
        for (n, t) in batch.iter().enumerate() {
            let at = corpus.received_ms(n as u64);
            assert_eq!(t.received_at.as_ref().map(timestamp_to_millis), Some(at));
            assert!((1..=3).contains(&t.attempts.len()), "{t:?}");
            assert!((3..=5).contains(&t.candidates.len()));
            assert!(t.workload.is_some() && !t.explanation.is_empty());
            let first = t.attempts[0].started_at.as_ref().map(timestamp_to_millis);
            assert!(first.is_some_and(|s| s > at));
            let success = t.outcome == i32::from(pb::Outcome::Success);
            assert_eq!(success, t.attempts.last().is_some_and(|a| a.success));
            assert_eq!(t.final_provider.is_empty(), t.final_target.is_empty());
        }
        // The same numbers give the same traces; others give others.
        assert_eq!(corpus.batch(100, 5), corpus.batch(100, 5));
        assert_ne!(corpus.batch(100, 5)[0].trace_id, batch[0].trace_id);
        assert_eq!(corpus.received_ms(10_000), 1_000_000 + 7 * 86_400_000);

        let failed = corpus
            .templates
            .iter()
            .filter(|t| t.outcome == i32::from(pb::Outcome::Failed))
            .count();
        assert!((100..500).contains(&failed), "{failed} failed");
        let sizes = corpus.body_sizes();
        assert!(
            sizes[sizes.len() / 2] > 1_000,
            "{:?}",
            sizes[sizes.len() / 2]
        );
    }
}

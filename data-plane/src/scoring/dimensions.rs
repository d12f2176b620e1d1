//! The five scoring dimensions. Every score is normalised against a reference
//! made from the request alone, never against the other candidates: a
//! candidate's score depends only on itself and the request, so adding or
//! removing a candidate can never reorder the others. The references scale with
//! the request's tokens, so a 100k-token prompt is judged as fairly as a short one.

use switchyard_domain::{
    HealthState, StrategyWeights, Target, TargetTelemetry, Tier, WorkspaceSpec,
};

use crate::health::LocalView;
use crate::providers::Endpoint;
use crate::workload::WorkloadProfile;

/// A mid-priced model (USD per million input / output tokens): what it would
/// charge for the request scores 0.5 on cost.
const REFERENCE_INPUT_PRICE: f64 = 1.0;
const REFERENCE_OUTPUT_PRICE: f64 = 4.0;
/// A mid-speed model: its latency for the request scores 0.5 on speed.
const REFERENCE_TTFT_MS: f64 = 500.0;
const REFERENCE_TOKENS_PER_SECOND: f64 = 100.0;

/// 1 at zero, 0.5 at the reference, towards 0 beyond: lower raw is better.
fn relative(raw: f64, reference: f64) -> f64 {
    1.0 / (1.0 + raw / reference.max(f64::MIN_POSITIVE))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Registry facts and built-in defaults.
    Prior,
    /// A simulated provider's configuration, known exactly.
    Simulated,
    /// Computed from the request's estimated tokens and the target's prices.
    Estimate,
    /// The workspace's routing policy.
    Policy,
    /// Fresh fleet telemetry from the control plane, blended by its confidence.
    Telemetry,
    /// This node's own observations (peak-EWMA time to first token and load).
    Local,
    /// The fleet's health state of the target (degraded, or ejected and routed only in panic mode).
    Fleet,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prior => "prior",
            Self::Simulated => "simulated",
            Self::Estimate => "estimate",
            Self::Policy => "policy",
            Self::Telemetry => "telemetry",
            Self::Local => "local",
            Self::Fleet => "fleet",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dimension {
    pub raw: f64,
    pub score: f64,
    pub weight: f64,
    pub contribution: f64,
    pub source: Source,
}

impl Dimension {
    fn new(raw: f64, score: f64, source: Source) -> Self {
        Self {
            raw,
            score,
            weight: 0.0,
            contribution: 0.0,
            source,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breakdown {
    pub quality: Dimension,
    pub speed: Dimension,
    pub cost: Dimension,
    pub health: Dimension,
    pub workspace_fit: Dimension,
}

impl Breakdown {
    /// Applies the strategy's weights (scaled to sum to 1); returns the total.
    pub fn weigh(&mut self, weights: &StrategyWeights) -> f64 {
        let total =
            weights.quality + weights.speed + weights.cost + weights.health + weights.workspace_fit;
        let mut sum = 0.0;
        for (dimension, weight) in [
            (&mut self.quality, weights.quality),
            (&mut self.speed, weights.speed),
            (&mut self.cost, weights.cost),
            (&mut self.health, weights.health),
            (&mut self.workspace_fit, weights.workspace_fit),
        ] {
            dimension.weight = weight / total;
            dimension.contribution = dimension.score * dimension.weight;
            sum += dimension.contribution;
        }
        sum
    }
}

/// Time to first token and output speed assumed for a tier without telemetry.
/// When a target's first output is late, in milliseconds: its p95 time to
/// first token for a stream, its p95 latency for a whole answer. Fresh fleet
/// telemetry when it has the figure; else a simulated provider's slowest
/// (its jitter is ±20 %); else twice the tier's typical speed.
pub fn first_output_p95_ms(target: &Target, cx: &Context<'_>) -> (f64, Source) {
    let observed = cx.telemetry.map_or(0.0, |t| {
        if cx.workload.capabilities.streaming {
            t.ttft_p95_ms
        } else {
            t.latency_p95_ms
        }
    });
    if observed > 0.0 {
        return (observed, Source::Telemetry);
    }
    let output = cx.workload.output_tokens as f64;
    let whole = !cx.workload.capabilities.streaming;
    if let Some(p) = cx.endpoint.and_then(Endpoint::simulated_params) {
        let generation = output * 1000.0 / f64::from(p.tokens_per_second.max(1));
        let ms = f64::from(p.first_token_latency_ms) + if whole { generation } else { 0.0 };
        return (ms * 1.2, Source::Simulated);
    }
    let (ttft, tokens_per_second) = speed_prior(target.spec.tier);
    let generation = output * 1000.0 / tokens_per_second;
    (
        (ttft + if whole { generation } else { 0.0 }) * 2.0,
        Source::Prior,
    )
}

fn speed_prior(tier: Tier) -> (f64, f64) {
    match tier {
        Tier::Economy => (300.0, 150.0),
        Tier::Standard => (500.0, 80.0),
        Tier::Frontier => (900.0, 50.0),
    }
}

pub fn tier_rank(tier: Tier) -> f64 {
    match tier {
        Tier::Economy => 1.0,
        Tier::Standard => 2.0,
        Tier::Frontier => 3.0,
    }
}

/// What a target costs for this request at its list prices, in USD.
pub fn cost_usd(target: &Target, input_tokens: u64, output_tokens: u64) -> f64 {
    (input_tokens as f64 * target.spec.input_price_per_mtok
        + output_tokens as f64 * target.spec.output_price_per_mtok)
        / 1_000_000.0
}

/// Everything a target's score depends on besides the target itself.
pub struct Context<'a> {
    pub endpoint: Option<&'a Endpoint>,
    pub workload: &'a WorkloadProfile,
    pub workspace: &'a WorkspaceSpec,
    /// Fresh fleet telemetry of the target, if any.
    pub telemetry: Option<&'a TargetTelemetry>,
    /// This node's breaker for the target lets one probe through: health is halved.
    pub half_open: bool,
    /// The fleet's state of the target, when fresh.
    pub fleet_state: HealthState,
    /// This node's peak-EWMA time to first token and load on the target.
    pub local: Option<LocalView>,
}

/// Blends a prior with an observation by the observation's confidence.
fn blend(prior: f64, observed: f64, confidence: f64) -> f64 {
    prior * (1.0 - confidence) + observed * confidence
}

pub fn breakdown(target: &Target, cx: &Context<'_>) -> Breakdown {
    let (workload, workspace) = (cx.workload, cx.workspace);
    let tier = target.spec.tier;
    let tier_quality = match tier {
        Tier::Economy => 0.45,
        Tier::Standard => 0.7,
        Tier::Frontier => 0.95,
    };
    // The tier says how good a model is when it answers; history says how often it does.
    let quality = match cx.telemetry {
        Some(t) => Dimension::new(
            tier_rank(tier),
            tier_quality * blend(1.0, t.success_rate, t.confidence),
            Source::Telemetry,
        ),
        None => Dimension::new(tier_rank(tier), tier_quality, Source::Prior),
    };

    let (ttft_ms, tokens_per_second, source) =
        match cx.endpoint.and_then(Endpoint::simulated_params) {
            Some(p) => (
                f64::from(p.first_token_latency_ms),
                f64::from(p.tokens_per_second.max(1)),
                Source::Simulated,
            ),
            None => {
                let (ttft, tps) = speed_prior(tier);
                (ttft, tps, Source::Prior)
            }
        };
    let expected_ms = ttft_ms + workload.output_tokens as f64 * 1000.0 / tokens_per_second;
    let (mut latency_ms, mut source) = match cx.telemetry {
        Some(t) if t.latency_p50_ms > 0.0 => (
            blend(expected_ms, t.latency_p50_ms, t.confidence),
            Source::Telemetry,
        ),
        _ => (expected_ms, source),
    };
    // This node's view only ever adds: a first token slower than expected, or
    // a queue of attempts in flight, costs now, before the fleet notices.
    if let Some(local) = cx.local {
        let expected_ttft = cx
            .telemetry
            .filter(|t| t.ttft_p50_ms > 0.0)
            .map_or(ttft_ms, |t| blend(ttft_ms, t.ttft_p50_ms, t.confidence));
        let excess = local.cost_ms() - expected_ttft;
        if excess > 0.0 {
            latency_ms += excess;
            source = Source::Local;
        }
    }
    let output = workload.output_tokens as f64;
    let reference_ms = REFERENCE_TTFT_MS + output * 1000.0 / REFERENCE_TOKENS_PER_SECOND;
    let speed = Dimension::new(latency_ms, relative(latency_ms, reference_ms), source);

    let usd = cost_usd(target, workload.input_tokens, workload.output_tokens);
    let reference_usd = (workload.input_tokens as f64 * REFERENCE_INPUT_PRICE
        + output * REFERENCE_OUTPUT_PRICE)
        / 1_000_000.0;
    let cost = Dimension::new(usd, relative(usd, reference_usd), Source::Estimate);

    // Without telemetry a target is presumed healthy; with it, its recent error
    // rate counts as far as the evidence behind it goes.
    let mut health = match cx.telemetry {
        Some(t) => Dimension::new(
            t.error_rate,
            1.0 - t.error_rate * t.confidence,
            Source::Telemetry,
        ),
        None => Dimension::new(0.0, 1.0, Source::Prior),
    };
    if cx.half_open {
        health.score *= 0.5;
    }
    match cx.fleet_state {
        HealthState::Degraded => {
            health.score *= 0.5;
            health.source = Source::Fleet;
        }
        // Routed despite the fleet's verdict only in panic mode: last resort.
        HealthState::Ejected | HealthState::RateLimited => {
            health.score = 0.0;
            health.source = Source::Fleet;
        }
        HealthState::Healthy => {}
    }

    let provider = &target.spec.provider;
    let fit = if workspace.preferred_providers.contains(provider) {
        1.0
    } else if workspace.avoided_providers.contains(provider) {
        0.0
    } else {
        0.5
    };
    let workspace_fit = Dimension::new(fit, fit, Source::Policy);

    Breakdown {
        quality,
        speed,
        cost,
        health,
        workspace_fit,
    }
}

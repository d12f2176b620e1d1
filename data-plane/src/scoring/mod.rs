//! Scoring: turns the snapshot into a ranked, explained candidate list for one
//! request. Filter the targets that serve the requested model (each rejection
//! keeps its reason), score the rest on five dimensions, weigh them with the
//! strategy, and pick a diverse fallback chain. Pure computation on an
//! immutable snapshot: no locks, no I/O.

mod chain;
mod dimensions;
mod explain;
mod filter;

pub use dimensions::{Breakdown, Dimension, cost_usd};
use std::time::Duration;

pub use filter::Ineligibility;

use switchyard_domain::{HealthState, WorkspaceSpec};

use crate::breaker::{self, Breakers};
use crate::health::LocalSignals;
use crate::request::{ChatRequest, DEFAULT_WORKSPACE};
use crate::snapshot::LiveSnapshot;

#[derive(Debug, Clone)]
pub struct ScoredCandidate {
    /// Index into the snapshot's targets.
    pub target: usize,
    pub breakdown: Breakdown,
    /// Weighted total in [0, 1].
    pub score: f64,
    /// 1-based position in the fallback chain; 0 when not in it.
    pub chain_position: u32,
    /// This node's circuit for the target when the plan was made: closed,
    /// half-open or forced closed (open circuits are filtered out).
    pub circuit: breaker::State,
}

impl ScoredCandidate {
    pub fn estimated_cost_usd(&self) -> f64 {
        self.breakdown.cost.raw
    }
}

/// When to hedge a request, from the strategy and the primary target's speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgePlan {
    /// Start the backup if the primary has no first output by then.
    pub delay: Duration,
    /// Most hedges per hedgeable request, over time.
    pub max_share: f64,
}

#[derive(Debug, Clone)]
pub struct RoutePlan {
    pub strategy: String,
    /// Every eligible target, best first.
    pub candidates: Vec<ScoredCandidate>,
    /// Indices into `candidates`, in the order to try them.
    pub chain: Vec<usize>,
    /// Targets that serve the model but cannot serve this request.
    pub ineligible: Vec<(String, Ineligibility)>,
    pub explanation: String,
    /// Set when the strategy hedges and the chain has a backup.
    pub hedge: Option<HedgePlan>,
}

impl RoutePlan {
    /// The candidates to try, in order.
    pub fn chain(&self) -> impl Iterator<Item = &ScoredCandidate> {
        self.chain.iter().map(|&i| &self.candidates[i])
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    #[error("model {0:?} does not exist: no target serves it")]
    UnknownModel(String),
    #[error("strategy {0:?} does not exist")]
    UnknownStrategy(String),
    #[error("workspace {0:?} does not exist")]
    UnknownWorkspace(String),
}

pub fn plan(
    snapshot: &LiveSnapshot,
    request: &ChatRequest,
    chain_length: usize,
    breakers: &Breakers,
    signals: &LocalSignals,
) -> Result<RoutePlan, RouteError> {
    let routing = &snapshot.routing;
    // The default workspace needs no registry entry; any other must exist.
    let implicit;
    let workspace = match routing.workspaces.get(&request.workspace) {
        Some(policy) => policy,
        None if request.workspace == DEFAULT_WORKSPACE => {
            implicit = WorkspaceSpec::unrestricted(DEFAULT_WORKSPACE);
            &implicit
        }
        None => return Err(RouteError::UnknownWorkspace(request.workspace.clone())),
    };
    let strategy_name = request
        .strategy
        .as_deref()
        .or((!workspace.default_strategy.is_empty()).then_some(workspace.default_strategy.as_str()))
        .unwrap_or(&routing.default_strategy);
    let strategy = routing
        .strategy_for(&workspace.name, strategy_name)
        .ok_or_else(|| RouteError::UnknownStrategy(strategy_name.to_owned()))?;
    let workload = &request.workload;
    let now_ms = request.received.unix_ms;
    let circuits = breakers.view();

    let mut candidates = Vec::new();
    let mut ineligible = Vec::new();
    // Targets the fleet says to skip (ejected, rate-limited), kept aside for panic mode.
    let mut skipped = Vec::new();
    let mut serving = 0;
    for (index, target) in snapshot.routing.targets.iter().enumerate() {
        if !target.spec.answers_to(&request.model) {
            continue;
        }
        serving += 1;
        let circuit = circuits.state(&target.id, now_ms);
        if let Some(reason) = filter::check(snapshot, target, workload, workspace, circuit) {
            ineligible.push((target.id.clone(), reason));
            continue;
        }
        let fleet = routing.telemetry.fresh(&target.id, now_ms);
        let context = dimensions::Context {
            endpoint: snapshot.endpoints.get(&target.spec.provider),
            workload,
            workspace,
            // An entry without attempts carries a verdict or a probe mark, no numbers.
            telemetry: fleet.filter(|t| t.attempts > 0),
            half_open: circuit == breaker::State::HalfOpen,
            // A verdict past its until-time is over, whatever the snapshot still says.
            fleet_state: fleet.map_or(HealthState::Healthy, |t| {
                if t.state.skips() && !t.skipped_at(now_ms) {
                    HealthState::Healthy
                } else {
                    t.state
                }
            }),
            local: signals.view(&target.id),
        };
        let mut breakdown = dimensions::breakdown(target, &context);
        let score = breakdown.weigh(&strategy.weights);
        let candidate = ScoredCandidate {
            target: index,
            breakdown,
            score,
            chain_position: 0,
            circuit,
        };
        match fleet.filter(|t| t.skipped_at(now_ms)) {
            Some(t) => skipped.push((candidate, t.state, t.state_until_ms)),
            None => candidates.push(candidate),
        }
    }
    if serving == 0 {
        return Err(RouteError::UnknownModel(request.model.clone()));
    }
    // Panic mode: when the fleet's verdicts would leave fewer than half of the
    // eligible targets, route across all of them (skipped ones score 0 on health).
    let panic = candidates.len() * 2 < candidates.len() + skipped.len();
    for (candidate, state, until_ms) in skipped {
        if panic {
            candidates.push(candidate);
        } else {
            let id = snapshot.routing.targets[candidate.target].id.clone();
            ineligible.push((id, Ineligibility::FleetSkipped { state, until_ms }));
        }
    }
    // Targets are sorted by id and the sort is stable: ties rank alike on every node.
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let specs: Vec<_> = candidates
        .iter()
        .map(|c| &snapshot.routing.targets[c.target].spec)
        .collect();
    let chain = chain::build(&specs, chain_length);
    for (position, &i) in (1..).zip(&chain) {
        candidates[i].chain_position = position;
    }
    let hedge = match (strategy.hedging, chain.first(), chain.len() > 1) {
        (Some(hedging), Some(&primary), true) => {
            let target = &snapshot.routing.targets[candidates[primary].target];
            let context = dimensions::Context {
                endpoint: snapshot.endpoints.get(&target.spec.provider),
                workload,
                workspace,
                telemetry: routing.telemetry.fresh(&target.id, now_ms),
                half_open: false,
                fleet_state: HealthState::Healthy,
                local: None,
            };
            let (p95_ms, _) = dimensions::first_output_p95_ms(target, &context);
            let delay = Duration::from_secs_f64(p95_ms.max(0.0) / 1000.0)
                .max(Duration::from_millis(hedging.min_delay_ms.into()));
            Some(HedgePlan {
                delay,
                max_share: hedging.max_share,
            })
        }
        _ => None,
    };
    let mut plan = RoutePlan {
        strategy: strategy_name.to_owned(),
        candidates,
        chain,
        ineligible,
        explanation: String::new(),
        hedge,
    };
    plan.explanation = explain::explain(&plan, snapshot, &request.model);
    if panic {
        plan.explanation.push_str(
            "; panic mode: the fleet would leave fewer than half of the eligible targets, so all are routed",
        );
    }
    if let Some(hedge) = plan.hedge {
        plan.explanation.push_str(&format!(
            "; hedged: the second target starts if the first has no output after {} ms",
            hedge.delay.as_millis()
        ));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests;

//! First scoring pass: filter the snapshot's targets for a request, score each
//! eligible one on quality, speed, cost, health and workspace fit, weigh the
//! scores with the strategy and rank them. The ranked list is the fallback chain.

use switchyard_domain::{StrategyWeights, Target, Tier};

use crate::request::ChatRequest;
use crate::snapshot::LiveSnapshot;

/// Estimated request cost that scores 0.5 on the cost dimension. An absolute
/// reference keeps scores stable: adding a candidate never reorders the others.
const COST_REFERENCE_USD: f64 = 0.001;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Dimensions {
    pub quality: f64,
    pub speed: f64,
    pub cost: f64,
    pub health: f64,
    pub workspace_fit: f64,
}

impl Dimensions {
    fn weighted(&self, w: &StrategyWeights) -> f64 {
        let total = w.quality + w.speed + w.cost + w.health + w.workspace_fit;
        (self.quality * w.quality
            + self.speed * w.speed
            + self.cost * w.cost
            + self.health * w.health
            + self.workspace_fit * w.workspace_fit)
            / total
    }
}

#[derive(Debug, Clone)]
pub struct ScoredCandidate {
    /// Index into the snapshot's targets.
    pub target: usize,
    pub dimensions: Dimensions,
    pub score: f64,
    pub estimated_cost_usd: f64,
}

#[derive(Debug, Clone)]
pub struct RoutePlan {
    pub strategy: String,
    pub estimated_input_tokens: u64,
    pub estimated_output_tokens: u64,
    /// Best first.
    pub candidates: Vec<ScoredCandidate>,
    /// (target id, reason) for targets that serve the model but were filtered out.
    pub ineligible: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    #[error("model {0:?} does not exist: no target serves it")]
    UnknownModel(String),
    #[error("strategy {0:?} does not exist")]
    UnknownStrategy(String),
}

/// What a target costs for this request at its list prices.
pub fn cost_usd(target: &Target, input_tokens: u64, output_tokens: u64) -> f64 {
    (input_tokens as f64 * target.spec.input_price_per_mtok
        + output_tokens as f64 * target.spec.output_price_per_mtok)
        / 1_000_000.0
}

fn ineligibility(
    snapshot: &LiveSnapshot,
    target: &Target,
    request: &ChatRequest,
    needed_context: u64,
) -> Option<String> {
    let provider = snapshot.routing.providers.get(&target.spec.provider)?;
    if !provider.enabled {
        return Some(format!("provider {} is disabled", provider.name));
    }
    if !target.spec.enabled {
        return Some("target is disabled".into());
    }
    if request.stream && !target.spec.capabilities.streaming {
        return Some("does not support streaming".into());
    }
    if needed_context > u64::from(target.spec.context_window) {
        return Some(format!(
            "context window {} is smaller than the request's estimated {needed_context} tokens",
            target.spec.context_window
        ));
    }
    snapshot
        .endpoints
        .get(&target.spec.provider)
        .and_then(|e| e.unavailable_reason())
        .map(str::to_owned)
}

fn dimensions(target: &Target, estimated_cost_usd: f64) -> Dimensions {
    // Priors by tier until fleet telemetry feeds quality and speed.
    let (quality, speed) = match target.spec.tier {
        Tier::Economy => (0.4, 0.8),
        Tier::Standard => (0.7, 0.6),
        Tier::Frontier => (0.95, 0.4),
    };
    Dimensions {
        quality,
        speed,
        cost: 1.0 / (1.0 + estimated_cost_usd / COST_REFERENCE_USD),
        health: 1.0,
        workspace_fit: 1.0,
    }
}

pub fn plan(snapshot: &LiveSnapshot, request: &ChatRequest) -> Result<RoutePlan, RouteError> {
    let strategy_name = request
        .strategy
        .clone()
        .unwrap_or_else(|| snapshot.routing.default_strategy.clone());
    let strategy = snapshot
        .routing
        .strategies
        .get(&strategy_name)
        .ok_or_else(|| RouteError::UnknownStrategy(strategy_name.clone()))?;
    let input = request.estimated_input_tokens;
    let output = request.estimated_output_tokens();

    let mut candidates = Vec::new();
    let mut ineligible = Vec::new();
    let mut serving = 0;
    for (index, target) in snapshot.routing.targets.iter().enumerate() {
        if !target.spec.answers_to(&request.model) {
            continue;
        }
        serving += 1;
        if let Some(reason) = ineligibility(snapshot, target, request, input + output) {
            ineligible.push((target.id.clone(), reason));
            continue;
        }
        let estimated_cost_usd = cost_usd(target, input, output);
        let dimensions = dimensions(target, estimated_cost_usd);
        candidates.push(ScoredCandidate {
            target: index,
            score: dimensions.weighted(&strategy.weights),
            dimensions,
            estimated_cost_usd,
        });
    }
    if serving == 0 {
        return Err(RouteError::UnknownModel(request.model.clone()));
    }
    // Targets are sorted by id, and the sort is stable, so ties rank the same on every node.
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(RoutePlan {
        strategy: strategy_name,
        estimated_input_tokens: input,
        estimated_output_tokens: output,
        candidates,
        ineligible,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use switchyard_domain::{
        Capabilities, ModelSpec, ProviderKind, ProviderSpec, RoutingSnapshot, SimulatedParams,
        builtin_strategies,
    };

    use super::*;

    fn provider(name: &str, enabled: bool) -> ProviderSpec {
        ProviderSpec {
            name: name.into(),
            kind: ProviderKind::Simulated,
            base_url: String::new(),
            api_key_ref: String::new(),
            headers: BTreeMap::new(),
            enabled,
            simulated: Some(SimulatedParams {
                seed: 1,
                first_token_latency_ms: 1,
                tokens_per_second: 100,
                failure_rate: 0.0,
                output_tokens: 4,
            }),
        }
    }

    fn model(provider: &str, name: &str, tier: Tier, price: f64, context: u32) -> ModelSpec {
        ModelSpec {
            provider: provider.into(),
            name: name.into(),
            family: name.into(),
            capabilities: Capabilities {
                streaming: true,
                ..Capabilities::default()
            },
            context_window: context,
            input_price_per_mtok: price,
            output_price_per_mtok: price * 4.0,
            region: String::new(),
            tier,
            aliases: vec!["chat".into()],
            enabled: true,
        }
    }

    fn snapshot(models: Vec<ModelSpec>, providers: Vec<ProviderSpec>) -> LiveSnapshot {
        let routing = RoutingSnapshot::new(
            1,
            0,
            0,
            providers,
            models,
            builtin_strategies(),
            "balanced".into(),
        )
        .unwrap();
        LiveSnapshot::prepare(routing)
    }

    fn request(model: &str, strategy: Option<&str>) -> ChatRequest {
        ChatRequest {
            received: crate::request::Received::now(),
            request_id: "r".into(),
            trace_id: "t".into(),
            workspace: "default".into(),
            model: model.into(),
            strategy: strategy.map(str::to_owned),
            stream: false,
            max_tokens: Some(100),
            body: serde_json::Map::new(),
            estimated_input_tokens: 1000,
        }
    }

    fn ranked(snap: &LiveSnapshot, plan: &RoutePlan) -> Vec<String> {
        plan.candidates
            .iter()
            .map(|c| snap.routing.targets[c.target].id.clone())
            .collect()
    }

    #[test]
    fn strategies_change_the_order() {
        let snap = snapshot(
            vec![
                model("a", "cheap", Tier::Economy, 0.1, 8000),
                model("b", "smart", Tier::Frontier, 10.0, 8000),
            ],
            vec![provider("a", true), provider("b", true)],
        );
        let by_cost = plan(&snap, &request("chat", Some("cost"))).unwrap();
        assert_eq!(ranked(&snap, &by_cost), ["a/cheap", "b/smart"]);
        let by_quality = plan(&snap, &request("chat", Some("quality"))).unwrap();
        assert_eq!(ranked(&snap, &by_quality), ["b/smart", "a/cheap"]);
    }

    #[test]
    fn filtered_targets_carry_reasons() {
        let mut off = model("a", "off", Tier::Standard, 1.0, 8000);
        off.enabled = false;
        let snap = snapshot(
            vec![
                off,
                model("a", "tiny", Tier::Standard, 1.0, 500),
                model("b", "ok", Tier::Standard, 1.0, 8000),
            ],
            vec![provider("a", true), provider("b", false)],
        );
        let plan = plan(&snap, &request("chat", None)).unwrap();
        assert!(plan.candidates.is_empty());
        let reasons: BTreeMap<_, _> = plan.ineligible.into_iter().collect();
        assert_eq!(reasons["a/off"], "target is disabled");
        assert!(reasons["a/tiny"].starts_with("context window 500"));
        assert_eq!(reasons["b/ok"], "provider b is disabled");
    }

    #[test]
    fn unknown_model_and_strategy_are_errors() {
        let snap = snapshot(
            vec![model("a", "m", Tier::Economy, 1.0, 8000)],
            vec![provider("a", true)],
        );
        assert_eq!(
            plan(&snap, &request("nope", None)).unwrap_err(),
            RouteError::UnknownModel("nope".into())
        );
        assert_eq!(
            plan(&snap, &request("m", Some("nope"))).unwrap_err(),
            RouteError::UnknownStrategy("nope".into())
        );
    }

    #[test]
    fn adding_a_candidate_does_not_reorder_the_others() {
        let base = vec![
            model("a", "x", Tier::Economy, 0.5, 8000),
            model("b", "y", Tier::Standard, 2.0, 8000),
        ];
        let providers = vec![
            provider("a", true),
            provider("b", true),
            provider("c", true),
        ];
        let snap = snapshot(base.clone(), providers.clone());
        let before = ranked(&snap, &plan(&snap, &request("chat", None)).unwrap());
        let mut more = base;
        more.push(model("c", "z", Tier::Frontier, 50.0, 8000));
        let snap = snapshot(more, providers);
        let after: Vec<String> = ranked(&snap, &plan(&snap, &request("chat", None)).unwrap())
            .into_iter()
            .filter(|id| id != "c/z")
            .collect();
        assert_eq!(before, after);
    }
}

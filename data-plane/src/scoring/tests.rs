//! Scoring scenarios, one per filter reason and dimension, and the properties
//! the ranking must keep for any snapshot.

use std::collections::BTreeMap;

use proptest::prelude::*;
use switchyard_domain::{
    Capabilities, CircuitMode, HealthState, ModelSpec, ProviderKind, ProviderSpec, RoutingSnapshot,
    SimulatedParams, StrategySpec, StrategyWeights, TargetTelemetry, Telemetry, Tier,
    WorkspaceSpec, builtin_strategies,
};

use super::dimensions::Source;
use super::*;
use crate::breaker::Breakers;
use crate::health::LocalSignals;
use crate::request::{test_request, test_workload};
use crate::snapshot::LiveSnapshot;
use crate::workload::WorkloadProfile;

fn provider(name: &str) -> ProviderSpec {
    ProviderSpec {
        name: name.into(),
        kind: ProviderKind::Openai,
        base_url: "http://127.0.0.1:9/v1".into(),
        api_key_ref: String::new(),
        headers: BTreeMap::new(),
        enabled: true,
        simulated: None,
    }
}

fn all_caps() -> Capabilities {
    Capabilities {
        streaming: true,
        tools: true,
        vision: true,
        json_output: true,
    }
}

fn model(provider: &str, name: &str, tier: Tier, price: f64, context: u32) -> ModelSpec {
    ModelSpec {
        provider: provider.into(),
        name: name.into(),
        family: name.into(),
        capabilities: all_caps(),
        context_window: context,
        input_price_per_mtok: price,
        output_price_per_mtok: price * 4.0,
        region: "us".into(),
        tier,
        aliases: vec!["chat".into()],
        enabled: true,
        circuit: CircuitMode::Auto,
    }
}

fn snapshot(providers: Vec<ProviderSpec>, models: Vec<ModelSpec>) -> LiveSnapshot {
    let mut strategies = builtin_strategies();
    strategies.push(StrategySpec {
        name: "cost-only".into(),
        workspace: String::new(),
        hedging: None,
        description: String::new(),
        weights: StrategyWeights {
            quality: 0.0,
            speed: 0.0,
            cost: 1.0,
            health: 0.0,
            workspace_fit: 0.0,
        },
    });
    LiveSnapshot::prepare(
        RoutingSnapshot::new(1, 0, 0, providers, models, strategies, "balanced".into()).unwrap(),
    )
}

fn ids(snap: &LiveSnapshot, plan: &RoutePlan) -> Vec<String> {
    plan.candidates
        .iter()
        .map(|c| snap.routing.targets[c.target].id.clone())
        .collect()
}

fn chain_ids(snap: &LiveSnapshot, plan: &RoutePlan) -> Vec<String> {
    plan.chain()
        .map(|c| snap.routing.targets[c.target].id.clone())
        .collect()
}

fn chat(workload: WorkloadProfile, strategy: Option<&str>) -> crate::request::ChatRequest {
    test_request("chat", strategy, workload)
}

/// Plans on a fresh node: no breaker history, no local signals.
fn plan_alone(
    snap: &LiveSnapshot,
    request: &crate::request::ChatRequest,
    chain_length: usize,
) -> Result<RoutePlan, RouteError> {
    plan(
        snap,
        request,
        chain_length,
        &Breakers::default(),
        &LocalSignals::default(),
    )
}

#[test]
fn every_filter_reason_is_kept_in_words() {
    let mut off = model("a", "off", Tier::Standard, 1.0, 100_000);
    off.enabled = false;
    let mut no_tools = model("a", "no-tools", Tier::Standard, 1.0, 100_000);
    no_tools.capabilities.tools = false;
    let mut no_vision = model("a", "no-vision", Tier::Standard, 1.0, 100_000);
    no_vision.capabilities.vision = false;
    let mut no_json = model("a", "no-json", Tier::Standard, 1.0, 100_000);
    no_json.capabilities.json_output = false;
    let mut no_stream = model("a", "no-stream", Tier::Standard, 1.0, 100_000);
    no_stream.capabilities.streaming = false;
    let small = model("a", "small", Tier::Standard, 1.0, 8_000);
    let disabled_provider = model("b", "m", Tier::Standard, 1.0, 100_000);
    let mut keyless = provider("c");
    keyless.api_key_ref = "env:SWITCHYARD_TEST_SURELY_UNSET_KEY".into();
    let keyless_model = model("c", "m", Tier::Standard, 1.0, 100_000);
    let mut b = provider("b");
    b.enabled = false;
    let snap = snapshot(
        vec![provider("a"), b, keyless],
        vec![
            off,
            no_tools,
            no_vision,
            no_json,
            no_stream,
            small,
            disabled_provider,
            keyless_model,
        ],
    );

    let mut workload = test_workload(10_000, 2_000);
    workload.capabilities.tools = true;
    workload.capabilities.vision = true;
    workload.capabilities.json_output = true;
    workload.capabilities.streaming = true;
    let plan = plan_alone(&snap, &chat(workload, None), 3).unwrap();
    assert!(plan.candidates.is_empty());
    let reasons: BTreeMap<String, String> = plan
        .ineligible
        .iter()
        .map(|(id, r)| (id.clone(), r.to_string()))
        .collect();
    let expected = [
        ("a/off", "target is disabled"),
        ("a/no-tools", "missing capability: tools"),
        ("a/no-vision", "missing capability: vision"),
        ("a/no-json", "missing capability: json_output"),
        ("a/no-stream", "missing capability: streaming"),
        ("a/small", "context window 8k < 12k needed"),
        ("b/m", "provider b is disabled"),
        (
            "c/m",
            "credentials missing: environment variable SWITCHYARD_TEST_SURELY_UNSET_KEY is not set",
        ),
    ];
    for (id, reason) in expected {
        assert_eq!(reasons.get(id).map(String::as_str), Some(reason), "{id}");
    }
    assert!(
        plan.explanation
            .starts_with("no eligible target for \"chat\"; filtered: "),
        "{}",
        plan.explanation
    );
    assert!(
        plan.explanation.ends_with("; and 3 more"),
        "{}",
        plan.explanation
    );
}

#[test]
fn each_dimension_moves_its_own_way() {
    let snap = snapshot(
        vec![provider("a"), provider("b")],
        vec![
            model("a", "cheap", Tier::Economy, 0.1, 100_000),
            model("b", "smart", Tier::Frontier, 10.0, 100_000),
        ],
    );
    let plan = plan_alone(&snap, &chat(test_workload(1_000, 500), None), 2).unwrap();
    let by_id: BTreeMap<String, &ScoredCandidate> = plan
        .candidates
        .iter()
        .map(|c| (snap.routing.targets[c.target].id.clone(), c))
        .collect();
    let (cheap, smart) = (&by_id["a/cheap"].breakdown, &by_id["b/smart"].breakdown);

    // quality: the tier, and a higher tier scores higher
    assert_eq!((cheap.quality.raw, smart.quality.raw), (1.0, 3.0));
    assert!(smart.quality.score > cheap.quality.score);
    // speed: expected latency in ms from tier priors (economy 300 ms + 500 tokens at 150/s)
    assert!((cheap.speed.raw - (300.0 + 500.0 * 1000.0 / 150.0)).abs() < 1e-9);
    assert!(cheap.speed.score > smart.speed.score);
    assert_eq!(cheap.speed.source, Source::Prior);
    // cost: USD for 1,000 tokens in and 500 out at list prices
    assert!((smart.cost.raw - (1_000.0 * 10.0 + 500.0 * 40.0) / 1e6).abs() < 1e-12);
    assert!(cheap.cost.score > smart.cost.score);
    // health is presumed without telemetry; fit is neutral without workspace preferences
    assert_eq!((cheap.health.score, cheap.workspace_fit.score), (1.0, 0.5));
    // weights sum to one, contributions sum to the score
    for c in &plan.candidates {
        let b = &c.breakdown;
        let weights = b.quality.weight
            + b.speed.weight
            + b.cost.weight
            + b.health.weight
            + b.workspace_fit.weight;
        assert!((weights - 1.0).abs() < 1e-12);
        let sum = b.quality.contribution
            + b.speed.contribution
            + b.cost.contribution
            + b.health.contribution
            + b.workspace_fit.contribution;
        assert!((sum - c.score).abs() < 1e-12);
    }
}

#[test]
fn strategies_change_the_order_and_say_so() {
    let snap = snapshot(
        vec![provider("a"), provider("b")],
        vec![
            model("a", "cheap", Tier::Economy, 0.1, 100_000),
            model("b", "smart", Tier::Frontier, 10.0, 100_000),
        ],
    );
    let by_cost = plan_alone(&snap, &chat(test_workload(1_000, 500), Some("cost")), 2).unwrap();
    assert_eq!(ids(&snap, &by_cost), ["a/cheap", "b/smart"]);
    assert!(
        by_cost.explanation.starts_with("chose a/cheap (cost, ")
            && by_cost.explanation.contains("99% cheaper"),
        "{}",
        by_cost.explanation
    );
    assert!(
        by_cost
            .explanation
            .contains("lower quality tier than b/smart"),
        "{}",
        by_cost.explanation
    );
    assert!(
        by_cost
            .explanation
            .contains("backups: b/smart (other provider)"),
        "{}",
        by_cost.explanation
    );
    let by_quality =
        plan_alone(&snap, &chat(test_workload(1_000, 500), Some("quality")), 2).unwrap();
    assert_eq!(ids(&snap, &by_quality), ["b/smart", "a/cheap"]);
}

#[test]
fn simulated_providers_are_scored_on_their_configuration() {
    let mut sim = provider("sim");
    sim.kind = ProviderKind::Simulated;
    sim.simulated = Some(SimulatedParams {
        seed: 1,
        first_token_latency_ms: 40,
        tokens_per_second: 400,
        failure_rate: 0.0,
        output_tokens: 10,
    });
    let snap = snapshot(
        vec![sim],
        vec![model("sim", "m", Tier::Frontier, 1.0, 100_000)],
    );
    let plan = plan_alone(&snap, &chat(test_workload(100, 400), None), 1).unwrap();
    let speed = plan.candidates[0].breakdown.speed;
    assert_eq!(speed.source, Source::Simulated);
    assert!((speed.raw - 1_040.0).abs() < 1e-9);
}

#[test]
fn unknown_model_and_strategy_are_errors() {
    let snap = snapshot(
        vec![provider("a")],
        vec![model("a", "m", Tier::Economy, 1.0, 8000)],
    );
    let request = test_request("nope", None, test_workload(10, 10));
    assert_eq!(
        plan_alone(&snap, &request, 3).unwrap_err(),
        RouteError::UnknownModel("nope".into())
    );
    let request = test_request("m", Some("nope"), test_workload(10, 10));
    assert_eq!(
        plan_alone(&snap, &request, 3).unwrap_err(),
        RouteError::UnknownStrategy("nope".into())
    );
}

#[test]
fn tools_and_a_100k_context_on_a_mixed_registry() {
    let mut small_ctx = model("openai", "gpt-small", Tier::Economy, 0.15, 16_000);
    small_ctx.family = "gpt".into();
    let mut no_tools = model("local", "llama", Tier::Economy, 0.0, 128_000);
    no_tools.capabilities.tools = false;
    let mut big = model("openai", "gpt-big", Tier::Frontier, 2.5, 128_000);
    big.family = "gpt".into();
    let mut mid = model("openai", "gpt-mid", Tier::Standard, 0.6, 128_000);
    mid.family = "gpt".into();
    let mut claude = model("anthropic", "claude", Tier::Frontier, 3.0, 200_000);
    claude.region = "eu".into();
    let snap = snapshot(
        vec![provider("openai"), provider("local"), provider("anthropic")],
        vec![small_ctx, no_tools, big, mid, claude],
    );
    let mut workload = test_workload(100_000, 1_000);
    workload.capabilities.tools = true;
    let plan = plan_alone(&snap, &chat(workload, Some("balanced")), 3).unwrap();
    let chain = chain_ids(&snap, &plan);
    // Cheapest adequate first, then the best on another provider, then a new tier.
    assert_eq!(
        chain,
        ["openai/gpt-mid", "anthropic/claude", "openai/gpt-big"]
    );
    let filtered: Vec<String> = plan
        .ineligible
        .iter()
        .map(|(id, r)| format!("{id}: {r}"))
        .collect();
    assert_eq!(
        filtered,
        [
            "local/llama: missing capability: tools",
            "openai/gpt-small: context window 16k < 101k needed"
        ]
    );
}

#[test]
fn workspaces_restrict_regions_steer_providers_and_scope_strategies() {
    let mut eu = model("b", "eu-model", Tier::Standard, 1.0, 100_000);
    eu.region = "eu".into();
    let us = model("a", "us-model", Tier::Standard, 1.0, 100_000);
    let mut also_eu = model("c", "eu-other", Tier::Standard, 1.0, 100_000);
    also_eu.region = "eu".into();
    let mut strategies = builtin_strategies();
    strategies.push(StrategySpec {
        name: "team-cheap".into(),
        hedging: None,
        description: String::new(),
        weights: StrategyWeights {
            quality: 0.0,
            speed: 0.0,
            cost: 1.0,
            health: 0.0,
            workspace_fit: 0.0,
        },
        workspace: "team".into(),
    });
    let routing = RoutingSnapshot::new(
        1,
        0,
        0,
        vec![provider("a"), provider("b"), provider("c")],
        vec![eu, us, also_eu],
        strategies,
        "balanced".into(),
    )
    .unwrap()
    .with_workspaces(vec![WorkspaceSpec {
        allowed_regions: vec!["eu".into()],
        preferred_providers: vec!["c".into()],
        avoided_providers: vec!["b".into()],
        default_strategy: "team-cheap".into(),
        ..WorkspaceSpec::unrestricted("team")
    }])
    .unwrap();
    let snap = LiveSnapshot::prepare(routing);

    let mut request = chat(test_workload(1_000, 100), None);
    request.workspace = "team".into();
    let team = plan_alone(&snap, &request, 3).unwrap();
    assert_eq!(
        team.strategy, "team-cheap",
        "the workspace's default strategy applies"
    );
    let reasons: Vec<String> = team
        .ineligible
        .iter()
        .map(|(id, r)| format!("{id}: {r}"))
        .collect();
    assert_eq!(
        reasons,
        ["a/us-model: region us is not allowed for workspace team"]
    );
    let fit: BTreeMap<String, f64> = team
        .candidates
        .iter()
        .map(|c| {
            (
                snap.routing.targets[c.target].id.clone(),
                c.breakdown.workspace_fit.raw,
            )
        })
        .collect();
    assert_eq!(fit["c/eu-other"], 1.0);
    assert_eq!(fit["b/eu-model"], 0.0);

    // With fit weighed in, the preferred provider wins an otherwise equal race.
    request.strategy = Some("balanced".into());
    assert_eq!(
        chain_ids(&snap, &plan_alone(&snap, &request, 1).unwrap()),
        ["c/eu-other"]
    );

    // Another workspace cannot use the scoped strategy, and unknown workspaces are refused.
    let mut other = chat(test_workload(1_000, 100), Some("team-cheap"));
    assert_eq!(
        plan_alone(&snap, &other, 3).unwrap_err(),
        RouteError::UnknownStrategy("team-cheap".into())
    );
    other.workspace = "nobody".into();
    other.strategy = None;
    assert_eq!(
        plan_alone(&snap, &other, 3).unwrap_err(),
        RouteError::UnknownWorkspace("nobody".into())
    );
}

#[test]
fn fresh_telemetry_moves_quality_speed_and_health_and_stale_telemetry_does_not() {
    let models = vec![
        model("a", "flaky", Tier::Standard, 1.0, 100_000),
        model("b", "steady", Tier::Standard, 1.0, 100_000),
    ];
    let flaky = TargetTelemetry {
        target_id: "a/flaky".into(),
        attempts: 180,
        success_rate: 0.5,
        error_rate: 0.5,
        rate_limited_rate: 0.0,
        retry_rate: 0.0,
        latency_p50_ms: 9_000.0,
        latency_p99_ms: 20_000.0,
        ttft_p50_ms: 800.0,
        ttft_p95_ms: 1600.0,
        latency_p95_ms: 8000.0,
        confidence: switchyard_domain::confidence(180),
        strategies: vec![],
        ..Default::default()
    };
    let telemetry = |computed_at_ms| Telemetry {
        targets: [("a/flaky".to_owned(), flaky.clone())]
            .into_iter()
            .collect(),
        computed_at_ms,
        stale_after_ms: 60_000,
        probe_interval_ms: 0,
        data_planes: 1,
    };
    let request = chat(test_workload(1_000, 100), None);
    let now = request.received.unix_ms;
    let with = |t: Telemetry| {
        let routing = RoutingSnapshot::new(
            1,
            0,
            0,
            vec![provider("a"), provider("b")],
            models.clone(),
            builtin_strategies(),
            "balanced".into(),
        )
        .unwrap()
        .with_telemetry(t);
        LiveSnapshot::prepare(routing)
    };

    let fresh = with(telemetry(now - 1_000));
    let p = plan_alone(&fresh, &request, 2).unwrap();
    assert_eq!(ids(&fresh, &p), ["b/steady", "a/flaky"]);
    let b = &p.candidates[1].breakdown;
    assert_eq!(
        (b.health.source, b.speed.source, b.quality.source),
        (Source::Telemetry, Source::Telemetry, Source::Telemetry)
    );
    assert!((b.health.raw - 0.5).abs() < 1e-12);
    assert!((b.health.score - (1.0 - 0.5 * 0.9)).abs() < 1e-12);
    assert!(
        b.speed.raw > 8_000.0,
        "observed latency weighs in: {}",
        b.speed.raw
    );

    // Past its staleness bound the data plane trusts only priors: a tie, broken by id.
    let stale = with(telemetry(now - 61_000));
    let p = plan_alone(&stale, &request, 2).unwrap();
    assert_eq!(ids(&stale, &p), ["a/flaky", "b/steady"]);
    assert_eq!(p.candidates[0].breakdown.health.source, Source::Prior);
}

#[test]
fn an_open_circuit_filters_and_a_half_open_one_halves_health() {
    let snap = snapshot(
        vec![provider("a"), provider("b")],
        vec![
            model("a", "m", Tier::Standard, 1.0, 100_000),
            model("b", "m", Tier::Standard, 1.0, 100_000),
        ],
    );
    let request = chat(test_workload(100, 100), None);
    let now = request.received.unix_ms;
    let breakers = Breakers::default();
    for _ in 0..5 {
        breakers.failure("a/m", now);
    }
    let p = plan(&snap, &request, 2, &breakers, &LocalSignals::default()).unwrap();
    assert_eq!(ids(&snap, &p), ["b/m"]);
    assert!(matches!(
        p.ineligible[0].1,
        Ineligibility::CircuitOpen { .. }
    ));
    assert!(
        p.explanation.contains("a/m: circuit open until"),
        "{}",
        p.explanation
    );

    // After the cool-down the breaker half-opens: eligible again, at half health.
    let mut later = chat(test_workload(100, 100), None);
    later.received.unix_ms = now + 5_000;
    let p = plan(&snap, &later, 2, &breakers, &LocalSignals::default()).unwrap();
    let a = p
        .candidates
        .iter()
        .find(|c| snap.routing.targets[c.target].id == "a/m")
        .unwrap();
    assert_eq!(a.breakdown.health.score, 0.5);
    assert_eq!(ids(&snap, &p), ["b/m", "a/m"]);
    assert!(
        p.explanation.contains("; circuits: a/m half-open"),
        "{}",
        p.explanation
    );
}

#[test]
fn an_operator_forced_circuit_wins_over_the_breaker() {
    let mut forced_open = model("a", "m", Tier::Standard, 0.1, 100_000);
    forced_open.circuit = CircuitMode::Open;
    let mut forced_closed = model("b", "m", Tier::Standard, 1.0, 100_000);
    forced_closed.circuit = CircuitMode::Closed;
    let snap = snapshot(
        vec![provider("a"), provider("b"), provider("c")],
        vec![
            forced_open,
            forced_closed,
            model("c", "m", Tier::Standard, 1.0, 100_000),
        ],
    );
    let request = chat(test_workload(100, 100), Some("cost"));
    let now = request.received.unix_ms;
    let breakers = Breakers::default();
    breakers.apply_overrides(&snap.routing);
    // Failures that would open b's breaker do not count while it is forced closed.
    for _ in 0..5 {
        breakers.failure("b/m", now);
    }
    let p = plan(&snap, &request, 2, &breakers, &LocalSignals::default()).unwrap();
    assert_eq!(
        p.ineligible,
        [("a/m".to_owned(), Ineligibility::CircuitForcedOpen)],
        "the cheapest target is forced open"
    );
    assert_eq!(ids(&snap, &p), ["b/m", "c/m"]);
    assert_eq!(p.candidates[0].circuit, crate::breaker::State::ForcedClosed);
    assert_eq!(
        p.candidates[0].breakdown.health.score, 1.0,
        "forced closed is not probing"
    );
    assert!(
        p.explanation
            .contains("; circuits: b/m forced closed by operator; filtered: a/m: circuit forced open by operator"),
        "{}",
        p.explanation
    );
    let (candidates, ineligible) = crate::plan_wire::candidates(&p, &snap);
    assert_eq!(candidates[0].circuit, "forced_closed");
    assert_eq!(candidates[1].circuit, "closed");
    assert_eq!(ineligible[0].reason, "circuit forced open by operator");

    // A snapshot that lifts the overrides hands both back to their breakers.
    let mut lifted = snap.routing.clone();
    for target in &mut lifted.targets {
        target.spec.circuit = CircuitMode::Auto;
    }
    breakers.apply_overrides(&lifted);
    let lifted = LiveSnapshot::prepare(lifted);
    let p = plan(&lifted, &request, 2, &breakers, &LocalSignals::default()).unwrap();
    assert!(p.ineligible.is_empty(), "{:?}", p.ineligible);
    assert_eq!(ids(&lifted, &p)[0], "a/m");
}

// ---- properties ----------------------------------------------------------

#[derive(Debug, Clone)]
struct Arb {
    provider: u8,
    family: u8,
    region: u8,
    tier: u8,
    price: f64,
    context: u32,
    tools: bool,
}

fn arb_target() -> impl Strategy<Value = Arb> {
    (
        0u8..4,
        0u8..4,
        0u8..3,
        0u8..3,
        0.0f64..20.0,
        1_000u32..200_000,
        any::<bool>(),
    )
        .prop_map(
            |(provider, family, region, tier, price, context, tools)| Arb {
                provider,
                family,
                region,
                tier,
                price,
                context,
                tools,
            },
        )
}

fn build(targets: &[Arb]) -> LiveSnapshot {
    let models = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut m = model(
                &format!("p{}", t.provider),
                &format!("m{i}"),
                [Tier::Economy, Tier::Standard, Tier::Frontier][usize::from(t.tier)],
                t.price,
                t.context,
            );
            m.family = format!("f{}", t.family);
            m.region = format!("r{}", t.region);
            m.capabilities.tools = t.tools;
            m
        })
        .collect();
    snapshot((0..4).map(|p| provider(&format!("p{p}"))).collect(), models)
}

fn tool_request(input: u64, strategy: &str) -> crate::request::ChatRequest {
    let mut workload = test_workload(input, 500);
    workload.capabilities.tools = true;
    test_request("chat", Some(strategy), workload)
}

proptest! {
    #[test]
    fn ranking_is_deterministic(targets in prop::collection::vec(arb_target(), 1..12), input in 100u64..150_000) {
        let snap = build(&targets);
        let request = tool_request(input, "balanced");
        let a = plan_alone(&snap, &request, 3).unwrap();
        let b = plan_alone(&snap, &request, 3).unwrap();
        prop_assert_eq!(ids(&snap, &a), ids(&snap, &b));
        prop_assert_eq!(chain_ids(&snap, &a), chain_ids(&snap, &b));
        prop_assert_eq!(a.explanation, b.explanation);
    }

    #[test]
    fn the_first_backup_is_on_another_provider_whenever_one_is_eligible(
        targets in prop::collection::vec(arb_target(), 1..12), input in 100u64..150_000,
    ) {
        let snap = build(&targets);
        let plan = plan_alone(&snap, &tool_request(input, "balanced"), 3).unwrap();
        let providers: Vec<&str> = plan.candidates.iter().map(|c| snap.routing.targets[c.target].spec.provider.as_str()).collect();
        let chain: Vec<&str> = plan.chain().map(|c| snap.routing.targets[c.target].spec.provider.as_str()).collect();
        if let Some(primary) = chain.first()
            && providers.iter().any(|p| p != primary)
        {
            prop_assert!(chain.len() >= 2);
            prop_assert_ne!(chain[1], *primary);
        }
    }

    #[test]
    fn adding_an_ineligible_candidate_changes_nothing(
        targets in prop::collection::vec(arb_target(), 1..12), input in 100u64..150_000,
    ) {
        let before_snap = build(&targets);
        let request = tool_request(input, "balanced");
        let before = plan_alone(&before_snap, &request, 3).unwrap();
        let mut more = targets.clone();
        more.push(Arb { provider: 0, family: 0, region: 0, tier: 2, price: 0.0, context: 1_000_000, tools: false });
        let after_snap = build(&more);
        let after = plan_alone(&after_snap, &request, 3).unwrap();
        prop_assert_eq!(ids(&before_snap, &before), ids(&after_snap, &after));
        prop_assert_eq!(chain_ids(&before_snap, &before), chain_ids(&after_snap, &after));
        let scores = |p: &RoutePlan| p.candidates.iter().map(|c| c.score).collect::<Vec<_>>();
        prop_assert_eq!(scores(&before), scores(&after));
    }

    #[test]
    fn raising_cost_weight_never_lowers_the_cheapest_candidates_rank(
        targets in prop::collection::vec(arb_target(), 2..12), boost in 0.1f64..10.0,
    ) {
        let snap = build(&targets);
        let request = tool_request(1_000, "balanced");
        let base = plan_alone(&snap, &request, 3).unwrap();
        let Some(cheapest) = base.candidates.iter().min_by(|a, b| a.breakdown.cost.raw.total_cmp(&b.breakdown.cost.raw)) else {
            return Ok(());
        };
        let rank_of = |p: &RoutePlan, target: usize| p.candidates.iter().position(|c| c.target == target);
        let before = rank_of(&base, cheapest.target);

        let mut boosted = snap.routing.clone();
        if let Some(s) = boosted.strategies.get_mut("balanced") {
            s.weights.cost += boost;
        }
        let boosted = LiveSnapshot::prepare(boosted);
        let after = rank_of(&plan_alone(&boosted, &request, 3).unwrap(), cheapest.target);
        prop_assert!(after <= before, "rank went from {:?} to {:?}", before, after);
    }
}

/// Hedging follows the strategy: the delay is the primary's p95 to first
/// output (to first token for streams, to the whole answer otherwise), from
/// fresh telemetry when there is some, else from priors; no backup, no hedge.
#[test]
fn hedged_strategies_plan_a_hedge_after_the_primarys_p95() {
    let models = vec![
        model("a", "m", Tier::Economy, 1.0, 100_000),
        model("b", "m", Tier::Economy, 2.0, 100_000),
    ];
    let hedged = StrategySpec {
        name: "hedged".into(),
        hedging: Some(switchyard_domain::HedgingSpec {
            max_share: 0.2,
            min_delay_ms: 0,
        }),
        ..builtin_strategies()[1].clone()
    };
    let routing = |models: Vec<ModelSpec>| {
        let mut strategies = builtin_strategies();
        strategies.push(hedged.clone());
        RoutingSnapshot::new(
            1,
            0,
            0,
            vec![provider("a"), provider("b")],
            models,
            strategies,
            "balanced".into(),
        )
        .unwrap()
    };
    let snap = LiveSnapshot::prepare(routing(models.clone()));
    let mut streamed = test_workload(10, 150);
    streamed.capabilities.streaming = true;
    let whole = test_workload(10, 150);

    let p = plan_alone(&snap, &chat(streamed.clone(), Some("hedged")), 2).unwrap();
    let hedge = p.hedge.expect("a hedged strategy with a backup hedges");
    // Economy prior: 300 ms to first token, doubled for a p95.
    assert_eq!(hedge.delay, Duration::from_millis(600));
    assert!((hedge.max_share - 0.2).abs() < 1e-9);
    // A whole answer also waits for its 150 tokens at the prior 150 tokens/s.
    let p = plan_alone(&snap, &chat(whole, Some("hedged")), 2).unwrap();
    assert_eq!(p.hedge.unwrap().delay, Duration::from_millis(2_600));

    // Fresh telemetry's p95 wins over the prior.
    let request = chat(streamed.clone(), Some("hedged"));
    let observed = TargetTelemetry {
        target_id: "a/m".into(),
        attempts: 100,
        success_rate: 1.0,
        error_rate: 0.0,
        rate_limited_rate: 0.0,
        retry_rate: 0.0,
        latency_p50_ms: 900.0,
        latency_p99_ms: 2_000.0,
        ttft_p50_ms: 100.0,
        ttft_p95_ms: 250.0,
        latency_p95_ms: 1_500.0,
        confidence: switchyard_domain::confidence(100),
        strategies: vec![],
        ..Default::default()
    };
    let telemetry = Telemetry {
        targets: [("a/m".to_owned(), observed)].into_iter().collect(),
        computed_at_ms: request.received.unix_ms,
        stale_after_ms: 60_000,
        probe_interval_ms: 0,
        data_planes: 1,
    };
    let snap_t = LiveSnapshot::prepare(routing(models.clone()).with_telemetry(telemetry));
    let p = plan_alone(&snap_t, &request, 2).unwrap();
    assert_eq!(p.hedge.unwrap().delay, Duration::from_millis(250));
    assert!(p.explanation.contains("hedged"), "{}", p.explanation);

    // Not with a strategy that does not hedge, nor without a backup.
    let p = plan_alone(&snap, &chat(streamed.clone(), Some("cost")), 2).unwrap();
    assert_eq!(p.hedge, None);
    let alone = LiveSnapshot::prepare(routing(models[..1].to_vec()));
    let p = plan_alone(&alone, &chat(streamed, Some("hedged")), 2).unwrap();
    assert_eq!(p.hedge, None);
}

#[test]
fn fleet_verdicts_skip_or_penalise_and_panic_mode_routes_across_all() {
    let models: Vec<ModelSpec> = ["a", "b", "c", "d"]
        .into_iter()
        .map(|p| model(p, "m", Tier::Standard, 1.0, 100_000))
        .collect();
    let request = chat(test_workload(1_000, 100), None);
    let now = request.received.unix_ms;
    let verdict = |id: &str, state: HealthState| {
        let t = TargetTelemetry {
            target_id: id.into(),
            state,
            state_until_ms: now + 10_000,
            ..Default::default()
        };
        (id.to_owned(), t)
    };
    let with = |verdicts: Vec<(String, TargetTelemetry)>| {
        let routing = RoutingSnapshot::new(
            1,
            0,
            0,
            ["a", "b", "c", "d"].into_iter().map(provider).collect(),
            models.clone(),
            builtin_strategies(),
            "balanced".into(),
        )
        .unwrap()
        .with_telemetry(Telemetry {
            targets: verdicts.into_iter().collect(),
            computed_at_ms: now - 1_000,
            stale_after_ms: 60_000,
            probe_interval_ms: 0,
            data_planes: 1,
        });
        LiveSnapshot::prepare(routing)
    };

    // One ejected, one degraded: the first is skipped with its reason, the second ranks last.
    let snap = with(vec![
        verdict("a/m", HealthState::Ejected),
        verdict("b/m", HealthState::Degraded),
    ]);
    let p = plan_alone(&snap, &request, 3).unwrap();
    assert_eq!(ids(&snap, &p), ["c/m", "d/m", "b/m"]);
    assert!(matches!(
        p.ineligible.as_slice(),
        [(id, Ineligibility::FleetSkipped { state: HealthState::Ejected, .. })] if id == "a/m"
    ));
    assert_eq!(p.candidates[2].breakdown.health.source, Source::Fleet);

    // Three of four skipped would leave fewer than half: panic mode routes across all,
    // the skipped ones last.
    let snap = with(vec![
        verdict("a/m", HealthState::Ejected),
        verdict("b/m", HealthState::RateLimited),
        verdict("c/m", HealthState::Ejected),
    ]);
    let p = plan_alone(&snap, &request, 3).unwrap();
    assert_eq!(ids(&snap, &p)[0], "d/m");
    assert_eq!(p.candidates.len(), 4);
    assert!(p.ineligible.is_empty());
    assert!(p.explanation.contains("panic mode"), "{}", p.explanation);

    // A verdict past its until-time is over.
    let mut expired = verdict("a/m", HealthState::Ejected);
    expired.1.state_until_ms = now - 1;
    let snap = with(vec![expired]);
    let p = plan_alone(&snap, &request, 3).unwrap();
    assert_eq!(p.candidates.len(), 4);
    assert!(p.candidates.iter().all(|c| c.breakdown.health.score == 1.0));
}

#[test]
fn a_local_first_token_spike_and_load_slow_a_target_down_before_the_fleet_notices() {
    let models = vec![
        model("a", "m", Tier::Standard, 1.0, 100_000),
        model("b", "m", Tier::Standard, 1.0, 100_000),
    ];
    let routing = RoutingSnapshot::new(
        1,
        0,
        0,
        vec![provider("a"), provider("b")],
        models,
        builtin_strategies(),
        "balanced".into(),
    )
    .unwrap();
    let snap = LiveSnapshot::prepare(routing);
    let request = chat(test_workload(1_000, 100), None);
    let signals = LocalSignals::default();
    // Faster than the prior expects: no bonus, the tie stays broken by id.
    signals.observe_ttft("a/m", 50.0, 0);
    let p = plan(&snap, &request, 2, &Breakers::default(), &signals).unwrap();
    assert_eq!(ids(&snap, &p), ["a/m", "b/m"]);
    // A spike on a, and two attempts in flight on it: b goes first.
    signals.observe_ttft("a/m", 3_000.0, 1);
    let _busy = (signals.start("a/m"), signals.start("a/m"));
    let p = plan(&snap, &request, 2, &Breakers::default(), &signals).unwrap();
    assert_eq!(ids(&snap, &p), ["b/m", "a/m"]);
    let a = &p.candidates[1].breakdown.speed;
    assert_eq!(a.source, Source::Local);
    assert!(a.raw > 9_000.0, "{}", a.raw);
}

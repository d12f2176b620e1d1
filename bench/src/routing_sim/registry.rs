//! The registry the simulated targets form, as the control plane would hold
//! it (one provider per target, every model answering to the alias `chat`),
//! the chat request every client sends, and the glue to the data plane's
//! real scoring.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use switchyard_data_plane::breaker::Breakers;
use switchyard_data_plane::health::LocalSignals;
use switchyard_data_plane::request::{ChatRequest, Received};
use switchyard_data_plane::scoring;
use switchyard_data_plane::snapshot::LiveSnapshot;
use switchyard_data_plane::workload::{
    Intent, RequiredCapabilities, Source, TimeoutProfile, WorkloadProfile,
};
use switchyard_domain::{
    Capabilities, CircuitMode, ModelSpec, ProviderKind, ProviderSpec, RoutingSnapshot, Telemetry,
    builtin_strategies, target_id,
};

use super::market::{ALIAS, INPUT_TOKENS, Market, OUTPUT_TOKENS, PROFILES};

/// Virtual time 0 in Unix milliseconds. Fixed, so runs repeat exactly.
pub const EPOCH_MS: i64 = 1_600_000_000_000;

/// Fallback chain length (the data plane's default `--fallback-chain`).
pub const CHAIN_LENGTH: usize = 3;

pub fn unix(t: i64) -> i64 {
    EPOCH_MS + t
}

/// Target ids in the market's order.
pub fn target_ids() -> Vec<String> {
    PROFILES
        .iter()
        .map(|p| target_id(p.provider, p.model))
        .collect()
}

/// The registry at virtual time `t` (prices as they stand then), with `telemetry`.
pub fn snapshot(
    market: &Market,
    version: u64,
    t: i64,
    telemetry: Telemetry,
) -> anyhow::Result<LiveSnapshot> {
    let providers = PROFILES
        .iter()
        .map(|p| ProviderSpec {
            name: p.provider.to_owned(),
            kind: ProviderKind::Openai,
            base_url: format!("https://api.{}.example/v1", p.provider),
            api_key_ref: String::new(),
            headers: BTreeMap::new(),
            enabled: true,
            simulated: None,
        })
        .collect();
    let models = PROFILES
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (input, output) = market.prices(i, t);
            ModelSpec {
                provider: p.provider.to_owned(),
                name: p.model.to_owned(),
                family: p.model.to_owned(),
                capabilities: Capabilities {
                    streaming: true,
                    tools: true,
                    vision: false,
                    json_output: true,
                },
                context_window: 128_000,
                input_price_per_mtok: input,
                output_price_per_mtok: output,
                region: String::new(),
                tier: p.tier,
                aliases: vec![ALIAS.to_owned()],
                enabled: true,
                circuit: CircuitMode::Auto,
            }
        })
        .collect();
    let routing = RoutingSnapshot::new(
        version,
        1,
        unix(t),
        providers,
        models,
        builtin_strategies(),
        "balanced".into(),
    )
    .context("the simulated registry is invalid")?;
    Ok(LiveSnapshot::prepare(routing.with_telemetry(telemetry)))
}

/// The request every client sends (its arrival time is set per request).
pub fn request() -> ChatRequest {
    ChatRequest {
        replay_of: None,
        trace_context: Default::default(),
        received: Received {
            at: std::time::Instant::now(),
            unix_ms: unix(0),
        },
        request_id: "sim".into(),
        trace_id: "sim".into(),
        workspace: "default".into(),
        model: ALIAS.into(),
        strategy: None,
        stream: true,
        max_tokens: Some(OUTPUT_TOKENS as u32),
        body: serde_json::Map::new(),
        workload: WorkloadProfile {
            intent: Intent::Chat,
            intent_source: Source::Classified,
            input_tokens: INPUT_TOKENS,
            output_tokens: OUTPUT_TOKENS,
            capabilities: RequiredCapabilities {
                streaming: true,
                ..RequiredCapabilities::default()
            },
            timeout: TimeoutProfile::Standard,
            timeout_source: Source::Classified,
            intent_reason: "chat: simulated".into(),
        },
    }
}

/// The data plane's plan for `request`, as market indices in chain order.
pub fn plan_order(
    snapshot: &LiveSnapshot,
    request: &ChatRequest,
    breakers: &Breakers,
    signals: &LocalSignals,
    index: &HashMap<String, usize>,
) -> anyhow::Result<Vec<usize>> {
    let plan = scoring::plan(snapshot, request, CHAIN_LENGTH, breakers, signals)
        .context("scoring refused the request")?;
    plan.chain()
        .map(|c| {
            let id = &snapshot.routing.targets[c.target].id;
            index
                .get(id)
                .copied()
                .with_context(|| format!("the plan names an unknown target {id}"))
        })
        .collect()
}

//! Conversions between generated wire types and domain types. Wire -> domain
//! validates; domain -> wire cannot fail.

use prost_types::Timestamp;
use switchyard_proto::v1 as pb;

use crate::{
    Budget, Capabilities, CircuitMode, HedgingSpec, KeyGrant, ModelSpec, ProviderKind,
    ProviderSpec, RateLimits, SimulatedParams, StrategySpec, StrategyWeights, Tier, TracePayload,
    ValidationError, WorkspaceSpec,
};

pub fn timestamp_from_millis(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        // The remainder is below 1000, so the product fits in i32.
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

pub fn timestamp_to_millis(ts: &Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

impl TryFrom<pb::ProviderKind> for ProviderKind {
    type Error = ValidationError;
    fn try_from(kind: pb::ProviderKind) -> Result<Self, Self::Error> {
        match kind {
            pb::ProviderKind::Openai => Ok(Self::Openai),
            pb::ProviderKind::Anthropic => Ok(Self::Anthropic),
            pb::ProviderKind::Ollama => Ok(Self::Ollama),
            pb::ProviderKind::Simulated => Ok(Self::Simulated),
            pb::ProviderKind::Unspecified => Err(ValidationError::new("kind", "required")),
        }
    }
}

impl From<ProviderKind> for pb::ProviderKind {
    fn from(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::Openai => Self::Openai,
            ProviderKind::Anthropic => Self::Anthropic,
            ProviderKind::Ollama => Self::Ollama,
            ProviderKind::Simulated => Self::Simulated,
        }
    }
}

impl TryFrom<pb::Provider> for ProviderSpec {
    type Error = ValidationError;
    fn try_from(p: pb::Provider) -> Result<Self, Self::Error> {
        let kind = pb::ProviderKind::try_from(p.kind)
            .map_err(|_| ValidationError::new("kind", format!("unknown provider kind {}", p.kind)))?
            .try_into()?;
        let spec = Self {
            name: p.name,
            kind,
            base_url: p.base_url,
            api_key_ref: p.api_key_ref,
            headers: p.headers.into_iter().collect(),
            enabled: p.enabled,
            simulated: p.simulated.map(|s| SimulatedParams {
                seed: s.seed,
                first_token_latency_ms: s.first_token_latency_ms,
                tokens_per_second: s.tokens_per_second,
                failure_rate: s.failure_rate,
                output_tokens: s.output_tokens,
            }),
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl From<&ProviderSpec> for pb::Provider {
    fn from(p: &ProviderSpec) -> Self {
        Self {
            name: p.name.clone(),
            kind: pb::ProviderKind::from(p.kind).into(),
            base_url: p.base_url.clone(),
            api_key_ref: p.api_key_ref.clone(),
            headers: p.headers.clone().into_iter().collect(),
            enabled: p.enabled,
            simulated: p.simulated.as_ref().map(|s| pb::SimulatedParams {
                seed: s.seed,
                first_token_latency_ms: s.first_token_latency_ms,
                tokens_per_second: s.tokens_per_second,
                failure_rate: s.failure_rate,
                output_tokens: s.output_tokens,
            }),
            created_at: None,
            updated_at: None,
        }
    }
}

impl From<Tier> for pb::Tier {
    fn from(tier: Tier) -> Self {
        match tier {
            Tier::Economy => Self::Economy,
            Tier::Standard => Self::Standard,
            Tier::Frontier => Self::Frontier,
        }
    }
}

fn tier_from_wire(raw: i32) -> Result<Tier, ValidationError> {
    match pb::Tier::try_from(raw) {
        Ok(pb::Tier::Economy) => Ok(Tier::Economy),
        Ok(pb::Tier::Standard) => Ok(Tier::Standard),
        Ok(pb::Tier::Frontier) => Ok(Tier::Frontier),
        Ok(pb::Tier::Unspecified) => Err(ValidationError::new("tier", "required")),
        Err(_) => Err(ValidationError::new("tier", format!("unknown tier {raw}"))),
    }
}

impl From<CircuitMode> for pb::CircuitMode {
    fn from(mode: CircuitMode) -> Self {
        match mode {
            CircuitMode::Auto => Self::Auto,
            CircuitMode::Open => Self::Open,
            CircuitMode::Closed => Self::Closed,
        }
    }
}

fn circuit_from_wire(raw: i32) -> Result<CircuitMode, ValidationError> {
    match pb::CircuitMode::try_from(raw) {
        Ok(pb::CircuitMode::Unspecified | pb::CircuitMode::Auto) => Ok(CircuitMode::Auto),
        Ok(pb::CircuitMode::Open) => Ok(CircuitMode::Open),
        Ok(pb::CircuitMode::Closed) => Ok(CircuitMode::Closed),
        Err(_) => Err(ValidationError::new(
            "circuit",
            format!("unknown circuit mode {raw}: expected AUTO, OPEN or CLOSED"),
        )),
    }
}

impl TryFrom<pb::Model> for ModelSpec {
    type Error = ValidationError;
    fn try_from(m: pb::Model) -> Result<Self, Self::Error> {
        let caps = m.capabilities.unwrap_or_default();
        let spec = Self {
            provider: m.provider,
            name: m.name,
            family: m.family,
            capabilities: Capabilities {
                streaming: caps.streaming,
                tools: caps.tools,
                vision: caps.vision,
                json_output: caps.json_output,
            },
            context_window: m.context_window,
            input_price_per_mtok: m.input_price_per_mtok,
            output_price_per_mtok: m.output_price_per_mtok,
            region: m.region,
            tier: tier_from_wire(m.tier)?,
            aliases: m.aliases,
            enabled: m.enabled,
            circuit: circuit_from_wire(m.circuit)?,
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl From<&ModelSpec> for pb::Model {
    fn from(m: &ModelSpec) -> Self {
        Self {
            provider: m.provider.clone(),
            name: m.name.clone(),
            family: m.family.clone(),
            capabilities: Some(pb::Capabilities {
                streaming: m.capabilities.streaming,
                tools: m.capabilities.tools,
                vision: m.capabilities.vision,
                json_output: m.capabilities.json_output,
            }),
            context_window: m.context_window,
            input_price_per_mtok: m.input_price_per_mtok,
            output_price_per_mtok: m.output_price_per_mtok,
            region: m.region.clone(),
            tier: pb::Tier::from(m.tier).into(),
            aliases: m.aliases.clone(),
            enabled: m.enabled,
            created_at: None,
            updated_at: None,
            circuit: pb::CircuitMode::from(m.circuit).into(),
        }
    }
}

impl From<pb::StrategyWeights> for StrategyWeights {
    fn from(w: pb::StrategyWeights) -> Self {
        Self {
            quality: w.quality,
            speed: w.speed,
            cost: w.cost,
            health: w.health,
            workspace_fit: w.workspace_fit,
        }
    }
}

impl From<StrategyWeights> for pb::StrategyWeights {
    fn from(w: StrategyWeights) -> Self {
        Self {
            quality: w.quality,
            speed: w.speed,
            cost: w.cost,
            health: w.health,
            workspace_fit: w.workspace_fit,
        }
    }
}

impl TryFrom<pb::Strategy> for StrategySpec {
    type Error = ValidationError;
    fn try_from(s: pb::Strategy) -> Result<Self, Self::Error> {
        let weights = s
            .weights
            .ok_or_else(|| ValidationError::new("weights", "required"))?
            .into();
        let spec = Self {
            name: s.name,
            description: s.description,
            weights,
            workspace: s.workspace,
            hedging: s.hedging.map(|h| HedgingSpec {
                max_share: h.max_share,
                min_delay_ms: h.min_delay_ms,
            }),
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl From<&StrategySpec> for pb::Strategy {
    fn from(s: &StrategySpec) -> Self {
        Self {
            name: s.name.clone(),
            description: s.description.clone(),
            weights: Some(s.weights.into()),
            workspace: s.workspace.clone(),
            hedging: s.hedging.map(|h| pb::Hedging {
                max_share: h.max_share,
                min_delay_ms: h.min_delay_ms,
            }),
            created_at: None,
            updated_at: None,
        }
    }
}

impl TryFrom<pb::Workspace> for WorkspaceSpec {
    type Error = ValidationError;
    fn try_from(w: pb::Workspace) -> Result<Self, Self::Error> {
        let spec = Self {
            name: w.name,
            description: w.description,
            allowed_regions: w.allowed_regions,
            preferred_providers: w.preferred_providers,
            avoided_providers: w.avoided_providers,
            default_strategy: w.default_strategy,
            trace_payload: TracePayload::override_from_wire(w.trace_payload),
            limits: w.limits.map(RateLimits::from).unwrap_or_default(),
            budget: w.budget.map(Budget::from).unwrap_or_default(),
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl From<&WorkspaceSpec> for pb::Workspace {
    fn from(w: &WorkspaceSpec) -> Self {
        Self {
            name: w.name.clone(),
            description: w.description.clone(),
            allowed_regions: w.allowed_regions.clone(),
            preferred_providers: w.preferred_providers.clone(),
            avoided_providers: w.avoided_providers.clone(),
            default_strategy: w.default_strategy.clone(),
            created_at: None,
            updated_at: None,
            trace_payload: w.trace_payload.map_or(0, |p| p.to_wire().into()),
            limits: (!w.limits.is_unlimited()).then(|| w.limits.into()),
            budget: (!w.budget.is_unlimited()).then(|| w.budget.into()),
        }
    }
}

impl From<pb::RateLimits> for RateLimits {
    fn from(l: pb::RateLimits) -> Self {
        Self {
            requests_per_minute: l.requests_per_minute,
            tokens_per_minute: l.tokens_per_minute,
        }
    }
}

impl From<RateLimits> for pb::RateLimits {
    fn from(l: RateLimits) -> Self {
        Self {
            requests_per_minute: l.requests_per_minute,
            tokens_per_minute: l.tokens_per_minute,
        }
    }
}

impl From<pb::Budget> for Budget {
    fn from(b: pb::Budget) -> Self {
        Self {
            daily_usd: b.daily_usd,
            monthly_usd: b.monthly_usd,
        }
    }
}

impl From<Budget> for pb::Budget {
    fn from(b: Budget) -> Self {
        Self {
            daily_usd: b.daily_usd,
            monthly_usd: b.monthly_usd,
        }
    }
}

impl TryFrom<pb::KeyGrant> for KeyGrant {
    type Error = ValidationError;
    fn try_from(k: pb::KeyGrant) -> Result<Self, Self::Error> {
        let secret_sha256 = <[u8; 32]>::try_from(k.secret_sha256.as_slice())
            .map_err(|_| ValidationError::new("secret_sha256", "must be 32 bytes"))?;
        let grant = Self {
            id: k.id,
            secret_sha256,
            workspace: k.workspace,
            allowed_models: k.allowed_models,
            limits: k.limits.map(RateLimits::from).unwrap_or_default(),
            any_workspace: k.any_workspace,
        };
        grant.validate()?;
        Ok(grant)
    }
}

impl From<&KeyGrant> for pb::KeyGrant {
    fn from(k: &KeyGrant) -> Self {
        Self {
            id: k.id.clone(),
            secret_sha256: k.secret_sha256.to_vec(),
            workspace: k.workspace.clone(),
            allowed_models: k.allowed_models.clone(),
            limits: Some(k.limits.into()),
            any_workspace: k.any_workspace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_including_before_epoch() {
        for ms in [0, 1, 999, 1_700_000_000_123, -1, -1001] {
            assert_eq!(timestamp_to_millis(&timestamp_from_millis(ms)), ms);
        }
    }

    #[test]
    fn provider_without_kind_is_rejected_naming_kind() {
        let p = pb::Provider {
            name: "x".into(),
            ..Default::default()
        };
        assert_eq!(ProviderSpec::try_from(p).unwrap_err().field, "kind");
    }

    #[test]
    fn model_round_trips_through_the_wire() {
        let spec = ModelSpec {
            provider: "p".into(),
            name: "m".into(),
            family: "f".into(),
            capabilities: Capabilities {
                streaming: true,
                tools: true,
                vision: false,
                json_output: true,
            },
            context_window: 8192,
            input_price_per_mtok: 1.0,
            output_price_per_mtok: 2.0,
            region: "eu".into(),
            tier: Tier::Frontier,
            aliases: vec!["big".into()],
            enabled: true,
            circuit: CircuitMode::Open,
        };
        assert_eq!(ModelSpec::try_from(pb::Model::from(&spec)), Ok(spec));
    }

    #[test]
    fn circuit_override_defaults_to_auto_and_unknown_values_name_the_field() {
        let spec = ModelSpec::try_from(pb::Model {
            provider: "p".into(),
            name: "m".into(),
            family: "f".into(),
            context_window: 8192,
            tier: pb::Tier::Standard.into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(spec.circuit, CircuitMode::Auto);

        let mut wire = pb::Model::from(&spec);
        wire.circuit = 9;
        let err = ModelSpec::try_from(wire).unwrap_err();
        assert_eq!(err.field, "circuit");
        assert!(err.message.contains("unknown circuit mode 9"), "{err}");
    }

    #[test]
    fn strategy_without_weights_is_rejected() {
        let s = pb::Strategy {
            name: "x".into(),
            ..Default::default()
        };
        assert_eq!(StrategySpec::try_from(s).unwrap_err().field, "weights");
    }
}

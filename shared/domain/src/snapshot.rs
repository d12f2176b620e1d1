//! The routing snapshot: an immutable, versioned, validated view of the registry
//! that data planes score and execute against.

use std::collections::{BTreeMap, HashMap};

use switchyard_proto::v1 as pb;

use crate::{
    ModelSpec, ProviderSpec, StrategySpec, ValidationError, timestamp_from_millis,
    timestamp_to_millis,
};

/// A model of a provider, with its id precomputed for the hot path.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `provider/model`.
    pub id: String,
    pub spec: ModelSpec,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoutingSnapshot {
    pub version: u64,
    pub epoch: u64,
    pub created_at_ms: i64,
    pub providers: BTreeMap<String, ProviderSpec>,
    /// Sorted by target id, so ties in scoring break the same way on every node.
    pub targets: Vec<Target>,
    pub strategies: HashMap<String, StrategySpec>,
    pub default_strategy: String,
}

impl RoutingSnapshot {
    /// Validates every entity and every reference between them.
    pub fn new(
        version: u64,
        epoch: u64,
        created_at_ms: i64,
        providers: Vec<ProviderSpec>,
        models: Vec<ModelSpec>,
        strategies: Vec<StrategySpec>,
        default_strategy: String,
    ) -> Result<Self, ValidationError> {
        if version == 0 {
            return Err(ValidationError::new("version", "must be greater than 0"));
        }
        let mut provider_map = BTreeMap::new();
        for (i, p) in providers.into_iter().enumerate() {
            let field = format!("providers[{i}]");
            p.validate().map_err(|e| e.within(&field))?;
            if provider_map.contains_key(&p.name) {
                return Err(ValidationError::new(
                    field,
                    format!("duplicate provider {:?}", p.name),
                ));
            }
            provider_map.insert(p.name.clone(), p);
        }
        let mut targets: Vec<Target> = Vec::with_capacity(models.len());
        for (i, m) in models.into_iter().enumerate() {
            let field = format!("models[{i}]");
            m.validate().map_err(|e| e.within(&field))?;
            if !provider_map.contains_key(&m.provider) {
                return Err(ValidationError::new(
                    format!("{field}.provider"),
                    format!("unknown provider {:?}", m.provider),
                ));
            }
            targets.push(Target {
                id: m.target_id(),
                spec: m,
            });
        }
        targets.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(pair) = targets.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(ValidationError::new(
                "models",
                format!("duplicate target {:?}", pair[0].id),
            ));
        }
        let mut strategy_map = HashMap::new();
        for (i, s) in strategies.into_iter().enumerate() {
            let field = format!("strategies[{i}]");
            s.validate().map_err(|e| e.within(&field))?;
            if strategy_map.contains_key(&s.name) {
                return Err(ValidationError::new(
                    field,
                    format!("duplicate strategy {:?}", s.name),
                ));
            }
            strategy_map.insert(s.name.clone(), s);
        }
        if !strategy_map.contains_key(&default_strategy) {
            return Err(ValidationError::new(
                "default_strategy",
                format!("unknown strategy {default_strategy:?}"),
            ));
        }
        Ok(Self {
            version,
            epoch,
            created_at_ms,
            providers: provider_map,
            targets,
            strategies: strategy_map,
            default_strategy,
        })
    }

    pub fn to_wire(&self) -> pb::Snapshot {
        let mut strategies: Vec<&StrategySpec> = self.strategies.values().collect();
        strategies.sort_by(|a, b| a.name.cmp(&b.name));
        pb::Snapshot {
            version: self.version,
            epoch: self.epoch,
            created_at: Some(timestamp_from_millis(self.created_at_ms)),
            providers: self.providers.values().map(pb::Provider::from).collect(),
            models: self
                .targets
                .iter()
                .map(|t| pb::Model::from(&t.spec))
                .collect(),
            strategies: strategies.into_iter().map(pb::Strategy::from).collect(),
            default_strategy: self.default_strategy.clone(),
        }
    }
}

impl TryFrom<pb::Snapshot> for RoutingSnapshot {
    type Error = ValidationError;

    fn try_from(s: pb::Snapshot) -> Result<Self, Self::Error> {
        let wrap = |e: ValidationError| e.within("snapshot");
        let providers = s
            .providers
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                ProviderSpec::try_from(p).map_err(|e| e.within(&format!("providers[{i}]")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(wrap)?;
        let models = s
            .models
            .into_iter()
            .enumerate()
            .map(|(i, m)| ModelSpec::try_from(m).map_err(|e| e.within(&format!("models[{i}]"))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(wrap)?;
        let strategies = s
            .strategies
            .into_iter()
            .enumerate()
            .map(|(i, st)| {
                StrategySpec::try_from(st).map_err(|e| e.within(&format!("strategies[{i}]")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(wrap)?;
        let created_at_ms = s
            .created_at
            .as_ref()
            .map(timestamp_to_millis)
            .unwrap_or_default();
        Self::new(
            s.version,
            s.epoch,
            created_at_ms,
            providers,
            models,
            strategies,
            s.default_strategy,
        )
        .map_err(wrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Capabilities, ProviderKind, SimulatedParams, Tier, builtin_strategies};

    fn sim(name: &str) -> ProviderSpec {
        ProviderSpec {
            name: name.into(),
            kind: ProviderKind::Simulated,
            base_url: String::new(),
            api_key_ref: String::new(),
            headers: BTreeMap::new(),
            enabled: true,
            simulated: Some(SimulatedParams {
                seed: 7,
                first_token_latency_ms: 5,
                tokens_per_second: 100,
                failure_rate: 0.0,
                output_tokens: 4,
            }),
        }
    }

    fn model(provider: &str, name: &str) -> ModelSpec {
        ModelSpec {
            provider: provider.into(),
            name: name.into(),
            family: "sim".into(),
            capabilities: Capabilities {
                streaming: true,
                ..Capabilities::default()
            },
            context_window: 4096,
            input_price_per_mtok: 0.1,
            output_price_per_mtok: 0.2,
            region: String::new(),
            tier: Tier::Economy,
            aliases: vec![],
            enabled: true,
        }
    }

    #[test]
    fn wire_round_trip_keeps_everything() {
        let snap = RoutingSnapshot::new(
            3,
            1,
            1_700_000_000_000,
            vec![sim("b"), sim("a")],
            vec![model("b", "m1"), model("a", "m2")],
            builtin_strategies(),
            "balanced".into(),
        )
        .unwrap();
        assert_eq!(snap.targets[0].id, "a/m2");
        let back = RoutingSnapshot::try_from(snap.to_wire()).unwrap();
        assert_eq!(back, snap);
    }

    #[test]
    fn dangling_provider_reference_is_rejected_with_its_path() {
        let wire = pb::Snapshot {
            version: 1,
            providers: vec![pb::Provider::from(&sim("a"))],
            models: vec![
                pb::Model::from(&model("a", "m")),
                pb::Model::from(&model("ghost", "m")),
            ],
            strategies: builtin_strategies()
                .iter()
                .map(pb::Strategy::from)
                .collect(),
            default_strategy: "balanced".into(),
            ..Default::default()
        };
        let err = RoutingSnapshot::try_from(wire).unwrap_err();
        assert_eq!(err.field, "snapshot.models[1].provider");
    }

    #[test]
    fn unknown_default_strategy_and_zero_version_are_rejected() {
        let err =
            RoutingSnapshot::new(1, 0, 0, vec![], vec![], builtin_strategies(), "nope".into())
                .unwrap_err();
        assert_eq!(err.field, "default_strategy");
        let err = RoutingSnapshot::new(
            0,
            0,
            0,
            vec![],
            vec![],
            builtin_strategies(),
            "balanced".into(),
        )
        .unwrap_err();
        assert_eq!(err.field, "version");
    }

    #[test]
    fn duplicate_targets_are_rejected() {
        let err = RoutingSnapshot::new(
            1,
            0,
            0,
            vec![sim("a")],
            vec![model("a", "m"), model("a", "m")],
            builtin_strategies(),
            "balanced".into(),
        )
        .unwrap_err();
        assert_eq!(err.field, "models");
    }
}

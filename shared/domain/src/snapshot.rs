//! The routing snapshot: an immutable, versioned, validated view of the registry
//! that data planes score and execute against.

use std::collections::{BTreeMap, HashMap};

use switchyard_proto::v1 as pb;

use crate::{
    KeyGrant, ModelSpec, ProviderSpec, StrategySpec, TargetTelemetry, TracePayload,
    ValidationError, WorkspaceSpec, timestamp_from_millis, timestamp_to_millis,
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
    /// Workspaces with a policy; any other workspace is unrestricted.
    pub workspaces: HashMap<String, WorkspaceSpec>,
    pub telemetry: Telemetry,
    /// What traces keep of requests and answers.
    pub trace_payload: TracePayload,
    /// Working API keys by the SHA-256 of their secret.
    pub keys: HashMap<[u8; 32], KeyGrant>,
}

/// Fleet telemetry by target id, with its age limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Telemetry {
    pub targets: HashMap<String, TargetTelemetry>,
    /// When it was computed; 0 when there is none.
    pub computed_at_ms: i64,
    /// Past `computed_at_ms + stale_after_ms` it is not to be trusted.
    pub stale_after_ms: u64,
    /// How often this node probes each target marked `probe`; 0 for never.
    pub probe_interval_ms: u64,
    /// Data planes following the control plane when it was computed (0 when
    /// unknown): each enforces its share of rate limits while Redis is down.
    pub data_planes: u32,
}

impl Telemetry {
    /// Whether `self` says something routing must hear at once compared with
    /// `published`: a target appeared or went, or its state, until-time or
    /// probe flag changed, or the probe interval did. (Numbers alone moving do not.)
    pub fn verdicts_differ(&self, published: &Telemetry) -> bool {
        published.targets.len() != self.targets.len()
            || self.targets.iter().any(|(id, t)| {
                published.targets.get(id).is_none_or(|o| {
                    (o.state, o.state_until_ms, o.probe) != (t.state, t.state_until_ms, t.probe)
                })
            })
            || published.probe_interval_ms != self.probe_interval_ms
            || published.data_planes != self.data_planes
    }

    /// The telemetry of `target_id` if it is fresh at `now_ms`.
    pub fn fresh(&self, target_id: &str, now_ms: i64) -> Option<&TargetTelemetry> {
        let age = now_ms.saturating_sub(self.computed_at_ms);
        if self.computed_at_ms == 0
            || age < 0
            || u64::try_from(age).unwrap_or(u64::MAX) > self.stale_after_ms
        {
            return None;
        }
        self.targets.get(target_id)
    }
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
            workspaces: HashMap::new(),
            telemetry: Telemetry::default(),
            trace_payload: TracePayload::default(),
            keys: HashMap::new(),
        })
    }

    /// Adds workspace policies, checking that each default strategy exists and
    /// is usable by its workspace.
    pub fn with_workspaces(
        mut self,
        workspaces: Vec<WorkspaceSpec>,
    ) -> Result<Self, ValidationError> {
        for (i, w) in workspaces.into_iter().enumerate() {
            let field = format!("workspaces[{i}]");
            w.validate().map_err(|e| e.within(&field))?;
            if !w.default_strategy.is_empty()
                && self.strategy_for(&w.name, &w.default_strategy).is_none()
            {
                return Err(ValidationError::new(
                    format!("{field}.default_strategy"),
                    format!(
                        "unknown strategy {:?} for workspace {:?}",
                        w.default_strategy, w.name
                    ),
                ));
            }
            if self.workspaces.contains_key(&w.name) {
                return Err(ValidationError::new(
                    field,
                    format!("duplicate workspace {:?}", w.name),
                ));
            }
            self.workspaces.insert(w.name.clone(), w);
        }
        Ok(self)
    }

    /// Adds fleet telemetry; entries for unknown targets are dropped (the target
    /// went away since the telemetry was computed).
    #[must_use]
    pub fn with_trace_payload(mut self, trace_payload: TracePayload) -> Self {
        self.trace_payload = trace_payload;
        self
    }

    pub fn with_telemetry(mut self, mut telemetry: Telemetry) -> Self {
        telemetry
            .targets
            .retain(|id, _| self.targets.iter().any(|t| &t.id == id));
        self.telemetry = telemetry;
        self
    }

    /// Adds the working API keys; two with one secret are refused.
    pub fn with_keys(mut self, keys: Vec<KeyGrant>) -> Result<Self, ValidationError> {
        for (i, k) in keys.into_iter().enumerate() {
            let field = format!("keys[{i}]");
            k.validate().map_err(|e| e.within(&field))?;
            if self.keys.insert(k.secret_sha256, k).is_some() {
                return Err(ValidationError::new(field, "two keys share one secret"));
            }
        }
        Ok(self)
    }

    /// What traces of `workspace` keep: its own policy, else the global one.
    pub fn trace_payload_for(&self, workspace: &str) -> TracePayload {
        self.workspaces
            .get(workspace)
            .and_then(|w| w.trace_payload)
            .unwrap_or(self.trace_payload)
    }

    /// A strategy `workspace` may use: a global one, or one scoped to it.
    pub fn strategy_for(&self, workspace: &str, name: &str) -> Option<&StrategySpec> {
        self.strategies
            .get(name)
            .filter(|s| s.workspace.is_empty() || s.workspace == workspace)
    }

    pub fn to_wire(&self) -> pb::Snapshot {
        let mut strategies: Vec<&StrategySpec> = self.strategies.values().collect();
        strategies.sort_by(|a, b| a.name.cmp(&b.name));
        let mut workspaces: Vec<&WorkspaceSpec> = self.workspaces.values().collect();
        workspaces.sort_by(|a, b| a.name.cmp(&b.name));
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
            workspaces: workspaces.into_iter().map(pb::Workspace::from).collect(),
            telemetry: {
                let mut t: Vec<&TargetTelemetry> = self.telemetry.targets.values().collect();
                t.sort_by(|a, b| a.target_id.cmp(&b.target_id));
                t.into_iter().map(pb::TargetTelemetry::from).collect()
            },
            telemetry_at: (self.telemetry.computed_at_ms > 0)
                .then(|| timestamp_from_millis(self.telemetry.computed_at_ms)),
            telemetry_stale_after_ms: self.telemetry.stale_after_ms,
            probe_interval_ms: self.telemetry.probe_interval_ms,
            data_planes: self.telemetry.data_planes,
            trace_payload: self.trace_payload.to_wire().into(),
            keys: {
                let mut keys: Vec<&KeyGrant> = self.keys.values().collect();
                keys.sort_by(|a, b| a.id.cmp(&b.id));
                keys.into_iter().map(pb::KeyGrant::from).collect()
            },
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
        let workspaces = s
            .workspaces
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                WorkspaceSpec::try_from(w).map_err(|e| e.within(&format!("workspaces[{i}]")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(wrap)?;
        let keys = s
            .keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| KeyGrant::try_from(k).map_err(|e| e.within(&format!("keys[{i}]"))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(wrap)?;
        let mut targets = HashMap::new();
        for (i, t) in s.telemetry.into_iter().enumerate() {
            let t = TargetTelemetry::try_from(t)
                .map_err(|e| wrap(e.within(&format!("telemetry[{i}]"))))?;
            targets.insert(t.target_id.clone(), t);
        }
        let telemetry = Telemetry {
            targets,
            computed_at_ms: s
                .telemetry_at
                .as_ref()
                .map(timestamp_to_millis)
                .unwrap_or_default(),
            stale_after_ms: s.telemetry_stale_after_ms,
            probe_interval_ms: s.probe_interval_ms,
            data_planes: s.data_planes,
        };
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
        .and_then(|snapshot| snapshot.with_workspaces(workspaces))
        .and_then(|snapshot| snapshot.with_keys(keys))
        .map(|snapshot| {
            snapshot
                .with_telemetry(telemetry)
                .with_trace_payload(TracePayload::from_wire(s.trace_payload))
        })
        .map_err(wrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Capabilities, ProviderKind, SimulatedParams, Tier, WorkspaceSpec, builtin_strategies,
    };

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
            circuit: crate::CircuitMode::Auto,
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
        .unwrap()
        .with_workspaces(vec![WorkspaceSpec {
            allowed_regions: vec!["eu".into()],
            default_strategy: "cost".into(),
            trace_payload: Some(TracePayload::None),
            ..WorkspaceSpec::unrestricted("team")
        }])
        .unwrap()
        .with_telemetry(Telemetry {
            targets: ["a/m2", "gone/target"]
                .into_iter()
                .map(|id| {
                    let t = crate::TargetTelemetry {
                        target_id: id.into(),
                        attempts: 40,
                        success_rate: 0.9,
                        error_rate: 0.1,
                        rate_limited_rate: 0.0,
                        retry_rate: 0.05,
                        latency_p50_ms: 120.0,
                        latency_p99_ms: 900.0,
                        ttft_p50_ms: 80.0,
                        ttft_p95_ms: 160.0,
                        latency_p95_ms: 800.0,
                        confidence: crate::confidence(40),
                        strategies: vec![],
                        state: crate::HealthState::Ejected,
                        state_until_ms: 1_700_000_020_000,
                        probe: true,
                    };
                    (id.to_owned(), t)
                })
                .collect(),
            computed_at_ms: 1_700_000_000_000,
            stale_after_ms: 60_000,
            probe_interval_ms: 30_000,
            data_planes: 2,
        });
        assert_eq!(
            snap.telemetry.targets.len(),
            1,
            "telemetry of unknown targets is dropped"
        );
        assert!(snap.telemetry.fresh("a/m2", 1_700_000_030_000).is_some());
        assert!(
            snap.telemetry.fresh("a/m2", 1_700_000_061_000).is_none(),
            "stale telemetry is not trusted"
        );
        assert_eq!(snap.targets[0].id, "a/m2");
        let back = RoutingSnapshot::try_from(snap.to_wire()).unwrap();
        assert_eq!(back, snap);
    }

    #[test]
    fn only_verdicts_not_moving_numbers_differ() {
        let with = |state, attempts| Telemetry {
            targets: [(
                "a/m".to_owned(),
                crate::TargetTelemetry {
                    target_id: "a/m".into(),
                    attempts,
                    state,
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let published = with(crate::HealthState::Healthy, 10);
        assert!(!with(crate::HealthState::Healthy, 99).verdicts_differ(&published));
        assert!(with(crate::HealthState::Ejected, 10).verdicts_differ(&published));
        assert!(Telemetry::default().verdicts_differ(&published));
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
    fn scoped_strategies_are_visible_to_their_workspace_only() {
        let mut strategies = builtin_strategies();
        strategies.push(StrategySpec {
            workspace: "team".into(),
            ..strategies[0].clone()
        });
        strategies.last_mut().unwrap().name = "team-only".into();
        let snap =
            RoutingSnapshot::new(1, 0, 0, vec![], vec![], strategies, "balanced".into()).unwrap();
        assert!(snap.strategy_for("team", "team-only").is_some());
        assert!(snap.strategy_for("other", "team-only").is_none());
        assert!(snap.strategy_for("other", "cost").is_some());
        let other = WorkspaceSpec {
            default_strategy: "team-only".into(),
            ..WorkspaceSpec::unrestricted("other")
        };
        let err = snap.with_workspaces(vec![other]).unwrap_err();
        assert_eq!(err.field, "workspaces[0].default_strategy");
    }

    #[test]
    fn a_workspace_policy_overrides_the_global_trace_payload() {
        let snap = RoutingSnapshot::new(
            1,
            0,
            0,
            vec![],
            vec![],
            builtin_strategies(),
            "balanced".into(),
        )
        .unwrap()
        .with_trace_payload(TracePayload::Full)
        .with_workspaces(vec![
            WorkspaceSpec {
                trace_payload: Some(TracePayload::None),
                ..WorkspaceSpec::unrestricted("private")
            },
            WorkspaceSpec::unrestricted("plain"),
        ])
        .unwrap();
        assert_eq!(snap.trace_payload_for("private"), TracePayload::None);
        assert_eq!(snap.trace_payload_for("plain"), TracePayload::Full);
        assert_eq!(snap.trace_payload_for("unregistered"), TracePayload::Full);
        let back = RoutingSnapshot::try_from(snap.to_wire()).unwrap();
        assert_eq!(back.trace_payload_for("private"), TracePayload::None);
        assert_eq!(back.trace_payload_for("plain"), TracePayload::Full);
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

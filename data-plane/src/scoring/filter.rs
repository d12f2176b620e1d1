//! Eligibility: which targets may serve a request at all, and why not.

use std::fmt;

use switchyard_domain::{HealthState, Target, WorkspaceSpec};

use crate::breaker;
use crate::snapshot::LiveSnapshot;
use crate::workload::WorkloadProfile;

/// Why a target that serves the requested model cannot serve this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ineligibility {
    ProviderDisabled(String),
    TargetDisabled,
    MissingCapability(&'static str),
    ContextTooSmall {
        window: u32,
        needed: u64,
    },
    RegionNotAllowed {
        region: String,
        workspace: String,
    },
    /// This node's circuit breaker for the target is open until then (Unix ms).
    CircuitOpen {
        until_ms: i64,
    },
    /// An operator forced the target's circuit open in the registry.
    CircuitForcedOpen,
    /// The provider cannot be called from this node (no adapter, no credentials).
    Unavailable(String),
    /// The fleet ejected or rate-limited the target until then (Unix ms).
    FleetSkipped {
        state: HealthState,
        until_ms: i64,
    },
}

/// 128000 -> "128k", 12345 -> "12.3k", 900 -> "900".
pub fn tokens(n: u64) -> String {
    if n < 1000 {
        n.to_string()
    } else if n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        format!("{:.1}k", n as f64 / 1000.0)
    }
}

impl fmt::Display for Ineligibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ProviderDisabled(p) => write!(f, "provider {p} is disabled"),
            Self::TargetDisabled => f.write_str("target is disabled"),
            Self::MissingCapability(c) => write!(f, "missing capability: {c}"),
            Self::ContextTooSmall { window, needed } => {
                write!(
                    f,
                    "context window {} < {} needed",
                    tokens(u64::from(*window)),
                    tokens(*needed)
                )
            }
            Self::RegionNotAllowed { region, workspace } => {
                let region = if region.is_empty() {
                    "unspecified"
                } else {
                    region
                };
                write!(
                    f,
                    "region {region} is not allowed for workspace {workspace}"
                )
            }
            Self::CircuitOpen { until_ms } => write!(f, "circuit open until {until_ms} (Unix ms)"),
            Self::CircuitForcedOpen => f.write_str("circuit forced open by operator"),
            Self::Unavailable(reason) => f.write_str(reason),
            Self::FleetSkipped { state, until_ms } => {
                write!(
                    f,
                    "{} by the fleet until {until_ms} (Unix ms)",
                    state.as_str()
                )
            }
        }
    }
}

/// The first reason `target` cannot serve `workload`, if any.
pub fn check(
    snapshot: &LiveSnapshot,
    target: &Target,
    workload: &WorkloadProfile,
    workspace: &WorkspaceSpec,
    circuit: breaker::State,
) -> Option<Ineligibility> {
    match circuit {
        breaker::State::Open { until_ms } => return Some(Ineligibility::CircuitOpen { until_ms }),
        breaker::State::ForcedOpen => return Some(Ineligibility::CircuitForcedOpen),
        breaker::State::Closed | breaker::State::HalfOpen | breaker::State::ForcedClosed => {}
    }
    let spec = &target.spec;
    match snapshot.routing.providers.get(&spec.provider) {
        Some(provider) if !provider.enabled => {
            return Some(Ineligibility::ProviderDisabled(provider.name.clone()));
        }
        _ => {}
    }
    if !spec.enabled {
        return Some(Ineligibility::TargetDisabled);
    }
    let needs = &workload.capabilities;
    let has = &spec.capabilities;
    for (needed, present, name) in [
        (needs.streaming, has.streaming, "streaming"),
        (needs.tools, has.tools, "tools"),
        (needs.vision, has.vision, "vision"),
        (needs.json_output, has.json_output, "json_output"),
    ] {
        if needed && !present {
            return Some(Ineligibility::MissingCapability(name));
        }
    }
    if !workspace.allowed_regions.is_empty() && !workspace.allowed_regions.contains(&spec.region) {
        return Some(Ineligibility::RegionNotAllowed {
            region: spec.region.clone(),
            workspace: workspace.name.clone(),
        });
    }
    let needed = workload.context_needed();
    if needed > u64::from(spec.context_window) {
        return Some(Ineligibility::ContextTooSmall {
            window: spec.context_window,
            needed,
        });
    }
    snapshot
        .endpoints
        .get(&spec.provider)
        .and_then(|e| e.unavailable_reason())
        .map(|reason| Ineligibility::Unavailable(reason.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_counts_read_like_people_write_them() {
        assert_eq!(tokens(900), "900");
        assert_eq!(tokens(8000), "8k");
        assert_eq!(tokens(12_345), "12.3k");
        assert_eq!(tokens(128_000), "128k");
        let e = Ineligibility::ContextTooSmall {
            window: 8000,
            needed: 12_000,
        };
        assert_eq!(e.to_string(), "context window 8k < 12k needed");
    }
}

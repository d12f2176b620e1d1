//! The snapshot a data plane routes on: the control plane's routing snapshot plus
//! this node's view of each provider (secrets resolved locally). Immutable; a
//! new version replaces it whole behind one `ArcSwap`.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use switchyard_domain::RoutingSnapshot;

use crate::providers::Endpoint;

#[derive(Debug)]
pub struct LiveSnapshot {
    pub routing: RoutingSnapshot,
    /// By provider name.
    pub(crate) endpoints: HashMap<String, Endpoint>,
}

impl LiveSnapshot {
    pub fn prepare(routing: RoutingSnapshot) -> Self {
        let endpoints = routing
            .providers
            .values()
            .map(|spec| (spec.name.clone(), Endpoint::prepare(spec)))
            .collect();
        Self { routing, endpoints }
    }

    pub fn version(&self) -> u64 {
        self.routing.version
    }
}

/// The current snapshot; empty until the first one arrives.
pub type SnapshotCell = Arc<ArcSwapOption<LiveSnapshot>>;

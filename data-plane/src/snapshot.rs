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

/// Resolves every provider's secret again (a rotated key in a mounted file,
/// a key file that appeared) and serves the same snapshot with them. Returns
/// the providers callable before and after. A newer snapshot arriving
/// meanwhile wins: it resolved its secrets itself.
pub fn reresolve_credentials(cell: &SnapshotCell) -> Option<(usize, usize)> {
    let current = cell.load_full()?;
    let fresh = Arc::new(LiveSnapshot::prepare(current.routing.clone()));
    let callable = |s: &LiveSnapshot| s.endpoints.values().filter(|e| e.is_callable()).count();
    let counts = (callable(&current), callable(&fresh));
    let previous = cell.compare_and_swap(&current, Some(fresh));
    let swapped = previous
        .as_ref()
        .is_some_and(|previous| Arc::ptr_eq(previous, &current));
    swapped.then_some(counts)
}

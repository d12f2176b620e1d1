//! WhatIf over the newest stored traces: read back a page at a time and
//! re-weighed under the cost strategy's weights, exactly as the RPC does
//! (`switchyard_control_plane::whatif::over_window`), without gRPC.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use switchyard_control_plane::store::Store;
use switchyard_control_plane::whatif;
use switchyard_domain::StrategyWeights;

#[derive(Debug, Clone)]
pub struct WhatIfTimed {
    /// Traces in the window.
    pub traces: u64,
    /// Of them, re-scored (they carried candidates) and moved to another target.
    pub considered: u64,
    pub changed: u64,
    /// Wall time of each run.
    pub times: Vec<Duration>,
}

/// Runs WhatIf `runs` times over `[start_ms, end_ms)`.
pub async fn run(
    store: &Store,
    traces: u64,
    start_ms: i64,
    end_ms: i64,
    runs: usize,
) -> anyhow::Result<WhatIfTimed> {
    // The built-in `cost` strategy's weights.
    let weights = StrategyWeights {
        quality: 0.3,
        speed: 0.3,
        cost: 3.0,
        ..StrategyWeights::default()
    };
    let mut timed = WhatIfTimed {
        traces,
        considered: 0,
        changed: 0,
        times: Vec::with_capacity(runs),
    };
    for _ in 0..runs {
        let began = Instant::now();
        let report = whatif::over_window(store, start_ms, end_ms, weights)
            .await
            .context("WhatIf over the newest traces")?;
        timed.times.push(began.elapsed());
        timed.considered = report.traces_considered;
        timed.changed = report.traces_changed;
    }
    Ok(timed)
}

//! ListTraces: the first page of the filters people use, each run many times
//! one after another through `Store::list_traces`, with a different
//! workspace, provider, model or hour each time where the filter has one.

use std::time::Duration;

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use switchyard_control_plane::store::{Store, TraceFilter};
use switchyard_proto::v1 as pb;
use tokio::time::Instant;

use super::fleet::{MODELS, PROVIDERS, WORKSPACES};

const HOUR_MS: i64 = 3_600_000;

/// The filters timed, in the report's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    Newest,
    Hour,
    Workspace,
    Provider,
    Model,
    Failed,
    WorkspaceHour,
    SecondPage,
}

pub const QUERIES: [Query; 8] = [
    Query::Newest,
    Query::Hour,
    Query::Workspace,
    Query::Provider,
    Query::Model,
    Query::Failed,
    Query::WorkspaceHour,
    Query::SecondPage,
];

impl Query {
    pub fn label(self) -> &'static str {
        match self {
            Self::Newest => "no filter (newest page)",
            Self::Hour => "one hour (`start`, `end`)",
            Self::Workspace => "one workspace",
            Self::Provider => "one provider",
            Self::Model => "one model",
            Self::Failed => "outcome = FAILED",
            Self::WorkspaceHour => "one workspace and one hour",
            Self::SecondPage => "second page (cursor of the newest page)",
        }
    }
}

/// What the filters draw from.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Receive times of the oldest and the newest stored trace, Unix ms.
    pub first_ms: i64,
    pub last_ms: i64,
    pub page: u32,
    /// The cursor under the newest page.
    pub after_newest: Option<(i64, String)>,
}

impl Stored {
    fn filter(&self, query: Query, rng: &mut StdRng) -> TraceFilter {
        let limit = self.page;
        let hour = |rng: &mut StdRng| {
            let start =
                rng.random_range(self.first_ms..(self.last_ms - HOUR_MS).max(self.first_ms + 1));
            (Some(start), Some(start + HOUR_MS))
        };
        let workspace =
            |rng: &mut StdRng| Some(WORKSPACES[rng.random_range(0..WORKSPACES.len())].to_owned());
        match query {
            Query::Newest => TraceFilter {
                limit,
                ..Default::default()
            },
            Query::Hour => {
                let (start_ms, end_ms) = hour(rng);
                TraceFilter {
                    start_ms,
                    end_ms,
                    limit,
                    ..Default::default()
                }
            }
            Query::Workspace => TraceFilter {
                workspace: workspace(rng),
                limit,
                ..Default::default()
            },
            Query::Provider => TraceFilter {
                provider: Some(PROVIDERS[rng.random_range(0..PROVIDERS.len())].to_owned()),
                limit,
                ..Default::default()
            },
            Query::Model => TraceFilter {
                model: Some(MODELS[rng.random_range(0..MODELS.len())].name.to_owned()),
                limit,
                ..Default::default()
            },
            Query::Failed => TraceFilter {
                outcome: Some(pb::Outcome::Failed.into()),
                limit,
                ..Default::default()
            },
            Query::WorkspaceHour => {
                let (start_ms, end_ms) = hour(rng);
                TraceFilter {
                    start_ms,
                    end_ms,
                    workspace: workspace(rng),
                    limit,
                    ..Default::default()
                }
            }
            Query::SecondPage => TraceFilter {
                after: self.after_newest.clone(),
                limit,
                ..Default::default()
            },
        }
    }
}

/// The timings of one filter.
#[derive(Debug, Clone)]
pub struct Timed {
    pub query: Query,
    /// Each call, sorted.
    pub samples: Vec<Duration>,
    /// Rows of each page, sorted.
    pub rows: Vec<usize>,
}

/// Runs every filter `warmup` times untimed, then `runs` times timed, all
/// filters of one round before the next round.
pub async fn run(
    store: &Store,
    stored: &Stored,
    runs: usize,
    warmup: usize,
    seed: u64,
) -> anyhow::Result<Vec<Timed>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut timed: Vec<Timed> = QUERIES
        .iter()
        .map(|&query| Timed {
            query,
            samples: Vec::with_capacity(runs),
            rows: Vec::with_capacity(runs),
        })
        .collect();
    for round in 0..warmup + runs {
        for entry in &mut timed {
            let filter = stored.filter(entry.query, &mut rng);
            let call = Instant::now();
            let page = store
                .list_traces(&filter)
                .await
                .with_context(|| format!("listing traces ({})", entry.query.label()))?;
            let took = call.elapsed();
            if round >= warmup {
                entry.samples.push(took);
                entry.rows.push(page.traces.len());
            }
        }
    }
    for entry in &mut timed {
        entry.samples.sort_unstable();
        entry.rows.sort_unstable();
    }
    Ok(timed)
}

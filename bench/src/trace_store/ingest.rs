//! Ingestion: concurrent writers storing batches through
//! `Store::insert_traces`, as the control plane does for each batch a data
//! plane reports, counted every second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use switchyard_control_plane::store::Store;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::corpus::Corpus;
use super::cpu;

/// What one ingestion run stores.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// The corpus numbers of the traces: `first..first + traces`.
    pub first: u64,
    pub traces: u64,
    pub writers: usize,
    pub batch: usize,
}

/// One timed ingestion run.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub load: Load,
    pub elapsed: Duration,
    /// Traces committed in each whole second of the run.
    pub per_second: Vec<f64>,
    /// Each `insert_traces` call, from the call to its commit.
    pub batches: Vec<Duration>,
    /// Time the writers spent building their batches (copying templates),
    /// summed over all writers.
    pub building: Duration,
    /// Attempt rows the stored traces carry.
    pub attempts: u64,
    pub cpu: cpu::Used,
}

impl Ingested {
    pub fn rate(&self) -> f64 {
        self.load.traces as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// What a writer did.
#[derive(Debug, Default)]
struct Written {
    batches: Vec<Duration>,
    building: Duration,
    attempts: u64,
}

/// Stores `load.traces` traces of `corpus` from `load.writers` concurrent
/// writers, each taking the next batch of `load.batch` until none is left.
/// Every trace must be new: a duplicate means two ids collided. `postmaster`
/// is the Postgres server's main process, when it runs on this machine.
pub async fn run(
    store: &Store,
    corpus: &Arc<Corpus>,
    load: Load,
    postmaster: Option<u32>,
) -> anyhow::Result<Ingested> {
    ensure!(
        load.writers > 0 && load.batch > 0,
        "writers and batch size must be at least 1"
    );
    let batches = load.traces.div_ceil(load.batch as u64);
    let next = Arc::new(AtomicU64::new(0));
    let committed = Arc::new(AtomicU64::new(0));
    let cpu = cpu::start(postmaster);
    let started = Instant::now();
    let mut writers = JoinSet::new();
    for _ in 0..load.writers {
        let (store, corpus) = (store.clone(), Arc::clone(corpus));
        let (next, committed) = (Arc::clone(&next), Arc::clone(&committed));
        writers.spawn(async move {
            let mut written = Written::default();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= batches {
                    return anyhow::Ok(written);
                }
                let offset = index * load.batch as u64;
                let len = (load.traces - offset).min(load.batch as u64);
                let building = Instant::now();
                let traces = corpus.batch(load.first + offset, usize::try_from(len)?);
                written.building += building.elapsed();
                written.attempts += traces.iter().map(|t| t.attempts.len() as u64).sum::<u64>();
                let call = Instant::now();
                let outcome = store
                    .insert_traces(&traces, &[])
                    .await
                    .with_context(|| format!("storing batch {index} of {batches}"))?;
                written.batches.push(call.elapsed());
                if outcome.inserted != len {
                    bail!(
                        "batch {index} stored {} of {len} traces ({} already there)",
                        outcome.inserted,
                        outcome.duplicates
                    );
                }
                committed.fetch_add(len, Ordering::Relaxed);
            }
        });
    }

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = (started, 0u64);
    let mut per_second = Vec::new();
    let mut done = Written::default();
    while !writers.is_empty() {
        tokio::select! {
            joined = writers.join_next() => {
                if let Some(joined) = joined {
                    let written = joined.context("a writer task failed")??;
                    done.batches.extend(written.batches);
                    done.building += written.building;
                    done.attempts += written.attempts;
                }
            }
            now = tick.tick() => {
                let count = committed.load(Ordering::Relaxed);
                let (at, before) = last;
                let seconds = now.duration_since(at).as_secs_f64();
                if seconds >= 0.5 {
                    per_second.push((count - before) as f64 / seconds);
                    last = (now, count);
                }
            }
        }
    }
    let elapsed = started.elapsed();
    Ok(Ingested {
        load,
        elapsed,
        per_second,
        batches: done.batches,
        building: done.building,
        attempts: done.attempts,
        cpu: cpu.used(elapsed),
    })
}

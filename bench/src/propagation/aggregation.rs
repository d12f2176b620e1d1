//! Aggregation throughput, in process and on one core: simulated traffic of
//! `rate` trace records a second spread over data-plane nodes and targets,
//! pre-aggregated the way data planes do it (one window per node per target
//! per second: counts by outcome, every record's latency, time to first token
//! and time per output token added into quantile sketches, then the window
//! put into its wire form), then what the control plane does with the
//! windows (`WindowRecord::try_from` the wire form, `Aggregator::ingest`) and
//! one `Aggregator::evaluate` of every target per simulated second.
//!
//! The aggregator first gets `history` simulated seconds untimed, so its
//! five-minute window is as full as in steady state; then `seconds` more are
//! timed stage by stage. Records are generated outside the timed stages.
//! Not included: gRPC, and the control plane's storing of windows in its
//! database and reading them back.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use switchyard_control_plane::health::{
    Aggregator, Counts, HealthConfig, TargetInfo, WindowRecord,
};
use switchyard_domain::timestamp_from_millis;
use switchyard_proto::v1 as pb;

/// Simulated time starts here (Unix ms), on a second boundary.
const EPOCH_MS: i64 = 1_800_000_000_000;
/// When, after a second ends, its windows are judged.
const EVALUATE_AFTER_MS: i64 = 250;
/// Targets per model name: peers for the ejection cap.
const TARGETS_PER_MODEL: usize = 5;
/// Probes for idle targets start after this long without traffic.
const PROBE_IDLE: Duration = Duration::from_secs(60);

const TRANSIENT: i32 = pb::ErrorClass::Transient as i32;
const TIMEOUT: i32 = pb::ErrorClass::Timeout as i32;
const RATE_LIMITED: i32 = pb::ErrorClass::RateLimited as i32;

/// What to simulate.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Trace records (attempts) a second, over the whole fleet.
    pub rate: usize,
    pub nodes: usize,
    pub targets: usize,
    /// Simulated seconds fed untimed first.
    pub history: usize,
    /// Simulated seconds timed.
    pub seconds: usize,
}

/// The timed stages of one simulated second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Second {
    pub records: usize,
    pub windows: usize,
    /// Data planes: every record into its window's counts and sketches.
    pub record_adds: Duration,
    /// Data planes: closing the windows into their wire form.
    pub close: Duration,
    /// Control plane: wire form to `WindowRecord`.
    pub decode: Duration,
    /// Control plane: `Aggregator::ingest` of every window.
    pub ingest: Duration,
    /// Control plane: one `Aggregator::evaluate` of every target.
    pub evaluate: Duration,
}

impl Second {
    pub fn data_plane(&self) -> Duration {
        self.record_adds + self.close
    }

    pub fn control_plane(&self) -> Duration {
        self.decode + self.ingest + self.evaluate
    }

    pub fn total(&self) -> Duration {
        self.data_plane() + self.control_plane()
    }
}

/// The outcome of the simulation.
#[derive(Debug, Clone)]
pub struct Measured {
    pub plan: Plan,
    /// One entry per timed second.
    pub seconds: Vec<Second>,
    /// Targets by state after the last evaluation.
    pub states: BTreeMap<&'static str, usize>,
}

/// One simulated attempt.
#[derive(Debug, Clone, Copy)]
struct Record {
    node: usize,
    target: usize,
    error_class: Option<i32>,
    latency_ms: f64,
    ttft_ms: f64,
    tpot_ms: f64,
    retry: bool,
}

/// splitmix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Log-normal with the given median and spread (sigma of the log).
    fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        let z = (-2.0 * self.unit().ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos();
        median * (sigma * z).exp()
    }
}

/// How a target behaves: most are healthy; a few are slow, flaky, rate
/// limited or failing, so the health states have something to judge.
fn outcome(rng: &mut Rng, target: usize) -> Option<i32> {
    let roll = rng.unit();
    let (transient, timeout, limited) = match target % 17 {
        3 => (0.70, 0.05, 0.0),  // failing: ejected
        7 => (0.0, 0.0, 0.60),   // rate limited
        11 => (0.15, 0.05, 0.0), // flaky: degraded against its peers
        _ => (0.005, 0.002, 0.003),
    };
    if roll < transient {
        Some(TRANSIENT)
    } else if roll < transient + timeout {
        Some(TIMEOUT)
    } else if roll < transient + timeout + limited {
        Some(RATE_LIMITED)
    } else {
        None
    }
}

fn generate(rng: &mut Rng, plan: &Plan, out: &mut Vec<Record>) {
    out.clear();
    for _ in 0..plan.rate {
        let target = rng.below(plan.targets);
        let error_class = outcome(rng, target);
        // Each target has its own typical speed.
        let median = 400.0 + 60.0 * (target % 23) as f64;
        let latency_ms = rng.log_normal(median, 0.6);
        out.push(Record {
            node: rng.below(plan.nodes),
            target,
            error_class,
            latency_ms,
            ttft_ms: latency_ms * (0.1 + 0.3 * rng.unit()),
            tpot_ms: rng.log_normal(18.0, 0.4),
            retry: rng.unit() < 0.02,
        });
    }
}

/// One data plane's open windows, by target id, and its runs of failures
/// across windows: what its `WindowBuilder` keeps.
#[derive(Debug, Clone, Default)]
struct NodeWindows {
    open: HashMap<String, Counts>,
    runs: HashMap<String, u64>,
}

impl NodeWindows {
    fn add(&mut self, target_id: &str, r: &Record) {
        let counts = match self.open.get_mut(target_id) {
            Some(counts) => counts,
            None => self.open.entry(target_id.to_owned()).or_default(),
        };
        counts.attempts += 1;
        counts.retries += u64::from(r.retry);
        match r.error_class {
            None => {
                counts.successes += 1;
                counts.latency_ms.add(r.latency_ms);
                counts.ttft_ms.add(r.ttft_ms);
                counts.tpot_ms.add(r.tpot_ms);
                self.runs.remove(target_id);
            }
            Some(class) => {
                *counts.errors.entry(class).or_default() += 1;
                // A 429 says the target is busy, not failing.
                if class != RATE_LIMITED {
                    *self.runs.entry(target_id.to_owned()).or_default() += 1;
                }
            }
        }
    }

    /// Closes every open window into its wire form.
    fn drain<'a>(
        &'a mut self,
        node: &'a str,
        start_ms: i64,
        end_ms: i64,
    ) -> impl Iterator<Item = pb::HealthWindow> + 'a {
        let runs = &self.runs;
        self.open.drain().map(move |(target, counts)| {
            let run = runs.get(&target).copied().unwrap_or(0);
            wire(node, target, counts, run, start_ms, end_ms)
        })
    }
}

/// A closed window in the form a data plane sends it.
fn wire(
    node: &str,
    target: String,
    counts: Counts,
    consecutive_failures: u64,
    start_ms: i64,
    end_ms: i64,
) -> pb::HealthWindow {
    pb::HealthWindow {
        node_id: node.to_owned(),
        target_id: target,
        start: Some(timestamp_from_millis(start_ms)),
        end: Some(timestamp_from_millis(end_ms)),
        attempts: counts.attempts,
        successes: counts.successes,
        errors: counts
            .errors
            .into_iter()
            .map(|(error_class, count)| pb::ErrorCount { error_class, count })
            .collect(),
        retries: counts.retries,
        probes: counts.probes,
        latency_ms: Some(counts.latency_ms.to_wire()),
        ttft_ms: Some(counts.ttft_ms.to_wire()),
        tpot_ms: Some(counts.tpot_ms.to_wire()),
        consecutive_failures,
        ..Default::default()
    }
}

/// Runs the simulation; synchronous and single-threaded. Setting `cancel`
/// stops it within a simulated second.
pub fn run(plan: Plan, cancel: &AtomicBool) -> anyhow::Result<Measured> {
    anyhow::ensure!(
        plan.rate > 0 && plan.nodes > 0 && plan.targets > 0 && plan.seconds > 0,
        "aggregation: rate, nodes, targets and seconds must be at least 1"
    );
    let nodes: Vec<String> = (0..plan.nodes).map(|n| format!("dp-{n:02}")).collect();
    let target_ids: Vec<String> = (0..plan.targets)
        .map(|t| {
            format!(
                "provider-{}/model-{}",
                t % TARGETS_PER_MODEL,
                t / TARGETS_PER_MODEL
            )
        })
        .collect();
    let targets: Vec<TargetInfo> = target_ids
        .iter()
        .enumerate()
        .map(|(t, id)| TargetInfo {
            id: id.clone(),
            model: format!("model-{}", t / TARGETS_PER_MODEL),
            enabled: true,
        })
        .collect();
    let mut aggregator = Aggregator::new(HealthConfig::default(), PROBE_IDLE);
    let mut rng = Rng(0x5157_C4A7_D000_0001);
    let mut records = Vec::with_capacity(plan.rate);
    let mut open = vec![NodeWindows::default(); plan.nodes];
    let mut seconds = Vec::with_capacity(plan.seconds);
    let mut last_views = Vec::new();

    for s in 0..plan.history + plan.seconds {
        anyhow::ensure!(!cancel.load(Ordering::Relaxed), "aggregation cancelled");
        generate(&mut rng, &plan, &mut records);
        let start_ms = EPOCH_MS + s as i64 * 1000;
        let end_ms = start_ms + 1000;

        let t = Instant::now();
        for r in &records {
            open[r.node].add(&target_ids[r.target], r);
        }
        let record_adds = t.elapsed();

        let t = Instant::now();
        let mut sent = Vec::with_capacity(plan.nodes * plan.targets);
        for (node, windows) in nodes.iter().zip(open.iter_mut()) {
            sent.extend(windows.drain(node, start_ms, end_ms));
        }
        let close = t.elapsed();

        let t = Instant::now();
        let received = sent
            .iter()
            .map(WindowRecord::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("a simulated window was refused: {e}"))?;
        let decode = t.elapsed();

        let t = Instant::now();
        for record in &received {
            aggregator.ingest(record);
        }
        let ingest = t.elapsed();

        let t = Instant::now();
        let views = aggregator.evaluate(end_ms + EVALUATE_AFTER_MS, &targets);
        let evaluate = t.elapsed();

        if s >= plan.history {
            seconds.push(Second {
                records: records.len(),
                windows: received.len(),
                record_adds,
                close,
                decode,
                ingest,
                evaluate,
            });
        }
        last_views = views;
    }

    let mut states = BTreeMap::new();
    for view in &last_views {
        *states.entry(view.state.state.as_str()).or_default() += 1;
    }
    Ok(Measured {
        plan,
        seconds,
        states,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_simulation_judges_every_target_and_times_every_second() {
        let plan = Plan {
            rate: 2_000,
            nodes: 4,
            targets: 20,
            history: 3,
            seconds: 5,
        };
        let measured = run(plan, &AtomicBool::new(false)).unwrap();
        assert_eq!(measured.seconds.len(), 5);
        assert!(measured.seconds.iter().all(|s| s.records == 2_000));
        // 2,000 records over 80 node-target pairs: every pair has a window.
        assert!(measured.seconds.iter().all(|s| s.windows == 80));
        assert_eq!(measured.states.values().sum::<usize>(), 20);
        assert!(
            measured.states.contains_key("ejected"),
            "{:?}",
            measured.states
        );
    }
}

//! Switchyard as deployed, in virtual time: several data planes, each with
//! its own circuit breakers, local signals (peak-EWMA of time to first token
//! and attempts in flight relative to the usual level) and health-window
//! builder, scoring every request with the real `scoring::plan` on the
//! snapshot it last received, and each with a prober deciding what to probe
//! with the real `ProbeSchedule`; and one control plane that ingests their
//! windows into the real `Aggregator`, judges every target once a second, and
//! publishes snapshots by the publisher's rules. Every call into this code
//! takes the virtual time.
//!
//! Restated here, because the code is private or bound to the wall clock and
//! the network: the publisher's decision when to publish (private in the
//! control plane), the prober's loop around `ProbeSchedule::due` (a
//! wall-clock ticker spawning HTTP calls; what it does with a result is
//! restated from `Probe::run`), and the engine's loop over the chain (in
//! `engine`). The rest of the glue is clocks and transport delays.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use switchyard_control_plane::health::{Aggregator, HealthConfig, TargetInfo, WindowRecord};
use switchyard_data_plane::breaker::{Breakers, State};
use switchyard_data_plane::health::prober::ProbeSchedule;
use switchyard_data_plane::health::{InFlight, LocalSignals, Sample, WindowBuilder};
use switchyard_data_plane::providers::ErrorClass;
use switchyard_data_plane::request::ChatRequest;
use switchyard_data_plane::snapshot::LiveSnapshot;
use switchyard_domain::{HealthState, Telemetry};
use switchyard_proto::v1 as pb;

use super::engine::{AttemptRecord, Router};
use super::market::{Attempt, Market, Noise, OUTPUT_TOKENS, PROFILES};
use super::registry::{self, unix};

/// A data plane closes its health windows this often (`--health-window`).
pub const WINDOW_MS: i64 = 2_000;
/// Its reporter flushes every 100 ms; the window is stored by then.
pub const REPORT_MS: i64 = 100;
/// The control plane judges every target this often (aggregation interval).
pub const EVALUATE_MS: i64 = 1_000;
/// A registry write is published after this much quiet (the publisher's debounce).
pub const DEBOUNCE_MS: i64 = 20;
/// A published snapshot reaches a data plane this much later.
pub const PROPAGATION_MS: i64 = 100;
/// Telemetry whose numbers moved, but no verdict, is republished at most this often.
pub const TELEMETRY_REFRESH_MS: i64 = 5_000;
/// How long data planes may trust a snapshot's telemetry.
pub const STALE_AFTER_MS: u64 = 60_000;
/// The fleet probes each target marked for probing (idle this long, or
/// ejected) about this often; each node gets the interval times the number
/// of nodes (the control plane's defaults).
pub const PROBE_EVERY_MS: u64 = 30_000;
pub const PROBE_IDLE: Duration = Duration::from_secs(60);
/// The window the fleet's routing telemetry covers (the aggregator's
/// `WINDOWS[1]`, 60 s): what the scorer reads of a target's error rate.
pub const ROUTE_WINDOW_MS: i64 = 60_000;
/// A data plane's prober looks at its snapshot and breakers this often.
pub const PROBE_TICK_MS: i64 = 1_000;
/// Retry budget (the data plane's): earned per first attempt on a target,
/// banked up to a cap, one spent per retry; a fresh target starts full.
const RETRY_EARNED: f64 = 0.2;
const RETRY_CAP: f64 = 10.0;

/// What to switch off, for diagnostics: the two halves of the local
/// signals the scorer adds to a target's expected latency.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Count attempts in flight (`LocalSignals::start`).
    pub in_flight: bool,
    /// Feed the peak-EWMA of time to first token (`LocalSignals::observe_ttft`).
    pub peak_ewma: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            in_flight: true,
            peak_ewma: true,
        }
    }
}

struct Node {
    breakers: Breakers,
    signals: LocalSignals,
    windows: WindowBuilder,
    snapshot: Arc<LiveSnapshot>,
    retry_banks: Vec<f64>,
    in_flight: HashMap<u64, InFlight>,
    /// The prober's schedule, and how many times it has been asked (seeds its draws).
    probes: ProbeSchedule,
    probe_ticks: usize,
    /// Failures in a row per target, as the breaker counts them while closed.
    runs: Vec<u32>,
}

enum Job {
    Drain(usize),
    Deliver(Vec<pb::HealthWindow>),
    Evaluate,
    Publish,
    Arrive(usize, Arc<LiveSnapshot>),
    ProbeTick(usize),
    /// A probe's result: node, target, outcome.
    ProbeEnd(usize, usize, Attempt),
}

/// What happened inside, for the report.
#[derive(Debug, Default, Clone)]
pub struct Inside {
    pub snapshots: u64,
    /// Active probes sent, in all and to each target.
    pub probes: u64,
    pub probes_to: Vec<u64>,
    /// The fleet's verdict on each target whenever it changed: (virtual ms, target, state).
    pub verdicts: Vec<(i64, usize, HealthState)>,
    /// Breaker openings per target, all nodes together (virtual ms, target, node).
    pub openings: Vec<(i64, usize, usize)>,
    /// Breakers a closed breaker's failure opened with fewer than five
    /// failures in a row: the failure-ratio rule.
    pub ratio_openings: u64,
    /// Every breaker that closed again.
    pub closings: Vec<Closing>,
    /// Every failed probe: (virtual ms it ended, target).
    pub failed_probes: Vec<(i64, usize)>,
    /// The outage target as the data planes saw it when scoring requests in
    /// the minute before the outage.
    pub before: Before,
}

/// A breaker closing on a node, and the fleet's view of the target in that
/// node's snapshot at the time.
#[derive(Debug, Clone, Copy)]
pub struct Closing {
    pub at_ms: i64,
    pub target: usize,
    pub node: usize,
    /// Closed while its cool-down was still running (only a probe's
    /// success can; else an answer or a probe after the cool-down).
    pub cooling: bool,
    /// The fleet's error rate, attempts and confidence on the target.
    pub fleet: Option<(f64, u64, f64)>,
}

/// Sums over the requests scored in the minute before the outage, of what
/// the scoring node's local signals said of the outage target.
#[derive(Debug, Default, Clone, Copy)]
pub struct Before {
    pub requests: u64,
    pub in_flight: f64,
    /// How many were usually in flight there when an attempt started.
    pub usual_in_flight: f64,
    /// Its peak-EWMA of time to first token.
    pub ewma_ms: f64,
    /// What the in-flight count adds to its expected latency
    /// (`LocalView::cost_ms` less the EWMA; negative when below the usual level).
    pub added_ms: f64,
    /// Its true mean time to a whole answer.
    pub latency_ms: f64,
}

impl Before {
    pub fn mean(&self, sum: f64) -> f64 {
        sum / self.requests.max(1) as f64
    }
}

pub struct Switchyard {
    options: Options,
    nodes: Vec<Node>,
    ids: Vec<String>,
    index: HashMap<String, usize>,
    request: ChatRequest,
    aggregator: Aggregator,
    infos: Vec<TargetInfo>,
    /// Windows stored, waiting for the next evaluation.
    inbox: Vec<pb::HealthWindow>,
    latest: Telemetry,
    published: Telemetry,
    version: u64,
    jobs: BTreeMap<(i64, u64), Job>,
    seq: u64,
    inside: Inside,
}

impl Switchyard {
    pub fn new(market: &Market, options: Options) -> anyhow::Result<Self> {
        let start = -market.scenario.warmup_ms;
        let ids = registry::target_ids();
        let first = Arc::new(registry::snapshot(market, 1, start, Telemetry::default())?);
        let nodes = (0..market.scenario.nodes)
            .map(|n| Node {
                breakers: Breakers::default(),
                signals: LocalSignals::default(),
                windows: WindowBuilder::new(format!("dp-{n}"), unix(start)),
                snapshot: first.clone(),
                retry_banks: vec![RETRY_CAP; ids.len()],
                in_flight: HashMap::new(),
                probes: ProbeSchedule::default(),
                probe_ticks: 0,
                runs: vec![0; ids.len()],
            })
            .collect();
        let infos = PROFILES
            .iter()
            .zip(&ids)
            .map(|(p, id)| TargetInfo {
                id: id.clone(),
                // As the control plane passes them: peers share a model name.
                model: p.model.to_owned(),
                enabled: true,
            })
            .collect();
        let mut sim = Self {
            options,
            nodes,
            index: ids.iter().cloned().zip(0..).collect(),
            ids,
            request: registry::request(),
            aggregator: Aggregator::new(HealthConfig::default(), PROBE_IDLE),
            infos,
            inbox: Vec::new(),
            latest: Telemetry::default(),
            published: Telemetry::default(),
            version: 1,
            jobs: BTreeMap::new(),
            seq: 0,
            inside: Inside {
                snapshots: 1,
                probes_to: vec![0; PROFILES.len()],
                ..Inside::default()
            },
        };
        // Nodes close their windows staggered, as independent processes do.
        let stagger = WINDOW_MS / market.scenario.nodes.max(1) as i64;
        for n in 0..sim.nodes.len() {
            sim.schedule(start + WINDOW_MS + stagger * n as i64, Job::Drain(n));
            sim.schedule(start + PROBE_TICK_MS + 137 * n as i64, Job::ProbeTick(n));
        }
        sim.schedule(start + EVALUATE_MS + EVALUATE_MS / 4, Job::Evaluate);
        for at in market.price_changes() {
            sim.schedule(at + DEBOUNCE_MS, Job::Publish);
        }
        Ok(sim)
    }

    pub fn inside(&self) -> &Inside {
        &self.inside
    }

    fn schedule(&mut self, at: i64, job: Job) {
        self.seq += 1;
        self.jobs.insert((at, self.seq), job);
    }

    fn run_job(&mut self, market: &Market, now: i64, job: Job) -> anyhow::Result<()> {
        match job {
            Job::Drain(n) => {
                let windows = self.nodes[n].windows.drain(unix(now));
                if !windows.is_empty() {
                    self.schedule(now + REPORT_MS, Job::Deliver(windows));
                }
                self.schedule(now + WINDOW_MS, Job::Drain(n));
            }
            Job::Deliver(windows) => self.inbox.extend(windows),
            Job::Evaluate => {
                self.evaluate(market, now)?;
                self.schedule(now + EVALUATE_MS, Job::Evaluate);
            }
            Job::Publish => self.publish(market, now)?,
            Job::ProbeTick(n) => {
                self.probe_tick(market, n, now);
                self.schedule(now + PROBE_TICK_MS, Job::ProbeTick(n));
            }
            Job::ProbeEnd(n, target, outcome) => {
                self.probe_ended(n, target, outcome, now);
            }
            Job::Arrive(n, snapshot) => {
                let node = &mut self.nodes[n];
                if snapshot.version() > node.snapshot.version() {
                    node.breakers.apply_overrides(&snapshot.routing);
                    node.snapshot = snapshot;
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, market: &Market, now: i64) -> anyhow::Result<()> {
        for window in self.inbox.drain(..) {
            let record = WindowRecord::try_from(&window).with_context(|| {
                format!("the aggregator refused a window of {}", window.node_id)
            })?;
            self.aggregator.ingest(&record);
        }
        let views = self.aggregator.evaluate(unix(now), &self.infos);
        for view in &views {
            let Some(&t) = self.index.get(&view.target_id) else {
                continue;
            };
            let before = self
                .latest
                .targets
                .get(&view.target_id)
                .map_or(HealthState::Healthy, |o| o.state);
            if view.state.state != before {
                self.inside.verdicts.push((now, t, view.state.state));
            }
        }
        let telemetry = Telemetry {
            targets: views
                .into_iter()
                .map(|v| (v.target_id, v.telemetry))
                .collect(),
            computed_at_ms: unix(now),
            stale_after_ms: STALE_AFTER_MS,
            probe_interval_ms: PROBE_EVERY_MS * self.nodes.len() as u64,
            data_planes: u32::try_from(self.nodes.len()).unwrap_or(u32::MAX),
        };
        let age = telemetry.computed_at_ms - self.published.computed_at_ms;
        let stale_half = i64::try_from(STALE_AFTER_MS / 2).unwrap_or(i64::MAX);
        let due = telemetry.verdicts_differ(&self.published)
            || (self.published.targets != telemetry.targets && age >= TELEMETRY_REFRESH_MS)
            || (!telemetry.targets.is_empty() && age >= stale_half);
        self.latest = telemetry;
        if due {
            self.publish(market, now)?;
        }
        Ok(())
    }

    fn publish(&mut self, market: &Market, now: i64) -> anyhow::Result<()> {
        self.version += 1;
        self.inside.snapshots += 1;
        let snapshot = Arc::new(registry::snapshot(
            market,
            self.version,
            now,
            self.latest.clone(),
        )?);
        self.published = self.latest.clone();
        for n in 0..self.nodes.len() {
            self.schedule(now + PROPAGATION_MS, Job::Arrive(n, snapshot.clone()));
        }
        Ok(())
    }
}

/// The data plane's prober (`health::prober::Prober`), its loop restated in
/// virtual time: it reads the wall clock and spawns HTTP calls, so it cannot
/// be driven. What to probe is decided by the real `ProbeSchedule`.
impl Switchyard {
    /// One tick of a node's prober: the real schedule says which targets are
    /// due; each gets a probe, whose result comes back after its duration.
    fn probe_tick(&mut self, market: &Market, n: usize, now: i64) {
        let seed = market.scenario.seed ^ 0x9_0BE5;
        let node = &mut self.nodes[n];
        node.probe_ticks += 1;
        // The draws of one tick: uniform(0), uniform(1), … of a noise keyed
        // by the node and the tick, so every run repeats exactly.
        let noise = Noise::new(seed ^ 0x71C4, node.probe_ticks, n, 0);
        let mut k = 0;
        let draw = || {
            k += 1;
            noise.uniform(k - 1)
        };
        let due = node
            .probes
            .due(&node.snapshot, &node.breakers, unix(now), draw);
        for index in due {
            let Some(&t) = self
                .index
                .get(&self.nodes[n].snapshot.routing.targets[index].id)
            else {
                continue;
            };
            self.inside.probes += 1;
            self.inside.probes_to[t] += 1;
            let noise = Noise::new(seed, self.inside.probes as usize, n, t);
            let outcome = market.probe(t, now, noise);
            self.schedule(now + outcome.duration_ms, Job::ProbeEnd(n, t, outcome));
        }
    }

    /// A probe's result, as `Probe::run` handles it: a success closes the
    /// breaker even while cooling down, a failure reaches the breaker if its
    /// class trips breakers (a 5xx does); either joins the health windows.
    fn probe_ended(&mut self, n: usize, target: usize, outcome: Attempt, now: i64) {
        if !outcome.ok {
            self.inside.failed_probes.push((now, target));
        }
        let node = &mut self.nodes[n];
        let id = &self.ids[target];
        if outcome.ok {
            let before = node.breakers.state(id, unix(now));
            node.runs[target] = 0;
            node.breakers.probe_succeeded(id);
            self.closed(n, target, before, now);
        } else if ErrorClass::Transient.trips_breaker() {
            self.failed(n, target, now);
        }
        let node = &mut self.nodes[n];
        let id = &self.ids[target];
        node.windows.add(&Sample {
            target_id: id.clone(),
            error_class: (!outcome.ok).then_some(pb::ErrorClass::Transient as i32),
            latency_ms: outcome.duration_ms as f64,
            ttft_ms: 0.0,
            tpot_ms: 0.0,
            retry: false,
            probe: true,
            retry_after_until_ms: 0,
        });
    }
}

impl Switchyard {
    /// Tells node `n`'s breaker of a failure on `target`, noting whether
    /// (and by which rule) it opened.
    fn failed(&mut self, n: usize, target: usize, now: i64) {
        let node = &mut self.nodes[n];
        let id = &self.ids[target];
        let before = node.breakers.state(id, unix(now));
        if before == State::Closed {
            node.runs[target] += 1;
        }
        node.breakers.failure(id, unix(now));
        let after = node.breakers.state(id, unix(now));
        if matches!(after, State::Open { .. }) && !matches!(before, State::Open { .. }) {
            self.inside.openings.push((now, target, n));
            if before == State::Closed && node.runs[target] < 5 {
                self.inside.ratio_openings += 1;
            }
            node.runs[target] = 0;
        }
    }
}

impl Switchyard {
    /// Notes node `n`'s breaker on `target` closing, if it was not closed `before`.
    fn closed(&mut self, n: usize, target: usize, before: State, now: i64) {
        let node = &self.nodes[n];
        let id = &self.ids[target];
        if before == State::Closed || node.breakers.state(id, unix(now)) != State::Closed {
            return;
        }
        let fleet = node
            .snapshot
            .routing
            .telemetry
            .fresh(id, unix(now))
            .map(|t| (t.error_rate, t.attempts, t.confidence));
        self.inside.closings.push(Closing {
            at_ms: now,
            target,
            node: n,
            cooling: matches!(before, State::Open { .. }),
            fleet,
        });
    }
}

impl Router for Switchyard {
    fn advance(&mut self, market: &Market, now: i64) -> anyhow::Result<()> {
        while let Some(entry) = self.jobs.first_entry() {
            let at = entry.key().0;
            if at > now {
                break;
            }
            let job = entry.remove();
            self.run_job(market, at, job)?;
        }
        Ok(())
    }

    fn route(&mut self, market: &Market, node: usize, now: i64) -> anyhow::Result<Vec<usize>> {
        let node = &self.nodes[node];
        let (start, _) = market.scenario.outage;
        if (start - 60_000..start).contains(&now) {
            let target = market.scenario.outage_target;
            let before = &mut self.inside.before;
            before.requests += 1;
            before.latency_ms += market.mean_latency_ms(target, now);
            if let Some(view) = node.signals.view(&self.ids[target]) {
                before.in_flight += f64::from(view.inflight);
                before.usual_in_flight += view.usual_inflight;
                before.ewma_ms += view.ttft_ewma_ms;
                before.added_ms += view.cost_ms() - view.ttft_ewma_ms;
            }
        }
        self.request.received.unix_ms = unix(now);
        registry::plan_order(
            &node.snapshot,
            &self.request,
            &node.breakers,
            &node.signals,
            &self.index,
        )
    }

    fn enter(&mut self, node: usize, target: usize) {
        let bank = &mut self.nodes[node].retry_banks[target];
        *bank = (*bank + RETRY_EARNED).min(RETRY_CAP);
    }

    fn admit(&mut self, node: usize, target: usize, now: i64) -> bool {
        self.nodes[node]
            .breakers
            .admit(&self.ids[target], unix(now))
    }

    fn retry(&mut self, node: usize, target: usize) -> bool {
        let bank = &mut self.nodes[node].retry_banks[target];
        let spend = *bank >= 1.0;
        if spend {
            *bank -= 1.0;
        }
        spend
    }

    fn started(&mut self, node: usize, target: usize, attempt: u64, _now: i64) {
        if self.options.in_flight {
            let node = &mut self.nodes[node];
            let guard = node.signals.start(&self.ids[target]);
            node.in_flight.insert(attempt, guard);
        }
    }

    fn ended(&mut self, n: usize, target: usize, attempt: u64, outcome: &Attempt, now: i64) {
        let node = &mut self.nodes[n];
        node.in_flight.remove(&attempt);
        if outcome.ok {
            let before = node.breakers.state(&self.ids[target], unix(now));
            node.runs[target] = 0;
            node.breakers.success_at(&self.ids[target], unix(now));
            self.closed(n, target, before, now);
        } else {
            self.failed(n, target, now);
        }
    }

    fn finished(&mut self, node: usize, attempts: &[AttemptRecord], _now: i64) {
        let node = &mut self.nodes[node];
        let transient = Some(pb::ErrorClass::Transient as i32);
        for (i, a) in attempts.iter().enumerate() {
            let o = a.outcome;
            let tpot_ms = if o.ok && OUTPUT_TOKENS > 1 {
                (o.duration_ms - o.ttft_ms) as f64 / (OUTPUT_TOKENS - 1) as f64
            } else {
                0.0
            };
            node.windows.add(&Sample {
                target_id: self.ids[a.target].clone(),
                error_class: if o.ok { None } else { transient },
                latency_ms: o.duration_ms as f64,
                ttft_ms: o.ttft_ms as f64,
                tpot_ms,
                retry: i > 0,
                probe: false,
                retry_after_until_ms: 0,
            });
            if self.options.peak_ewma && o.ttft_ms > 0 {
                node.signals.observe_ttft(
                    &self.ids[a.target],
                    o.ttft_ms as f64,
                    unix(a.start_ms + o.ttft_ms),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing_sim::engine;
    use crate::routing_sim::market::Scenario;

    #[test]
    fn the_routing_window_is_the_aggregators() {
        assert_eq!(
            ROUTE_WINDOW_MS,
            i64::from(switchyard_control_plane::health::WINDOWS[1]) * 1000
        );
    }

    #[test]
    fn breakers_and_the_fleet_take_the_outage_target_out_and_bring_it_back() {
        let market = Market::new(Scenario::new(2));
        let mut sim = Switchyard::new(&market, Options::default()).unwrap();
        let records = engine::run(&market, &mut sim).unwrap();
        let (start, end) = market.scenario.outage;
        let inside = sim.inside();
        // Every node's breaker opened on it as the outage began.
        for n in 0..market.scenario.nodes {
            assert!(
                inside.openings.iter().any(|&(t, target, node)| target == 0
                    && node == n
                    && (start..start + 1_000).contains(&t)),
                "node {n}: {:?}",
                inside.openings
            );
        }
        // The fleet judged it within a few seconds, and cleared it in the end.
        let on_it: Vec<_> = inside.verdicts.iter().filter(|v| v.1 == 0).collect();
        let judged = on_it
            .iter()
            .find(|(t, _, state)| *t >= start && *state != HealthState::Healthy);
        assert!(
            judged.is_some_and(|(t, _, _)| *t < start + 5_000),
            "{on_it:?}"
        );
        assert!(
            on_it
                .last()
                .is_some_and(|(_, _, state)| *state == HealthState::Healthy),
            "{on_it:?}"
        );
        assert!(inside.probes_to[0] > 0, "half-open breakers are probed");
        // Hardly any request went into the outage after its first seconds, and it came back.
        let after = |from: i64, to: i64| {
            let window: Vec<_> = records
                .iter()
                .filter(|r| (from..to).contains(&r.arrival_ms))
                .collect();
            window.iter().filter(|r| r.touched(0)).count() as f64 / window.len() as f64
        };
        assert!(after(start + 2_000, end) < 0.02);
        assert!(after(end + 40_000, end + 60_000) > 0.3);
        assert!(inside.snapshots > 60);
    }
}

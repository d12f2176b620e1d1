//! The routing-quality simulation: a seeded market of drifting targets with
//! an outage, driven through Switchyard's real scoring, breakers, local
//! signals, probe schedule and fleet-health aggregation in virtual time, and through an
//! oracle and three baselines on the very same market. See the README's
//! "Routing quality (simulation)" section for what is measured and why.

pub mod engine;
pub mod market;
pub mod registry;
pub mod report;
pub mod routers;
pub mod switchyard;
pub mod timeline;

use engine::{RequestRecord, Router};
use market::{Market, Scenario};

/// The outage target's share is measured over windows this long…
pub const SHARE_WINDOW_MS: i64 = 2_000;
/// …starting every this many milliseconds.
pub const SHARE_STEP_MS: i64 = 100;
/// Traffic has shifted away once the share stays below this until the outage ends.
pub const AWAY_SHARE: f64 = 0.05;
/// The share before the outage is measured over this span.
pub const BEFORE_MS: i64 = 60_000;
/// "After its first seconds": requests into the outage are counted from this far in.
pub const GRACE_MS: i64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Oracle,
    Switchyard,
    Baseline,
    Diagnostic,
}

/// One router's results over the measured span.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: &'static str,
    pub kind: Kind,
    pub requests: usize,
    pub successes: usize,
    pub attempts: usize,
    pub utility: f64,
    /// Share of requests with an attempt on the outage target: before it
    /// (over `BEFORE_MS`), during it, and during it after `GRACE_MS`.
    pub share_before: f64,
    pub share_during: f64,
    pub share_after_grace: f64,
    /// From the outage's start until the share stays below `AWAY_SHARE`.
    pub shift_away_ms: Option<i64>,
    /// From the recovery until the share is back to half of `share_before`.
    pub shift_back_ms: Option<i64>,
    /// Requests answered by each target during the outage.
    pub served_during: Vec<usize>,
    pub inside: Option<switchyard::Inside>,
    /// Per `TIMELINE_MS` of the measured span: utility, requests, and
    /// requests answered by each target.
    pub timeline: Vec<Slice>,
}

/// The timeline's resolution.
pub const TIMELINE_MS: i64 = 10_000;

#[derive(Debug, Clone, Default)]
pub struct Slice {
    pub utility: f64,
    pub requests: usize,
    pub served: Vec<usize>,
}

impl Outcome {
    pub fn success_rate(&self) -> f64 {
        self.successes as f64 / self.requests.max(1) as f64
    }
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn measure(name: &'static str, kind: Kind, market: &Market, records: &[RequestRecord]) -> Outcome {
    let s = &market.scenario;
    let target = s.outage_target;
    let (start, end) = s.outage;
    let measured: Vec<&RequestRecord> = records.iter().filter(|r| r.arrival_ms >= 0).collect();
    let between = |from: i64, to: i64| {
        let (mut all, mut touched) = (0, 0);
        for r in measured
            .iter()
            .filter(|r| (from..to).contains(&r.arrival_ms))
        {
            all += 1;
            touched += usize::from(r.touched(target));
        }
        share(touched, all)
    };
    // Share per window [t, t + SHARE_WINDOW_MS), t every SHARE_STEP_MS.
    let bins = usize::try_from(s.duration_ms / SHARE_STEP_MS).unwrap_or(0);
    let mut all = vec![0usize; bins];
    let mut touched = vec![0usize; bins];
    for r in &measured {
        let b = usize::try_from(r.arrival_ms / SHARE_STEP_MS).unwrap_or(usize::MAX);
        if b < bins {
            all[b] += 1;
            touched[b] += usize::from(r.touched(target));
        }
    }
    let per = usize::try_from(SHARE_WINDOW_MS / SHARE_STEP_MS).unwrap_or(1);
    let window_share = |t: i64| {
        let b = usize::try_from(t / SHARE_STEP_MS).unwrap_or(0);
        let to = (b + per).min(bins);
        share(touched[b..to].iter().sum(), all[b..to].iter().sum())
    };
    let share_before = between(start - BEFORE_MS, start);
    let last_high = (start..=end - SHARE_WINDOW_MS)
        .step_by(SHARE_STEP_MS as usize)
        .filter(|&t| window_share(t) >= AWAY_SHARE)
        .last();
    let shift_away_ms = match last_high {
        None => Some(0),
        Some(t) if t + SHARE_STEP_MS > end - SHARE_WINDOW_MS => None,
        Some(t) => Some(t + SHARE_STEP_MS - start),
    };
    let shift_back_ms = (share_before > 0.0)
        .then(|| {
            (end..=s.duration_ms - SHARE_WINDOW_MS)
                .step_by(SHARE_STEP_MS as usize)
                .find(|&t| window_share(t) >= share_before / 2.0)
                .map(|t| t - end)
        })
        .flatten();
    let slices = usize::try_from(s.duration_ms / TIMELINE_MS).unwrap_or(0);
    let mut timeline = vec![
        Slice {
            served: vec![0; market.targets()],
            ..Slice::default()
        };
        slices
    ];
    for r in &measured {
        if let Some(slice) =
            timeline.get_mut(usize::try_from(r.arrival_ms / TIMELINE_MS).unwrap_or(usize::MAX))
        {
            slice.utility += r.utility;
            slice.requests += 1;
            if let Some(t) = r.served {
                slice.served[usize::from(t)] += 1;
            }
        }
    }
    let mut served_during = vec![0; market.targets()];
    for r in measured
        .iter()
        .filter(|r| (start..end).contains(&r.arrival_ms))
    {
        if let Some(t) = r.served {
            served_during[usize::from(t)] += 1;
        }
    }
    Outcome {
        name,
        kind,
        timeline,
        served_during,
        requests: measured.len(),
        successes: measured.iter().filter(|r| r.ok).count(),
        attempts: measured.iter().map(|r| usize::from(r.attempts)).sum(),
        utility: measured.iter().map(|r| r.utility).sum(),
        share_before,
        share_during: between(start, end),
        share_after_grace: between(start + GRACE_MS, end),
        shift_away_ms,
        shift_back_ms,
        inside: None,
    }
}

fn run_one(
    name: &'static str,
    kind: Kind,
    market: &Market,
    router: &mut impl Router,
) -> anyhow::Result<Outcome> {
    let records = engine::run(market, router)?;
    Ok(measure(name, kind, market, &records))
}

/// One seed's market and every router's outcome on it, oracle first, Switchyard second.
pub struct Simulated {
    pub market: Market,
    pub outcomes: Vec<Outcome>,
}

/// Every router on the market the seed makes.
pub fn simulate(seed: u64) -> anyhow::Result<Simulated> {
    let market = Market::new(Scenario::new(seed));
    let mut outcomes = vec![run_one(
        "Oracle",
        Kind::Oracle,
        &market,
        &mut routers::Oracle,
    )?];
    let mut real = switchyard::Switchyard::new(&market, switchyard::Options::default())?;
    let mut outcome = run_one("Switchyard", Kind::Switchyard, &market, &mut real)?;
    outcome.inside = Some(real.inside().clone());
    outcomes.push(outcome);
    outcomes.push(run_one(
        "Fixed priority",
        Kind::Baseline,
        &market,
        &mut routers::FixedPriority,
    )?);
    outcomes.push(run_one(
        "Round robin",
        Kind::Baseline,
        &market,
        &mut routers::RoundRobin::default(),
    )?);
    outcomes.push(run_one(
        "Latency EWMA",
        Kind::Baseline,
        &market,
        &mut routers::LatencyEwma::default(),
    )?);
    outcomes.push(run_one(
        "Scoring with the true state",
        Kind::Diagnostic,
        &market,
        &mut routers::ScoringWithTruth::new(&market),
    )?);
    for (name, options) in [
        (
            "Switchyard, no in-flight count",
            switchyard::Options {
                in_flight: false,
                ..switchyard::Options::default()
            },
        ),
        (
            "Switchyard, no local signals",
            switchyard::Options {
                in_flight: false,
                peak_ewma: false,
            },
        ),
    ] {
        let mut variant = switchyard::Switchyard::new(&market, options)?;
        let mut outcome = run_one(name, Kind::Diagnostic, &market, &mut variant)?;
        outcome.inside = Some(variant.inside().clone());
        outcomes.push(outcome);
    }
    Ok(Simulated { market, outcomes })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests every 10 ms; those in `[from, to)` of the outage touch the
    /// outage target, the rest touch another one.
    fn records(market: &Market, away: (i64, i64)) -> Vec<RequestRecord> {
        (-market.scenario.warmup_ms / 10..market.scenario.duration_ms / 10)
            .map(|i| {
                let t = i * 10;
                let on_it = !(away.0..away.1).contains(&t);
                RequestRecord {
                    arrival_ms: t,
                    ok: true,
                    utility: 0.1,
                    touched: if on_it { 1 } else { 2 },
                    attempts: 1,
                    served: Some(if on_it { 0 } else { 1 }),
                }
            })
            .collect()
    }

    #[test]
    fn shifting_away_and_back_is_timed_from_the_outage_edges() {
        let market = Market::new(Scenario::new(1));
        let (start, end) = market.scenario.outage;
        let o = measure(
            "t",
            Kind::Baseline,
            &market,
            &records(&market, (start + 3_000, end + 5_000)),
        );
        assert_eq!(o.shift_away_ms, Some(3_000));
        // Half of a 2 s window is back on it 4 s after the end.
        assert_eq!(o.shift_back_ms, Some(4_000));
        assert_eq!(o.share_before, 1.0);
        assert!((o.share_during - 0.05).abs() < 0.001, "{}", o.share_during);
        assert!(o.share_after_grace < o.share_during);
        assert_eq!(o.served_during[0] + o.served_during[1], o.requests / 5);

        let never = measure("t", Kind::Baseline, &market, &records(&market, (0, 0)));
        assert_eq!((never.shift_away_ms, never.shift_back_ms), (None, Some(0)));
        let gone = measure(
            "t",
            Kind::Baseline,
            &market,
            &records(&market, (start, i64::MAX)),
        );
        assert_eq!((gone.shift_away_ms, gone.shift_back_ms), (Some(0), None));
    }

    #[test]
    fn a_seed_repeats_exactly() {
        let a = simulate(3).unwrap();
        let b = simulate(3).unwrap();
        for (x, y) in a.outcomes.iter().zip(&b.outcomes) {
            assert_eq!(x.utility, y.utility, "{}", x.name);
            assert_eq!(x.attempts, y.attempts, "{}", x.name);
        }
    }
}

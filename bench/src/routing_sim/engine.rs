//! The request executor, shared by every router: Poisson arrivals spread
//! round-robin over the data-plane nodes, each request routed once at
//! arrival, then its attempts run one after another in virtual time down the
//! router's order (at most three, as the data plane's default
//! `--max-attempts`), until one succeeds or the order runs out. What each
//! request was worth goes into its record.

use std::collections::BTreeMap;

use anyhow::Context as _;

use super::market::{Attempt, Market, Noise, PROFILES, utility};

/// Attempts per request at most (the data plane's default `--max-attempts`).
pub const MAX_ATTEMPTS: usize = 3;
/// Back-off ceiling before a retry on the same target (full jitter), as the
/// data plane's first retry.
const RETRY_BACKOFF_MS: f64 = 100.0;

/// One attempt, as the request's trace would hold it.
#[derive(Debug, Clone, Copy)]
pub struct AttemptRecord {
    pub target: usize,
    pub start_ms: i64,
    pub outcome: Attempt,
}

/// A router under test. Times are virtual milliseconds.
pub trait Router {
    /// Runs the router's own background work (health windows, control plane,
    /// snapshots) up to and including `now`.
    fn advance(&mut self, _market: &Market, _now: i64) -> anyhow::Result<()> {
        Ok(())
    }

    /// The targets to try for a request arriving at `node`, in order.
    fn route(&mut self, market: &Market, node: usize, now: i64) -> anyhow::Result<Vec<usize>>;

    /// The request moves on to `target` in its order (before any admission check).
    fn enter(&mut self, _node: usize, _target: usize) {}

    /// Whether an attempt may go to `target` now.
    fn admit(&mut self, _node: usize, _target: usize, _now: i64) -> bool {
        true
    }

    /// Whether a failed attempt on `target` is retried there once before moving on.
    fn retry(&mut self, _node: usize, _target: usize) -> bool {
        false
    }

    fn started(&mut self, _node: usize, _target: usize, _attempt: u64, _now: i64) {}

    fn ended(
        &mut self,
        _node: usize,
        _target: usize,
        _attempt: u64,
        _outcome: &Attempt,
        _now: i64,
    ) {
    }

    /// The request is over; `attempts` is its trace.
    fn finished(&mut self, _node: usize, _attempts: &[AttemptRecord], _now: i64) {}
}

/// What became of one request.
#[derive(Debug, Clone, Copy)]
pub struct RequestRecord {
    pub arrival_ms: i64,
    pub ok: bool,
    pub utility: f64,
    /// Targets that got an attempt, as a bit set.
    pub touched: u8,
    pub attempts: u8,
    /// The target that answered, if one did.
    pub served: Option<u8>,
}

impl RequestRecord {
    pub fn touched(&self, target: usize) -> bool {
        self.touched & (1 << target) != 0
    }
}

#[derive(Debug)]
struct Live {
    node: usize,
    arrival_ms: i64,
    order: Vec<usize>,
    position: usize,
    /// Retries already made on the target at `position`.
    retried: bool,
    attempts: Vec<AttemptRecord>,
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Arrive(usize),
    /// The running attempt of a request ends.
    End(usize),
    /// A request retries its current target after a back-off.
    Retry(usize),
}

struct Run<'a, R: Router> {
    market: &'a Market,
    router: &'a mut R,
    queue: BTreeMap<(i64, u64), Event>,
    seq: u64,
    live: Vec<Option<Live>>,
    records: Vec<Option<RequestRecord>>,
}

impl<R: Router> Run<'_, R> {
    fn schedule(&mut self, at: i64, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    fn attempt_id(request: usize, n: usize) -> u64 {
        (request as u64) << 8 | n as u64
    }

    /// Starts the next attempt the request's order allows, or ends it.
    fn next_attempt(&mut self, request: usize, now: i64) -> anyhow::Result<()> {
        let mut live = self.live[request].take().context("request not live")?;
        while let Some(&target) = live.order.get(live.position) {
            if live.attempts.len() >= MAX_ATTEMPTS {
                break;
            }
            if !live.retried {
                self.router.enter(live.node, target);
            }
            if !self.router.admit(live.node, target, now) {
                live.position += 1;
                live.retried = false;
                continue;
            }
            let n = live.attempts.len();
            let noise = Noise::new(self.market.scenario.seed, request, n, target);
            let outcome = self.market.attempt(target, now, noise);
            self.router
                .started(live.node, target, Self::attempt_id(request, n), now);
            live.attempts.push(AttemptRecord {
                target,
                start_ms: now,
                outcome,
            });
            self.schedule(now + outcome.duration_ms, Event::End(request));
            self.live[request] = Some(live);
            return Ok(());
        }
        self.finish(request, live, now);
        Ok(())
    }

    fn attempt_ended(&mut self, request: usize, now: i64) -> anyhow::Result<()> {
        let live = self.live[request].as_mut().context("request not live")?;
        let n = live.attempts.len() - 1;
        let last = *live.attempts.last().context("no attempt")?;
        let node = live.node;
        self.router.ended(
            node,
            last.target,
            Self::attempt_id(request, n),
            &last.outcome,
            now,
        );
        if last.outcome.ok || last.outcome.partial() {
            let live = self.live[request].take().context("request not live")?;
            self.finish(request, live, now);
            return Ok(());
        }
        let retry = !live.retried
            && live.attempts.len() < MAX_ATTEMPTS
            && self.router.retry(node, last.target);
        let live = self.live[request].as_mut().context("request not live")?;
        if retry {
            live.retried = true;
            let noise = Noise::new(self.market.scenario.seed, request, n, last.target);
            let wait = (noise.uniform(7) * RETRY_BACKOFF_MS) as i64;
            self.schedule(now + wait, Event::Retry(request));
            return Ok(());
        }
        live.position += 1;
        live.retried = false;
        self.next_attempt(request, now)
    }

    fn finish(&mut self, request: usize, live: Live, now: i64) {
        self.router.finished(live.node, &live.attempts, now);
        let waited = (now - live.arrival_ms) as f64;
        let last = live.attempts.last();
        let ok = last.is_some_and(|a| a.outcome.ok);
        let utility = match last {
            Some(a) if ok => utility::success(
                PROFILES[a.target].tier,
                self.market.cost_usd(a.target, a.start_ms),
                waited,
            ),
            _ => utility::failure(waited),
        };
        let touched = live
            .attempts
            .iter()
            .fold(0u8, |bits, a| bits | 1 << a.target);
        self.records[request] = Some(RequestRecord {
            arrival_ms: live.arrival_ms,
            ok,
            utility,
            touched,
            attempts: live.attempts.len() as u8,
            served: last.filter(|_| ok).map(|a| a.target as u8),
        });
    }
}

/// Runs every arrival of the market through `router`; one record per request, in arrival order.
pub fn run(market: &Market, router: &mut impl Router) -> anyhow::Result<Vec<RequestRecord>> {
    let arrivals = market.arrivals();
    let nodes = market.scenario.nodes.max(1);
    let mut run = Run {
        market,
        router,
        queue: BTreeMap::new(),
        seq: 0,
        live: (0..arrivals.len()).map(|_| None).collect(),
        records: vec![None; arrivals.len()],
    };
    for (i, &at) in arrivals.iter().enumerate() {
        run.schedule(at, Event::Arrive(i));
    }
    while let Some(((now, _), event)) = run.queue.pop_first() {
        run.router.advance(market, now)?;
        match event {
            Event::Arrive(request) => {
                let node = request % nodes;
                let order = run.router.route(market, node, now)?;
                run.live[request] = Some(Live {
                    node,
                    arrival_ms: now,
                    order,
                    position: 0,
                    retried: false,
                    attempts: Vec::with_capacity(MAX_ATTEMPTS),
                });
                run.next_attempt(request, now)?;
            }
            Event::End(request) => run.attempt_ended(request, now)?,
            Event::Retry(request) => run.next_attempt(request, now)?,
        }
    }
    run.records
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.with_context(|| format!("request {i} never finished")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing_sim::market::Scenario;

    /// Always the given order; optionally retries the same target once.
    struct Scripted {
        order: Vec<usize>,
        retry: bool,
        ended: usize,
    }

    impl Router for Scripted {
        fn route(&mut self, _: &Market, _: usize, _: i64) -> anyhow::Result<Vec<usize>> {
            Ok(self.order.clone())
        }

        fn retry(&mut self, _: usize, _: usize) -> bool {
            self.retry
        }

        fn ended(&mut self, _: usize, _: usize, _: u64, _: &Attempt, _: i64) {
            self.ended += 1;
        }
    }

    fn during_outage(market: &Market, records: &[RequestRecord]) -> Vec<RequestRecord> {
        let (start, end) = market.scenario.outage;
        records
            .iter()
            .filter(|r| (start + 1_000..end - 1_000).contains(&r.arrival_ms))
            .copied()
            .collect()
    }

    #[test]
    fn a_failure_moves_down_the_order_and_a_retry_tries_the_same_target_first() {
        let market = Market::new(Scenario::new(5));
        let mut plain = Scripted {
            order: vec![0, 1, 2, 3, 4],
            retry: false,
            ended: 0,
        };
        let records = run(&market, &mut plain).unwrap();
        assert_eq!(records.len(), market.arrivals().len());
        let attempts: usize = records.iter().map(|r| usize::from(r.attempts)).sum();
        assert_eq!(plain.ended, attempts, "every attempt ends once");
        let down = during_outage(&market, &records);
        assert!(down.len() > 2_000);
        for r in &down {
            assert!(r.touched(0) && r.attempts >= 2, "{r:?}");
            assert_ne!(r.served, Some(0));
        }
        assert!(down.iter().filter(|r| r.ok).count() * 100 > down.len() * 95);

        let mut retrying = Scripted {
            order: vec![0, 1],
            retry: true,
            ended: 0,
        };
        let records = run(&market, &mut retrying).unwrap();
        for r in during_outage(&market, &records) {
            // Target 0 twice, then target 1: never more than three attempts.
            assert_eq!(r.attempts, 3, "{r:?}");
            assert!(r.touched(1));
            assert!(r.ok || r.utility < 0.0);
        }
    }

    #[test]
    fn an_answer_is_worth_its_tier_minus_price_and_time_and_a_failure_costs() {
        let market = Market::new(Scenario::new(5));
        let mut none = Scripted {
            order: vec![],
            retry: false,
            ended: 0,
        };
        let records = run(&market, &mut none).unwrap();
        assert!(records.iter().all(|r| !r.ok && r.attempts == 0));
        assert!(
            records
                .iter()
                .all(|r| (r.utility + utility::FAILURE_PENALTY).abs() < 1e-9)
        );
        let mut frontier = Scripted {
            order: vec![4],
            retry: false,
            ended: 0,
        };
        let records = run(&market, &mut frontier).unwrap();
        let ok: Vec<_> = records.iter().filter(|r| r.ok).collect();
        assert!(ok.iter().all(|r| r.served == Some(4)));
        // Worth less than nothing on average: too dear for this request.
        assert!(ok.iter().map(|r| r.utility).sum::<f64>() < 0.0);
    }
}

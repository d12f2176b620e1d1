//! Circuit breakers, one per target on each data plane: closed (traffic flows),
//! open (the target is skipped for a cool-down), half-open (one probe request
//! decides). Consecutive failures open a breaker; each reopening doubles the
//! cool-down up to a cap. Lock-free on the request path: state lives in atomics
//! and scoring only reads it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

use arc_swap::ArcSwap;

/// Consecutive failures that open a breaker.
const OPEN_AFTER: u32 = 5;
/// First cool-down, doubled on each reopening up to the cap.
const COOL_DOWN_MS: i64 = 5_000;
const MAX_COOL_DOWN_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    /// Skipped until the cool-down ends (Unix ms).
    Open {
        until_ms: i64,
    },
    /// Cool-down over: one probe may go through.
    HalfOpen,
}

impl State {
    /// For the breaker-state gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open { .. } => 2,
        }
    }
}

#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: AtomicU32,
    /// 0 when closed; else when the current cool-down ends.
    open_until_ms: AtomicI64,
    /// How many times in a row it has opened; sets the cool-down.
    openings: AtomicU32,
    /// A half-open probe is under way.
    probing: AtomicBool,
}

impl Breaker {
    fn state(&self, now_ms: i64) -> State {
        match self.open_until_ms.load(Ordering::Acquire) {
            0 => State::Closed,
            until if now_ms < until => State::Open { until_ms: until },
            _ => State::HalfOpen,
        }
    }

    fn open(&self, now_ms: i64) {
        let openings = self.openings.fetch_add(1, Ordering::AcqRel).min(16);
        let cool_down = (COOL_DOWN_MS << openings).min(MAX_COOL_DOWN_MS);
        self.open_until_ms
            .store(now_ms + cool_down, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }
}

/// The map is replaced whole (copy on write) when a target gets its first
/// breaker, which is rare; reads on the request path take no lock.
#[derive(Default)]
pub struct Breakers {
    targets: ArcSwap<HashMap<String, Arc<Breaker>>>,
}

impl Breakers {
    fn get(&self, target: &str) -> Option<Arc<Breaker>> {
        self.targets.load().get(target).cloned()
    }

    fn get_or_create(&self, target: &str) -> Arc<Breaker> {
        self.targets.rcu(|targets| {
            if targets.contains_key(target) {
                return Arc::clone(targets);
            }
            let mut next = HashMap::clone(targets);
            next.insert(target.to_owned(), Arc::new(Breaker::default()));
            Arc::new(next)
        });
        self.get(target).unwrap_or_default()
    }

    pub fn state(&self, target: &str, now_ms: i64) -> State {
        self.get(target).map_or(State::Closed, |b| b.state(now_ms))
    }

    /// A read-only view for scoring many targets with one load.
    pub fn view(&self) -> View {
        View(self.targets.load_full())
    }

    /// Whether a request may go to `target` now. In half-open, only the first
    /// caller gets through, as the probe.
    pub fn admit(&self, target: &str, now_ms: i64) -> bool {
        let Some(breaker) = self.get(target) else {
            return true;
        };
        match breaker.state(now_ms) {
            State::Closed => true,
            State::Open { .. } => false,
            State::HalfOpen => breaker
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok(),
        }
    }

    pub fn success(&self, target: &str) {
        let Some(breaker) = self.get(target) else {
            return;
        };
        breaker.consecutive_failures.store(0, Ordering::Release);
        breaker.open_until_ms.store(0, Ordering::Release);
        breaker.openings.store(0, Ordering::Release);
        breaker.probing.store(false, Ordering::Release);
    }

    /// A failure that says something about the target (not the request, not the client).
    pub fn failure(&self, target: &str, now_ms: i64) {
        let breaker = self.get_or_create(target);
        if matches!(breaker.state(now_ms), State::HalfOpen) {
            breaker.open(now_ms);
            return;
        }
        let failures = breaker.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= OPEN_AFTER && breaker.open_until_ms.load(Ordering::Acquire) == 0 {
            breaker.consecutive_failures.store(0, Ordering::Release);
            breaker.open(now_ms);
        }
    }

    /// Every breaker's state, for metrics.
    pub fn all(&self, now_ms: i64) -> Vec<(String, State)> {
        self.targets
            .load()
            .iter()
            .map(|(id, b)| (id.clone(), b.state(now_ms)))
            .collect()
    }
}

/// Every breaker as of one moment; states are still read live from atomics.
pub struct View(Arc<HashMap<String, Arc<Breaker>>>);

impl View {
    pub fn state(&self, target: &str, now_ms: i64) -> State {
        self.0
            .get(target)
            .map_or(State::Closed, |b| b.state(now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_half_opens_after_cool_down_and_closes_on_a_good_probe() {
        let b = Breakers::default();
        for _ in 0..4 {
            b.failure("t", 0);
        }
        assert_eq!(b.state("t", 0), State::Closed);
        b.success("t");
        for _ in 0..4 {
            b.failure("t", 0);
        }
        assert_eq!(b.state("t", 0), State::Closed, "a success resets the count");
        b.failure("t", 0);
        assert_eq!(b.state("t", 1), State::Open { until_ms: 5_000 });
        assert!(!b.admit("t", 4_999));

        assert_eq!(b.state("t", 5_000), State::HalfOpen);
        assert!(b.admit("t", 5_000), "the first caller is the probe");
        assert!(!b.admit("t", 5_001), "only one probe at a time");
        b.success("t");
        assert_eq!(b.state("t", 5_002), State::Closed);
        assert!(b.admit("t", 5_002));
    }

    #[test]
    fn a_failed_probe_reopens_with_a_longer_cool_down() {
        let b = Breakers::default();
        for _ in 0..5 {
            b.failure("t", 0);
        }
        assert!(b.admit("t", 5_000));
        b.failure("t", 5_000);
        assert_eq!(b.state("t", 5_000), State::Open { until_ms: 15_000 });
        assert!(b.admit("t", 15_000));
        b.failure("t", 15_000);
        assert_eq!(b.state("t", 15_000), State::Open { until_ms: 35_000 });
        assert_eq!(b.state("other", 0), State::Closed);
    }
}

//! Circuit breakers, one per target on each data plane: closed (traffic flows),
//! open (the target is skipped for a cool-down), half-open (one probe request
//! decides). A breaker opens on consecutive failures or on a failure ratio over
//! a sliding window; each reopening doubles the cool-down up to a cap. An
//! operator can force a target's circuit open or closed in the registry; the
//! override reaches every node in the snapshot and wins over the breaker.
//! Lock-free on the request path: state lives in atomics and scoring only reads it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use switchyard_domain::{CircuitMode, RoutingSnapshot};

/// Consecutive failures that open a breaker.
const OPEN_AFTER: u32 = 5;
/// First cool-down, doubled on each reopening up to the cap.
const COOL_DOWN_MS: i64 = 5_000;
const MAX_COOL_DOWN_MS: i64 = 60_000;
/// How long a half-open probe holds the target before another may try.
const PROBE_LEASE_MS: i64 = 30_000;
/// The failure-ratio rule looks at the last `WINDOW_BUCKETS` buckets of
/// `BUCKET_MS` each (the current one included): about ten seconds.
const WINDOW_BUCKETS: usize = 10;
const BUCKET_MS: i64 = 1_000;
/// A breaker opens when at least this share of the calls in the window failed…
const OPEN_RATIO_PERCENT: u64 = 50;
/// …and the window holds at least this many calls: fewer say too little.
const MIN_CALLS_IN_WINDOW: u64 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    /// Skipped until the cool-down ends (Unix ms).
    Open {
        until_ms: i64,
    },
    /// Cool-down over: one probe may go through.
    HalfOpen,
    /// An operator forced the circuit open: never admitted.
    ForcedOpen,
    /// An operator forced the circuit closed: always admitted.
    ForcedClosed,
}

impl State {
    /// For the breaker-state gauge: 0 closed, 1 half-open, 2 open,
    /// 3 forced open, 4 forced closed.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open { .. } => 2,
            Self::ForcedOpen => 3,
            Self::ForcedClosed => 4,
        }
    }

    /// Low-cardinality name, as `Route` answers and traces show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open { .. } => "open",
            Self::ForcedOpen => "forced_open",
            Self::ForcedClosed => "forced_closed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("closed"),
            Self::HalfOpen => f.write_str("half-open"),
            Self::Open { until_ms } => write!(f, "open until {until_ms} (Unix ms)"),
            Self::ForcedOpen => f.write_str("forced open by operator"),
            Self::ForcedClosed => f.write_str("forced closed by operator"),
        }
    }
}

/// The operator's override as stored in [`Breaker::mode`].
const MODE_AUTO: u8 = 0;
const MODE_OPEN: u8 = 1;
const MODE_CLOSED: u8 = 2;

fn mode_code(mode: CircuitMode) -> u8 {
    match mode {
        CircuitMode::Auto => MODE_AUTO,
        CircuitMode::Open => MODE_OPEN,
        CircuitMode::Closed => MODE_CLOSED,
    }
}

/// Successes and failures per bucket over the last `WINDOW_BUCKETS` buckets.
/// Each bucket is one word, updated whole by compare-and-swap: the bucket
/// number (high 32 bits, wrapping), successes and failures (16 bits each,
/// saturating). A bucket whose number is out of the window counts nothing.
#[derive(Debug, Default)]
struct Window {
    buckets: [AtomicU64; WINDOW_BUCKETS],
}

fn bucket_of(now_ms: i64) -> u32 {
    // Wraps after 136 years of one-second buckets; only differences matter.
    now_ms.div_euclid(BUCKET_MS) as u32
}

fn pack(bucket: u32, successes: u16, failures: u16) -> u64 {
    (u64::from(bucket) << 32) | (u64::from(successes) << 16) | u64::from(failures)
}

fn unpack(word: u64) -> (u32, u16, u16) {
    ((word >> 32) as u32, (word >> 16) as u16, word as u16)
}

impl Window {
    fn record(&self, now_ms: i64, failed: bool) {
        let bucket = bucket_of(now_ms);
        let slot = &self.buckets[bucket as usize % WINDOW_BUCKETS];
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
            let (stamp, successes, failures) = unpack(word);
            let (successes, failures) = if stamp == bucket {
                (successes, failures)
            } else if (bucket.wrapping_sub(stamp) as i32) < 0 {
                // The slot already holds a later bucket: this call is too late to count.
                return None;
            } else {
                (0, 0)
            };
            Some(if failed {
                pack(bucket, successes, failures.saturating_add(1))
            } else {
                pack(bucket, successes.saturating_add(1), failures)
            })
        });
    }

    /// (calls, failures) in the window ending at `now_ms`.
    fn counts(&self, now_ms: i64) -> (u64, u64) {
        let bucket = bucket_of(now_ms);
        self.buckets
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Acquire)))
            .filter(|(stamp, _, _)| (bucket.wrapping_sub(*stamp) as usize) < WINDOW_BUCKETS)
            .fold((0, 0), |(calls, failed), (_, s, f)| {
                (calls + u64::from(s) + u64::from(f), failed + u64::from(f))
            })
    }

    fn tripped(&self, now_ms: i64) -> bool {
        let (calls, failures) = self.counts(now_ms);
        calls >= MIN_CALLS_IN_WINDOW && failures * 100 >= calls * OPEN_RATIO_PERCENT
    }

    fn clear(&self) {
        for slot in &self.buckets {
            slot.store(0, Ordering::Release);
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
    /// When the half-open probe under way was let through (Unix ms); 0 when
    /// none is. A probe that never reports (its client left, it lost a hedge
    /// race, it failed in a way that says nothing of the target) stops
    /// blocking others after [`PROBE_LEASE_MS`].
    probe_since_ms: AtomicI64,
    window: Window,
    /// The operator's override from the snapshot (`MODE_*`).
    mode: AtomicU8,
}

impl Breaker {
    fn state(&self, now_ms: i64) -> State {
        match self.mode.load(Ordering::Acquire) {
            MODE_OPEN => return State::ForcedOpen,
            MODE_CLOSED => return State::ForcedClosed,
            _ => {}
        }
        match self.open_until_ms.load(Ordering::Acquire) {
            0 => State::Closed,
            until if now_ms < until => State::Open { until_ms: until },
            _ => State::HalfOpen,
        }
    }

    fn overridden(&self) -> bool {
        self.mode.load(Ordering::Acquire) != MODE_AUTO
    }

    /// Opens the breaker if `open_until_ms` still reads `from` (0 when closed,
    /// the ended cool-down when half-open), so racing callers open it once.
    fn open(&self, from: i64, now_ms: i64) {
        let doublings = self.openings.load(Ordering::Acquire).min(16);
        let cool_down = (COOL_DOWN_MS << doublings).min(MAX_COOL_DOWN_MS);
        if self
            .open_until_ms
            .compare_exchange(
                from,
                now_ms + cool_down,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return;
        }
        self.openings.fetch_add(1, Ordering::AcqRel);
        self.consecutive_failures.store(0, Ordering::Release);
        self.probe_since_ms.store(0, Ordering::Release);
        // What opened it is spent; after the cool-down the probe decides afresh.
        self.window.clear();
    }

    /// Closes the breaker after a good answer past the cool-down that ended
    /// at `from`, unless another caller has moved it on.
    fn close(&self, from: i64) {
        if self
            .open_until_ms
            .compare_exchange(from, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.openings.store(0, Ordering::Release);
            self.probe_since_ms.store(0, Ordering::Release);
            self.window.clear();
        }
    }

    /// Back to closed with no history.
    fn reset(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
        self.open_until_ms.store(0, Ordering::Release);
        self.openings.store(0, Ordering::Release);
        self.probe_since_ms.store(0, Ordering::Release);
        self.window.clear();
    }

    /// Applies an operator override; a change starts the breaker afresh, so
    /// lifting an override gives the target a clean slate.
    fn set_mode(&self, mode: u8) {
        if self.mode.swap(mode, Ordering::AcqRel) != mode {
            self.reset();
        }
    }
}

/// Wall clock in Unix milliseconds, for callers that bring no time.
fn unix_now_ms() -> i64 {
    crate::request::Received::now().unix_ms
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
        if let Some(breaker) = self.get(target) {
            return breaker;
        }
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

    /// Takes the operators' overrides from a new snapshot. Call it as the
    /// snapshot is swapped in; targets it does not force are left to their breakers.
    pub fn apply_overrides(&self, snapshot: &RoutingSnapshot) {
        self.set_modes(
            snapshot
                .targets
                .iter()
                .map(|t| (t.id.as_str(), t.spec.circuit)),
        );
    }

    fn set_modes<'a>(&self, targets: impl IntoIterator<Item = (&'a str, CircuitMode)>) {
        let forced: HashMap<&str, u8> = targets
            .into_iter()
            .filter(|(_, mode)| *mode != CircuitMode::Auto)
            .map(|(id, mode)| (id, mode_code(mode)))
            .collect();
        for id in forced.keys() {
            self.get_or_create(id);
        }
        for (id, breaker) in self.targets.load().iter() {
            breaker.set_mode(forced.get(id.as_str()).copied().unwrap_or(MODE_AUTO));
        }
    }

    /// Whether a request may go to `target` now. In half-open, only the first
    /// caller gets through, as the probe.
    pub fn admit(&self, target: &str, now_ms: i64) -> bool {
        let Some(breaker) = self.get(target) else {
            return true;
        };
        match breaker.state(now_ms) {
            State::Closed | State::ForcedClosed => true,
            State::Open { .. } | State::ForcedOpen => false,
            State::HalfOpen => {
                let since = breaker.probe_since_ms.load(Ordering::Acquire);
                let free = since == 0 || now_ms.saturating_sub(since) >= PROBE_LEASE_MS;
                free && breaker
                    .probe_since_ms
                    .compare_exchange(since, now_ms.max(1), Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            }
        }
    }

    pub fn success(&self, target: &str) {
        self.success_at(target, unix_now_ms());
    }

    /// A success at `now_ms` (for callers with their own clock).
    pub fn success_at(&self, target: &str, now_ms: i64) {
        let breaker = self.get_or_create(target);
        if breaker.overridden() {
            return;
        }
        breaker.consecutive_failures.store(0, Ordering::Release);
        match breaker.open_until_ms.load(Ordering::Acquire) {
            0 => breaker.window.record(now_ms, false),
            // Cool-down over: the probe (or a late answer) says the target is back.
            until if now_ms >= until => breaker.close(until),
            // Still cooling down: a late answer to a call admitted before it
            // opened does not close it.
            _ => {}
        }
    }

    /// An active probe, sent after the breaker opened, succeeded: unlike a
    /// late answer, it proves the target is back, so the breaker closes even
    /// while cooling down.
    pub fn probe_succeeded(&self, target: &str) {
        let Some(breaker) = self.get(target) else {
            return;
        };
        if breaker.overridden() {
            return;
        }
        breaker.consecutive_failures.store(0, Ordering::Release);
        let until = breaker.open_until_ms.load(Ordering::Acquire);
        if until != 0 {
            breaker.close(until);
        }
    }

    /// A failure that says something about the target (not the request, not the client).
    pub fn failure(&self, target: &str, now_ms: i64) {
        let breaker = self.get_or_create(target);
        if breaker.overridden() {
            return;
        }
        match breaker.open_until_ms.load(Ordering::Acquire) {
            0 => {
                breaker.window.record(now_ms, true);
                let failures = breaker.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
                if failures >= OPEN_AFTER || breaker.window.tripped(now_ms) {
                    breaker.open(0, now_ms);
                }
            }
            // The probe failed: open again, for longer.
            until if now_ms >= until => breaker.open(until, now_ms),
            // Already open: a late failure changes nothing.
            _ => {}
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
    fn a_good_active_probe_closes_the_breaker_even_while_it_cools_down() {
        let b = Breakers::default();
        for _ in 0..OPEN_AFTER {
            b.failure("t", 0);
        }
        assert!(matches!(b.state("t", 1), State::Open { .. }));
        // A late answer does not close it; a probe does.
        b.success_at("t", 1);
        assert!(matches!(b.state("t", 1), State::Open { .. }));
        b.probe_succeeded("t");
        assert_eq!(b.state("t", 1), State::Closed);
    }

    #[test]
    fn opens_after_consecutive_failures_half_opens_after_cool_down_and_closes_on_a_good_probe() {
        let b = Breakers::default();
        for _ in 0..4 {
            b.failure("t", 0);
        }
        assert_eq!(b.state("t", 0), State::Closed);
        b.success_at("t", 0);
        for _ in 0..4 {
            b.failure("t", 0);
        }
        assert_eq!(b.state("t", 0), State::Closed, "a success resets the count");
        b.failure("t", 0);
        assert_eq!(b.state("t", 1), State::Open { until_ms: 5_000 });
        assert!(!b.admit("t", 4_999));
        b.success_at("t", 4_999);
        assert_eq!(
            b.state("t", 4_999),
            State::Open { until_ms: 5_000 },
            "a late answer does not cut the cool-down short"
        );

        assert_eq!(b.state("t", 5_000), State::HalfOpen);
        assert!(b.admit("t", 5_000), "the first caller is the probe");
        assert!(!b.admit("t", 5_001), "only one probe at a time");
        b.success_at("t", 5_001);
        assert_eq!(b.state("t", 5_002), State::Closed);
        assert!(b.admit("t", 5_002));
    }

    #[test]
    fn a_probe_that_never_reports_frees_the_target_after_its_lease() {
        let b = Breakers::default();
        for _ in 0..5 {
            b.failure("t", 0);
        }
        // The probe's client leaves (or it loses a hedge race): no verdict.
        assert!(b.admit("t", 5_000));
        assert!(!b.admit("t", 5_000 + PROBE_LEASE_MS - 1));
        assert!(
            b.admit("t", 5_000 + PROBE_LEASE_MS),
            "the next caller probes"
        );
        assert!(!b.admit("t", 5_001 + PROBE_LEASE_MS));
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

    #[test]
    fn half_the_calls_failing_in_the_window_opens_it_without_consecutive_failures() {
        let b = Breakers::default();
        // Success, failure, success, ...: never two failures in a row.
        for i in 0..19 {
            let now = i * 100;
            if i % 2 == 0 {
                b.success_at("t", now);
            } else {
                b.failure("t", now);
            }
            assert_eq!(
                b.state("t", now),
                State::Closed,
                "call {i}: too few calls yet"
            );
        }
        b.failure("t", 1_900);
        assert_eq!(
            b.state("t", 1_900),
            State::Open { until_ms: 6_900 },
            "10 failures in 20 calls"
        );
    }

    #[test]
    fn a_failure_ratio_under_half_keeps_it_closed() {
        let b = Breakers::default();
        for i in 0..90 {
            let now = i * 100;
            // Two successes for every failure: a third fail.
            if i % 3 == 2 {
                b.failure("t", now);
            } else {
                b.success_at("t", now);
            }
        }
        assert_eq!(b.state("t", 9_000), State::Closed);
    }

    #[test]
    fn calls_older_than_the_window_no_longer_count() {
        let b = Breakers::default();
        for i in 0..9 {
            b.success_at("t", i);
            b.failure("t", i);
        }
        // 18 calls at t = 0; 10 s later they have left the window.
        b.success_at("t", 10_000);
        b.failure("t", 10_000);
        assert_eq!(b.state("t", 10_000), State::Closed);

        // The same 20 calls inside one window open it.
        let b = Breakers::default();
        for i in 0..9 {
            b.success_at("t", i);
            b.failure("t", i);
        }
        b.success_at("t", 9_999);
        b.failure("t", 9_999);
        assert_eq!(b.state("t", 9_999), State::Open { until_ms: 14_999 });
    }

    #[test]
    fn a_good_probe_clears_the_window_that_opened_it() {
        let b = Breakers::default();
        for i in 0..10 {
            b.success_at("t", i);
            b.failure("t", i);
        }
        assert!(matches!(b.state("t", 10), State::Open { .. }));
        assert!(b.admit("t", 5_010));
        b.success_at("t", 5_010);
        b.failure("t", 5_011);
        assert_eq!(
            b.state("t", 5_011),
            State::Closed,
            "the failures before the cool-down do not count again"
        );
    }

    #[test]
    fn forced_open_is_never_admitted_and_forced_closed_always_is() {
        let b = Breakers::default();
        b.set_modes([("down", CircuitMode::Open), ("up", CircuitMode::Closed)]);
        assert_eq!(b.state("down", 0), State::ForcedOpen);
        assert!(!b.admit("down", 0));
        assert_eq!(b.view().state("down", 0), State::ForcedOpen);

        for _ in 0..50 {
            b.failure("up", 0);
        }
        assert_eq!(b.state("up", 0), State::ForcedClosed);
        assert!(b.admit("up", 0));
        assert!(b.admit("up", 0));

        let mut gauges: Vec<(String, i64)> = b
            .all(0)
            .into_iter()
            .map(|(id, s)| (id, s.gauge()))
            .collect();
        gauges.sort();
        assert_eq!(gauges, [("down".to_owned(), 3), ("up".to_owned(), 4)]);
    }

    #[test]
    fn lifting_an_override_hands_the_target_back_to_a_fresh_breaker() {
        let b = Breakers::default();
        for _ in 0..5 {
            b.failure("t", 0);
        }
        assert!(matches!(b.state("t", 0), State::Open { .. }));
        b.set_modes([("t", CircuitMode::Closed)]);
        assert!(b.admit("t", 0), "forced closed wins over an open breaker");
        // A snapshot that no longer forces it: auto again, starting closed.
        b.set_modes([("t", CircuitMode::Auto)]);
        assert_eq!(b.state("t", 0), State::Closed);
        b.set_modes([("t", CircuitMode::Open)]);
        b.set_modes(std::iter::empty());
        assert_eq!(
            b.state("t", 0),
            State::Closed,
            "a target gone from the snapshot"
        );
    }
}

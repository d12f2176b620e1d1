//! What this node sees of each target between snapshots: a peak-EWMA of time
//! to first token and the attempts in flight. Peak-EWMA jumps to a slow
//! sample at once and forgets it gradually, so a target that turns slow is
//! avoided now, not after the fleet notices. Multiplied by the attempts in
//! flight (plus one, for the request being scored), it is the load-aware cost
//! the speed dimension adds when it exceeds the fleet's expectation. Hosted
//! models answer many requests side by side, so in-flight counts are taken
//! relative to the target's usual level here (an average over recent
//! attempts): a steady 20 in flight costs nothing, a sudden surge to 40 costs
//! about 70 % more.
//! (Consecutive failures are the breakers' part: they eject passively.)
//! Lock-free on the request path, like the breakers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use arc_swap::ArcSwap;

/// How fast old samples fade, in milliseconds.
const DECAY_MS: f64 = 10_000.0;

/// Weight of each new in-flight sample in the usual level.
const USUAL_WEIGHT: f64 = 0.02;

#[derive(Debug, Default)]
struct Signal {
    inflight: AtomicI64,
    /// f64 bits of the usual number in flight when an attempt starts.
    usual_bits: AtomicU64,
    /// f64 bits of the EWMA, in milliseconds; 0 before the first sample.
    ewma_bits: AtomicU64,
    stamp_ms: AtomicI64,
}

/// One target's local view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalView {
    pub ttft_ewma_ms: f64,
    pub inflight: u32,
    /// How many are usually in flight when an attempt starts.
    pub usual_inflight: f64,
}

impl LocalView {
    /// Expected wait for a first token here: the EWMA times the load ahead
    /// (the attempts in flight plus this one) relative to the usual load.
    pub fn cost_ms(&self) -> f64 {
        self.ttft_ewma_ms * (f64::from(self.inflight) + 1.0) / (self.usual_inflight + 1.0)
    }
}

#[derive(Default)]
pub struct LocalSignals {
    targets: ArcSwap<HashMap<String, Arc<Signal>>>,
}

/// Counts an attempt in flight until dropped.
pub struct InFlight(Arc<Signal>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl LocalSignals {
    fn get_or_create(&self, target: &str) -> Arc<Signal> {
        if let Some(s) = self.targets.load().get(target) {
            return s.clone();
        }
        self.targets.rcu(|targets| {
            if targets.contains_key(target) {
                return Arc::clone(targets);
            }
            let mut next = HashMap::clone(targets);
            next.insert(target.to_owned(), Arc::new(Signal::default()));
            Arc::new(next)
        });
        self.targets.load().get(target).cloned().unwrap_or_default()
    }

    /// Marks an attempt on `target` in flight until the guard is dropped.
    pub fn start(&self, target: &str) -> InFlight {
        let signal = self.get_or_create(target);
        let ahead = signal.inflight.fetch_add(1, Ordering::Relaxed).max(0) as f64;
        let usual = f64::from_bits(signal.usual_bits.load(Ordering::Relaxed));
        // Racing starters may lose an update; the average stays fair.
        let next = usual + (ahead - usual) * USUAL_WEIGHT;
        signal.usual_bits.store(next.to_bits(), Ordering::Relaxed);
        InFlight(signal)
    }

    /// Takes one time to first token (or the time a first token was waited
    /// for in vain) observed at `now_ms`.
    pub fn observe_ttft(&self, target: &str, ms: f64, now_ms: i64) {
        if !(ms.is_finite() && ms >= 0.0) {
            return;
        }
        let s = self.get_or_create(target);
        let old = f64::from_bits(s.ewma_bits.load(Ordering::Relaxed));
        let elapsed = (now_ms - s.stamp_ms.swap(now_ms, Ordering::Relaxed)).max(0) as f64;
        let next = if old == 0.0 || ms > old {
            ms
        } else {
            let keep = (-elapsed / DECAY_MS).exp();
            old * keep + ms * (1.0 - keep)
        };
        // Concurrent observers may race; either result is a fair estimate.
        s.ewma_bits.store(next.to_bits(), Ordering::Relaxed);
    }

    /// The local view of `target`, once it has a sample.
    pub fn view(&self, target: &str) -> Option<LocalView> {
        let targets = self.targets.load();
        let s = targets.get(target)?;
        let ewma = f64::from_bits(s.ewma_bits.load(Ordering::Relaxed));
        (ewma > 0.0).then(|| LocalView {
            ttft_ewma_ms: ewma,
            inflight: u32::try_from(s.inflight.load(Ordering::Relaxed).max(0)).unwrap_or(u32::MAX),
            usual_inflight: f64::from_bits(s.usual_bits.load(Ordering::Relaxed)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_are_taken_at_once_and_forgotten_gradually() {
        let s = LocalSignals::default();
        assert!(s.view("t").is_none());
        s.observe_ttft("t", 100.0, 0);
        s.observe_ttft("t", 900.0, 1_000);
        assert_eq!(s.view("t").unwrap().ttft_ewma_ms, 900.0);
        s.observe_ttft("t", 100.0, 11_000);
        let after = s.view("t").unwrap().ttft_ewma_ms;
        // One decay time later, about 37 % of the peak's excess remains.
        assert!(
            (after - (100.0 + 800.0 * (-1.0f64).exp())).abs() < 1e-6,
            "{after}"
        );
    }

    #[test]
    fn a_surge_above_the_usual_load_multiplies_the_cost_and_a_steady_load_does_not() {
        let s = LocalSignals::default();
        s.observe_ttft("t", 200.0, 0);
        let a = s.start("t");
        let b = s.start("t");
        // New to the target: the usual level is still about zero.
        let cost = s.view("t").unwrap().cost_ms();
        assert!((580.0..=600.0).contains(&cost), "{cost}");
        drop(a);
        drop(b);
        // A steady 20 in flight becomes the usual level and costs nothing extra.
        let steady: Vec<_> = (0..20).map(|_| s.start("t")).collect();
        for _ in 0..500 {
            drop(s.start("t"));
        }
        let view = s.view("t").unwrap();
        assert_eq!(view.inflight, 20);
        assert!((view.cost_ms() - 200.0).abs() < 10.0, "{view:?}");
        // A sudden surge to twice that raises it by about 70 % (the surge
        // itself lifts the usual level a little as its attempts start).
        let surge: Vec<_> = (0..21).map(|_| s.start("t")).collect();
        let cost = s.view("t").unwrap().cost_ms();
        assert!((320.0..=360.0).contains(&cost), "{cost}");
        drop((steady, surge));
    }
}

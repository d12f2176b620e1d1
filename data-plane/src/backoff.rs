//! Exponential back-off with full jitter, for reconnect loops: many data planes
//! that lose the control plane at once must not come back in lockstep.

use std::time::Duration;

use rand::Rng;

pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// A random delay in [0, min(max, base * 2^attempt)], growing with each call.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_a_growing_capped_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings = [100, 200, 400, 800, 1000, 1000];
        for ceiling in ceilings {
            assert!(b.next_delay() <= Duration::from_millis(ceiling));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}

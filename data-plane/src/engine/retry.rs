//! The retry budget: retries stay a bounded share of each target's traffic, so
//! an outage does not turn into a retry storm. Every first attempt on a target
//! earns a fraction of a retry, banked up to a cap; every retry spends a whole
//! one. When a target fails everything, its bank drains and retries stop until
//! first attempts refill it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Retries earned per first attempt, in thousandths.
const EARNED_PER_REQUEST: i64 = 200;
/// Most retries a target can bank, in thousandths. A fresh target starts full.
const CAP: i64 = 10_000;
const ONE_RETRY: i64 = 1_000;

/// Back-off between retries of one target: full jitter up to this ceiling.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct RetryBudget {
    banks: RwLock<HashMap<String, Arc<AtomicI64>>>,
}

impl RetryBudget {
    fn bank(&self, target: &str) -> Arc<AtomicI64> {
        if let Ok(banks) = self.banks.read()
            && let Some(bank) = banks.get(target)
        {
            return bank.clone();
        }
        match self.banks.write() {
            Ok(mut banks) => banks
                .entry(target.to_owned())
                .or_insert_with(|| Arc::new(AtomicI64::new(CAP)))
                .clone(),
            // A poisoned lock means a panic elsewhere; a fresh bank keeps routing going.
            Err(_) => Arc::new(AtomicI64::new(CAP)),
        }
    }

    /// A first attempt on `target`.
    pub fn earn(&self, target: &str) {
        let bank = self.bank(target);
        let _ = bank.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some((v + EARNED_PER_REQUEST).min(CAP))
        });
    }

    /// Takes one retry from `target`'s bank; false when it is empty.
    pub fn try_spend(&self, target: &str) -> bool {
        self.bank(target)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v >= ONE_RETRY).then_some(v - ONE_RETRY)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_target_drains_its_bank_and_traffic_refills_it() {
        let budget = RetryBudget::default();
        let mut granted = 0;
        for _ in 0..100 {
            budget.earn("a");
            if budget.try_spend("a") {
                granted += 1;
            }
        }
        // 10 banked at the start (the first request's 0.2 finds the bank full)
        // plus 0.2 for each of the other 99: 29 whole retries for 100 requests.
        assert_eq!(granted, 29);
        assert!(!budget.try_spend("a"));
        // Other targets keep their own bank.
        assert!(budget.try_spend("b"));
        for _ in 0..5 {
            budget.earn("a");
        }
        assert!(budget.try_spend("a"));
        assert!(!budget.try_spend("a"));
    }
}

//! The in-process store: one TAT per limit, used when no Redis is configured
//! and while Redis is unreachable. Memory is bounded: limits whose TAT has
//! passed hold nothing a fresh entry would not, so they are swept away, and
//! when the table is still full the entries closest to idle go first.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::gcra::{self, Cell, Verdict};

/// How often idle entries are swept while the table is below its cap.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct LocalStore {
    epoch: Instant,
    max_entries: usize,
    table: Mutex<Table>,
}

struct Table {
    /// TAT per storage key, in microseconds since `epoch`.
    tats: HashMap<String, f64>,
    last_sweep: f64,
}

impl LocalStore {
    pub fn new(max_entries: usize) -> Self {
        Self {
            epoch: Instant::now(),
            max_entries: max_entries.max(1),
            table: Mutex::new(Table {
                tats: HashMap::new(),
                last_sweep: 0.0,
            }),
        }
    }

    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1e6
    }

    /// Charges every cell or none. Returns the verdict and each cell's debt
    /// after it (with the cost if admitted).
    pub async fn admit(&self, keys: &[String], cells: &[Cell]) -> (Verdict, Vec<f64>) {
        let mut table = self.table.lock().await;
        let now = self.now();
        let mut debts: Vec<f64> = keys
            .iter()
            .map(|key| table.tats.get(key).map_or(0.0, |tat| gcra::debt(*tat, now)))
            .collect();
        let verdict = gcra::evaluate(&debts, cells);
        if verdict == Verdict::Admit {
            for ((key, cell), debt) in keys.iter().zip(cells).zip(&mut debts) {
                if cell.cost > 0.0 {
                    *debt += cell.cost;
                    table.set(key, now + *debt);
                }
            }
            table.bound(now, self.max_entries);
        }
        (verdict, debts)
    }

    /// Moves each key's TAT by its delta (a debit or, negative, a refund),
    /// never below now.
    pub async fn adjust(&self, adjustments: &[(String, f64)]) {
        let mut table = self.table.lock().await;
        let now = self.now();
        for (key, delta) in adjustments {
            let tat = table.tats.get(key).map_or(now, |tat| tat.max(now)) + delta;
            if tat > now {
                table.set(key, tat);
            } else {
                table.tats.remove(key);
            }
        }
        table.bound(now, self.max_entries);
    }

    #[cfg(test)]
    async fn len(&self) -> usize {
        self.table.lock().await.tats.len()
    }
}

impl Table {
    fn set(&mut self, key: &str, tat: f64) {
        match self.tats.get_mut(key) {
            Some(slot) => *slot = tat,
            None => {
                self.tats.insert(key.to_owned(), tat);
            }
        }
    }

    /// Sweeps idle entries now and then, and whenever the table is over its
    /// cap; if that is not enough, drops the half closest to idle. Either is
    /// rare enough that the cost per request stays constant on average.
    fn bound(&mut self, now: f64, max_entries: usize) {
        let due = now - self.last_sweep >= SWEEP_EVERY.as_secs_f64() * 1e6;
        if !due && self.tats.len() <= max_entries {
            return;
        }
        self.last_sweep = now;
        self.tats.retain(|_, tat| *tat > now);
        if self.tats.len() <= max_entries {
            return;
        }
        let mut tats: Vec<f64> = self.tats.values().copied().collect();
        let middle = tats.len() / 2;
        let (_, cut, _) = tats.select_nth_unstable_by(middle, f64::total_cmp);
        let cut = *cut;
        self.tats.retain(|_, tat| *tat > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::scope::Rate;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[tokio::test]
    async fn all_cells_are_charged_or_none() {
        let store = LocalStore::new(100);
        let tight = Cell::new(Rate::per_minute(2), 1, 1.0).unwrap();
        let loose = Cell::new(Rate::per_minute(100), 1, 1.0).unwrap();
        let both = keys(&["k", "w"]);
        assert_eq!(store.admit(&both, &[tight, loose]).await.0, Verdict::Admit);
        assert_eq!(store.admit(&both, &[tight, loose]).await.0, Verdict::Admit);
        let (verdict, debts) = store.admit(&both, &[tight, loose]).await;
        assert!(matches!(verdict, Verdict::Deny { index: 0, .. }));
        // The denied request took nothing from the loose limit: 2 of 100 used.
        assert_eq!(loose.remaining(debts[1], 100), 98);
    }

    #[tokio::test]
    async fn refunds_free_capacity_and_debits_take_it() {
        let store = LocalStore::new(100);
        let rate = Rate::per_minute(1_000);
        let key = keys(&["t"]);
        let cell = Cell::new(rate, 800, 1.0).unwrap();
        assert_eq!(store.admit(&key, &[cell]).await.0, Verdict::Admit);
        assert!(matches!(
            store.admit(&key, &[cell]).await.0,
            Verdict::Deny { .. }
        ));
        // Only 100 of the 800 were used.
        store
            .adjust(&[("t".to_owned(), -700.0 * cell.interval)])
            .await;
        assert_eq!(store.admit(&key, &[cell]).await.0, Verdict::Admit);
        // Then 100 more than estimated: 1,000 spent, nothing left.
        store
            .adjust(&[("t".to_owned(), 100.0 * cell.interval)])
            .await;
        let one = Cell::new(rate, 1, 1.0).unwrap();
        let (verdict, debts) = store.admit(&key, &[one]).await;
        assert!(matches!(verdict, Verdict::Deny { .. }), "{debts:?}");
        // A refund larger than the debt leaves a full bucket, not more.
        store
            .adjust(&[("t".to_owned(), -5_000.0 * one.interval)])
            .await;
        let (_, debts) = store.admit(&key, &[one]).await;
        assert_eq!(one.remaining(debts[0], 1_000), 999);
    }

    #[tokio::test]
    async fn the_table_stays_within_its_cap() {
        let store = LocalStore::new(64);
        let cell = Cell::new(Rate::per_minute(10), 1, 1.0).unwrap();
        for i in 0..1_000 {
            let key = vec![format!("key-{i}")];
            assert_eq!(store.admit(&key, &[cell]).await.0, Verdict::Admit);
            assert!(store.len().await <= 64);
        }
        // The newest scopes are kept.
        let newest = vec!["key-999".to_owned()];
        let (_, debts) = store.admit(&newest, &[cell]).await;
        assert_eq!(cell.remaining(debts[0], 10), 8);
    }

    #[tokio::test]
    async fn idle_entries_are_dropped() {
        let store = LocalStore::new(1);
        // A zero cost leaves nothing behind; a charge that has run out is
        // swept when the next one would go over the cap.
        let free = Cell::new(Rate::per_minute(10), 0, 1.0).unwrap();
        store.admit(&keys(&["a"]), &[free]).await;
        assert_eq!(store.len().await, 0);
        store.adjust(&[("b".to_owned(), 1.0)]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
        let cell = Cell::new(Rate::per_minute(10), 1, 1.0).unwrap();
        store.admit(&keys(&["c"]), &[cell]).await;
        assert_eq!(store.len().await, 1);
    }
}

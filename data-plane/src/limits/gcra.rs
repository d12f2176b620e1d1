//! GCRA (the generic cell rate algorithm) as plain arithmetic, used by the
//! in-process store and mirrored line for line by the Redis script
//! (`admit.lua`).
//!
//! Each limit keeps one number, its theoretical arrival time (TAT). Its
//! *debt* is how far the TAT lies ahead of now (0 once it has passed: the
//! bucket is full). Every unit costs one emission interval (a minute divided
//! by the rate); a request fits when its debt plus its cost stays within the
//! window, `burst` intervals. Time is in microseconds, as `f64`: intervals of
//! fast token rates are fractions of a microsecond.

use super::scope::Rate;

/// Slack for rounding when a request fills the window exactly (a limit of 7
/// a minute: seven intervals of 60/7 s may add up to a hair over 60 s).
pub(crate) const EPSILON_US: f64 = 1.0;

/// One limit's part in a decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cell {
    /// What the request adds to the debt.
    pub cost: f64,
    /// Most debt the limit tolerates.
    pub window: f64,
    /// Time to earn back one unit.
    pub interval: f64,
}

impl Cell {
    /// `units` against `rate`, of which this node enforces `share` (1 when
    /// the fleet shares the limit through Redis). `None` when the request can
    /// never fit: the rate admits nothing or `units` exceeds the burst.
    pub fn new(rate: Rate, units: u32, share: f64) -> Option<Self> {
        let base = rate.interval_us()?;
        if units > rate.burst {
            return None;
        }
        // A node's share earns units `1/share` times slower within the same
        // window, so it may spend `burst × share` at once.
        let interval = base / share;
        let cost = f64::from(units) * interval;
        // A request within the fleet's burst but above this node's share of
        // it still passes when the local bucket is full; otherwise it could
        // never pass while Redis is down.
        let window = (f64::from(rate.burst) * base).max(cost);
        Some(Self {
            cost,
            window,
            interval,
        })
    }

    /// Units left after `debt`, capped at `limit`.
    pub fn remaining(&self, debt: f64, limit: u32) -> u32 {
        let units = ((self.window - debt).max(0.0) + EPSILON_US) / self.interval;
        (units.floor() as u32).min(limit)
    }
}

/// The bucket size reported to clients: the burst, or this node's share of it.
pub(crate) fn reported_limit(rate: Rate, share: f64) -> u32 {
    ((f64::from(rate.burst) * share).floor() as u32).max(1)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verdict {
    Admit,
    /// `cells[index]` needs the longest wait, `retry_us`.
    Deny {
        index: usize,
        retry_us: f64,
    },
}

/// All cells admit the request or it is denied; `debts[i]` belongs to `cells[i]`.
pub(crate) fn evaluate(debts: &[f64], cells: &[Cell]) -> Verdict {
    let mut verdict = Verdict::Admit;
    let mut longest = EPSILON_US;
    for (index, (debt, cell)) in debts.iter().zip(cells).enumerate() {
        let need = debt + cell.cost - cell.window;
        if need > longest {
            longest = need;
            verdict = Verdict::Deny {
                index,
                retry_us: need,
            };
        }
    }
    verdict
}

/// The debt behind a TAT at `now`.
pub(crate) fn debt(tat: f64, now: f64) -> f64 {
    (tat - now).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cell: Cell, tat: &mut f64, now: f64) -> Verdict {
        let debts = [debt(*tat, now)];
        let verdict = evaluate(&debts, &[cell]);
        if verdict == Verdict::Admit {
            *tat = now.max(*tat) + cell.cost;
        }
        verdict
    }

    #[test]
    fn a_full_bucket_admits_exactly_the_burst_then_one_per_interval() {
        for per_minute in [1, 7, 60, 600, 1000, 99_999] {
            let cell = Cell::new(Rate::per_minute(per_minute), 1, 1.0).unwrap();
            let mut tat = 0.0;
            let now = 1e9;
            let admitted = (0..per_minute + 5)
                .filter(|_| run(cell, &mut tat, now) == Verdict::Admit)
                .count();
            assert_eq!(admitted, per_minute as usize, "rate {per_minute}");
            // The next one waits exactly one interval, and fits after it.
            let Verdict::Deny { retry_us, .. } = run(cell, &mut tat, now) else {
                panic!("rate {per_minute}: admitted past the burst");
            };
            let interval = 60e6 / f64::from(per_minute);
            assert!(
                (retry_us - interval).abs() < 1.0,
                "{retry_us} vs {interval}"
            );
            assert_eq!(run(cell, &mut tat, now + retry_us), Verdict::Admit);
            assert!(matches!(
                run(cell, &mut tat, now + retry_us),
                Verdict::Deny { .. }
            ));
        }
    }

    #[test]
    fn a_sustained_rate_is_the_rate() {
        // 120 a minute, asked 10 times a second for 5 minutes: the burst of
        // 120 plus 2 a second.
        let cell = Cell::new(Rate::per_minute(120), 1, 1.0).unwrap();
        let mut tat = 0.0;
        let admitted = (0..3000)
            .filter(|i| run(cell, &mut tat, f64::from(*i) * 100_000.0) == Verdict::Admit)
            .count();
        assert_eq!(admitted, 120 + 600 - 1);
    }

    #[test]
    fn a_burst_smaller_than_the_rate_caps_what_passes_at_once() {
        let cell = Cell::new(Rate::per_minute(600).with_burst(10), 1, 1.0).unwrap();
        let mut tat = 0.0;
        let admitted = (0..50)
            .filter(|_| run(cell, &mut tat, 5e6) == Verdict::Admit)
            .count();
        assert_eq!(admitted, 10);
        assert_eq!(cell.remaining(debt(tat, 5e6), 10), 0);
        // A tenth of a second later, one interval has passed.
        assert_eq!(cell.remaining(debt(tat, 5.1e6), 10), 1);
    }

    #[test]
    fn tokens_cost_their_count_and_never_fit_above_the_burst() {
        let rate = Rate::per_minute(10_000);
        let cell = Cell::new(rate, 4_000, 1.0).unwrap();
        let mut tat = 0.0;
        assert_eq!(run(cell, &mut tat, 0.0), Verdict::Admit);
        assert_eq!(run(cell, &mut tat, 0.0), Verdict::Admit);
        assert_eq!(cell.remaining(debt(tat, 0.0), 10_000), 2_000);
        let Verdict::Deny { retry_us, .. } = run(cell, &mut tat, 0.0) else {
            panic!("8,000 of 10,000 tokens spent, 4,000 more admitted");
        };
        // 2,000 tokens short at 6 ms a token.
        assert!((retry_us - 12e6).abs() < 1.0, "{retry_us}");
        assert!(Cell::new(rate, 10_001, 1.0).is_none());
        assert!(Cell::new(Rate::per_minute(0), 1, 1.0).is_none());
        assert!(Cell::new(Rate::per_minute(5).with_burst(0), 1, 1.0).is_none());
    }

    #[test]
    fn a_share_scales_the_burst_and_the_rate() {
        // A quarter of 400 a minute: 100 at once, then one every 600 ms.
        let cell = Cell::new(Rate::per_minute(400), 1, 0.25).unwrap();
        let mut tat = 0.0;
        let admitted = (0..500)
            .filter(|_| run(cell, &mut tat, 0.0) == Verdict::Admit)
            .count();
        assert_eq!(admitted, 100);
        assert_eq!(reported_limit(Rate::per_minute(400), 0.25), 100);
        let Verdict::Deny { retry_us, .. } = run(cell, &mut tat, 0.0) else {
            panic!("past a quarter of the burst");
        };
        assert!((retry_us - 600_000.0).abs() < 1.0, "{retry_us}");
    }

    #[test]
    fn a_request_above_the_local_share_passes_only_into_a_full_bucket() {
        // 1,000 tokens a minute over 4 nodes: 250 each; a 600-token request
        // fits the fleet's burst but not one node's.
        let cell = Cell::new(Rate::per_minute(1_000), 600, 0.25).unwrap();
        let mut tat = 0.0;
        assert_eq!(run(cell, &mut tat, 0.0), Verdict::Admit);
        assert!(matches!(run(cell, &mut tat, 1e6), Verdict::Deny { .. }));
        // It owes 600 tokens at 250 a minute: 2.4 minutes.
        assert_eq!(run(cell, &mut tat, 144e6 + 1.0), Verdict::Admit);
    }

    #[test]
    fn the_longest_wait_decides_and_names_its_cell() {
        let short = Cell::new(Rate::per_minute(60), 1, 1.0).unwrap();
        let long = Cell::new(Rate::per_minute(6), 1, 1.0).unwrap();
        let full = [short.window, long.window];
        assert_eq!(
            evaluate(&full, &[short, long]),
            Verdict::Deny {
                index: 1,
                retry_us: 10e6
            }
        );
        assert_eq!(evaluate(&[0.0, 0.0], &[short, long]), Verdict::Admit);
        assert!(matches!(
            evaluate(&[0.0, long.window], &[short, long]),
            Verdict::Deny { index: 1, .. }
        ));
    }

    #[test]
    fn tats_in_the_past_are_no_debt() {
        assert_eq!(debt(5.0, 10.0), 0.0);
        assert_eq!(debt(15.0, 10.0), 5.0);
    }
}

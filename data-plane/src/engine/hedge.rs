//! Hedged requests. When the primary target has produced no first token by its
//! p95 time to first token, the next candidate starts too; the first to produce
//! output wins and the other is cancelled (its connection dropped). Opt-in per
//! strategy; never for requests with tools, whose calls must not run twice.
//!
//! Hedges are capped as a share of traffic by a budget: every request that may
//! be hedged earns its strategy's share of a hedge, banked up to a small burst;
//! every hedge spends a whole one.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::providers::ProviderError;

/// Most hedges banked, in thousandths: a burst of five.
const CAP: i64 = 5_000;
const ONE_HEDGE: i64 = 1_000;

pub struct HedgeBudget {
    bank: AtomicI64,
}

impl Default for HedgeBudget {
    fn default() -> Self {
        Self {
            bank: AtomicI64::new(CAP),
        }
    }
}

impl HedgeBudget {
    /// A request that may be hedged.
    pub fn earn(&self, share: f64) {
        // Bounded in [0, 1], so the cast cannot overflow.
        #[allow(clippy::cast_possible_truncation, reason = "share is within [0, 1]")]
        let earned = (share.clamp(0.0, 1.0) * ONE_HEDGE as f64) as i64;
        let _ = self
            .bank
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some((v + earned).min(CAP))
            });
    }

    /// Takes one hedge; false when the bank is empty.
    pub fn try_spend(&self) -> bool {
        self.bank
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v >= ONE_HEDGE).then_some(v - ONE_HEDGE)
            })
            .is_ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Primary,
    Backup,
}

/// How a race between the primary and its hedge ended.
pub enum Race<T> {
    /// The primary finished (well or not) before the hedge was due, or no
    /// hedge could start.
    Alone(Result<T, ProviderError>),
    /// Both ran; `winner` produced output first. The loser was cancelled, or
    /// had already failed with `loser_error`.
    Won {
        winner: Side,
        head: T,
        loser_error: Option<ProviderError>,
    },
    /// Both ran and both failed.
    BothFailed {
        primary: ProviderError,
        backup: ProviderError,
    },
}

/// Runs `primary`; if it has produced nothing after `delay` and `start_backup`
/// agrees (budget, breaker), runs `backup` beside it. The first success wins;
/// dropping the other future cancels its provider call.
pub async fn race<T, P, B>(
    primary: P,
    delay: Duration,
    start_backup: impl FnOnce() -> Option<B>,
) -> Race<T>
where
    P: Future<Output = Result<T, ProviderError>>,
    B: Future<Output = Result<T, ProviderError>>,
{
    tokio::pin!(primary);
    tokio::select! {
        result = &mut primary => return Race::Alone(result),
        () = tokio::time::sleep(delay) => {}
    }
    let Some(backup) = start_backup() else {
        return Race::Alone(primary.await);
    };
    tokio::pin!(backup);
    let mut primary_error = None;
    let mut backup_error = None;
    loop {
        tokio::select! {
            result = &mut primary, if primary_error.is_none() => match result {
                Ok(head) => return Race::Won { winner: Side::Primary, head, loser_error: backup_error },
                Err(e) => primary_error = Some(e),
            },
            result = &mut backup, if backup_error.is_none() => match result {
                Ok(head) => return Race::Won { winner: Side::Backup, head, loser_error: primary_error },
                Err(e) => backup_error = Some(e),
            },
        }
        if let (Some(primary), Some(backup)) = (&primary_error, &backup_error) {
            return Race::BothFailed {
                primary: primary.clone(),
                backup: backup.clone(),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ErrorClass;

    fn fail() -> ProviderError {
        ProviderError::new(ErrorClass::Transient, "down")
    }

    async fn after(
        ms: u64,
        result: Result<&'static str, ProviderError>,
    ) -> Result<&'static str, ProviderError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        result
    }

    #[tokio::test(start_paused = true)]
    async fn a_primary_in_time_runs_alone() {
        let race = race(after(50, Ok("p")), Duration::from_millis(100), || {
            Some(after(0, Ok("b")))
        })
        .await;
        assert!(matches!(race, Race::Alone(Ok("p"))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_primary_loses_to_a_faster_backup() {
        let race = race(after(1_000, Ok("p")), Duration::from_millis(100), || {
            Some(after(50, Ok("b")))
        })
        .await;
        assert!(matches!(
            race,
            Race::Won {
                winner: Side::Backup,
                head: "b",
                loser_error: None
            }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_backup_leaves_the_primary_to_finish() {
        let race = race(after(300, Ok("p")), Duration::from_millis(100), || {
            Some(after(10, Err(fail())))
        })
        .await;
        assert!(matches!(
            race,
            Race::Won {
                winner: Side::Primary,
                head: "p",
                loser_error: Some(_)
            }
        ));
        let both = race_both_fail().await;
        assert!(matches!(both, Race::BothFailed { .. }));
    }

    async fn race_both_fail() -> Race<&'static str> {
        race(after(300, Err(fail())), Duration::from_millis(100), || {
            Some(after(10, Err(fail())))
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_backup_the_primary_is_awaited() {
        let race = race(after(300, Ok("p")), Duration::from_millis(100), || {
            None::<std::future::Ready<Result<&'static str, ProviderError>>>
        })
        .await;
        assert!(matches!(race, Race::Alone(Ok("p"))));
    }

    #[test]
    fn hedges_stay_a_bounded_share_of_traffic() {
        let budget = HedgeBudget::default();
        let mut hedged = 0;
        for _ in 0..1_000 {
            budget.earn(0.1);
            if budget.try_spend() {
                hedged += 1;
            }
        }
        // The burst of five, then one hedge per ten requests.
        assert!((100..=106).contains(&hedged), "{hedged}");
        assert!(!budget.try_spend());
    }
}

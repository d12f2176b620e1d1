//! One data plane's record of one target over one window, as the aggregator
//! keeps it: counts by outcome and mergeable sketches of latency, time to
//! first token and time per output token. Windows from any node and any span
//! add up into the same shape.

use std::collections::BTreeMap;

use switchyard_domain::{QuantileSketch, ValidationError, timestamp_to_millis};
use switchyard_proto::v1 as pb;

const RATE_LIMITED: i32 = pb::ErrorClass::RateLimited as i32;
const TIMEOUT: i32 = pb::ErrorClass::Timeout as i32;
const CANCELLED: i32 = pb::ErrorClass::Cancelled as i32;
/// A window longer than this is not a data plane's pre-aggregate.
const MAX_WINDOW_MS: i64 = 5 * 60_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub attempts: u64,
    pub successes: u64,
    /// Failures by error class; 429s included under RATE_LIMITED.
    pub errors: BTreeMap<i32, u64>,
    pub retries: u64,
    pub probes: u64,
    pub latency_ms: QuantileSketch,
    pub ttft_ms: QuantileSketch,
    pub tpot_ms: QuantileSketch,
    /// Latest Retry-After a 429 asked for (Unix ms); 0 when none.
    pub retry_after_until_ms: i64,
    /// The longest run of failures any node reported at a window's end.
    pub consecutive_failures: u64,
}

impl Counts {
    pub fn merge(&mut self, other: &Self) {
        self.attempts += other.attempts;
        self.successes += other.successes;
        for (class, n) in &other.errors {
            *self.errors.entry(*class).or_default() += n;
        }
        self.retries += other.retries;
        self.probes += other.probes;
        self.latency_ms.merge(&other.latency_ms);
        self.ttft_ms.merge(&other.ttft_ms);
        self.tpot_ms.merge(&other.tpot_ms);
        self.retry_after_until_ms = self.retry_after_until_ms.max(other.retry_after_until_ms);
        self.consecutive_failures = self.consecutive_failures.max(other.consecutive_failures);
    }

    pub fn rate_limited(&self) -> u64 {
        self.errors.get(&RATE_LIMITED).copied().unwrap_or(0)
    }

    pub fn timeouts(&self) -> u64 {
        self.errors.get(&TIMEOUT).copied().unwrap_or(0)
    }

    /// Failures that say the target is sick: every error but 429s.
    pub fn failures(&self) -> u64 {
        self.errors.values().sum::<u64>() - self.rate_limited()
    }

    /// Attempts that say something about the target's health: 429s say it is busy.
    pub fn judged(&self) -> u64 {
        self.successes + self.failures()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WindowRecord {
    pub node_id: String,
    pub target_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub counts: Counts,
}

fn sketch(field: &str, w: Option<&pb::QuantileSketch>) -> Result<QuantileSketch, ValidationError> {
    w.map_or(Ok(QuantileSketch::new()), |w| {
        QuantileSketch::try_from(w).map_err(|e| e.within(field))
    })
}

impl TryFrom<&pb::HealthWindow> for WindowRecord {
    type Error = ValidationError;

    fn try_from(w: &pb::HealthWindow) -> Result<Self, Self::Error> {
        if w.node_id.is_empty() || w.node_id.len() > 256 {
            return Err(ValidationError::new(
                "node_id",
                "required, at most 256 characters",
            ));
        }
        if w.target_id.is_empty() || w.target_id.len() > 512 {
            return Err(ValidationError::new(
                "target_id",
                "required, at most 512 characters",
            ));
        }
        let start_ms = w
            .start
            .as_ref()
            .map(timestamp_to_millis)
            .unwrap_or_default();
        let end_ms = w.end.as_ref().map(timestamp_to_millis).unwrap_or_default();
        if start_ms <= 0 || end_ms < start_ms || end_ms - start_ms > MAX_WINDOW_MS {
            return Err(ValidationError::new(
                "end",
                "start and end are required, start <= end, at most 5 minutes apart",
            ));
        }
        let mut errors = BTreeMap::new();
        for (i, e) in w.errors.iter().enumerate() {
            if pb::ErrorClass::try_from(e.error_class).is_err()
                || e.error_class == 0
                || e.error_class == CANCELLED
            {
                return Err(ValidationError::new(
                    format!("errors[{i}].error_class"),
                    format!("{} is not a failure class", e.error_class),
                ));
            }
            *errors.entry(e.error_class).or_default() += e.count;
        }
        let counts = Counts {
            attempts: w.attempts,
            successes: w.successes,
            errors,
            retries: w.retries,
            probes: w.probes,
            latency_ms: sketch("latency_ms", w.latency_ms.as_ref())?,
            ttft_ms: sketch("ttft_ms", w.ttft_ms.as_ref())?,
            tpot_ms: sketch("tpot_ms", w.tpot_ms.as_ref())?,
            retry_after_until_ms: w
                .retry_after_until
                .as_ref()
                .map(timestamp_to_millis)
                .unwrap_or_default(),
            consecutive_failures: w.consecutive_failures,
        };
        let outcomes = counts.successes.checked_add(counts.errors.values().sum());
        if outcomes.is_none_or(|n| n > counts.attempts)
            || counts.retries > counts.attempts
            || counts.probes > counts.attempts
        {
            return Err(ValidationError::new(
                "attempts",
                "successes plus errors, retries and probes may not exceed attempts",
            ));
        }
        Ok(Self {
            node_id: w.node_id.clone(),
            target_id: w.target_id.clone(),
            start_ms,
            end_ms,
            counts,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use switchyard_domain::timestamp_from_millis;

    use super::*;

    pub(crate) fn wire(node: &str, target: &str, end_ms: i64) -> pb::HealthWindow {
        pb::HealthWindow {
            node_id: node.into(),
            target_id: target.into(),
            start: Some(timestamp_from_millis(end_ms - 1000)),
            end: Some(timestamp_from_millis(end_ms)),
            attempts: 10,
            successes: 6,
            errors: vec![
                pb::ErrorCount {
                    error_class: RATE_LIMITED,
                    count: 2,
                },
                pb::ErrorCount {
                    error_class: TIMEOUT,
                    count: 1,
                },
                pb::ErrorCount {
                    error_class: pb::ErrorClass::Transient as i32,
                    count: 1,
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn counts_keep_429s_apart_from_failures() {
        let w = WindowRecord::try_from(&wire("n", "a/m", 10_000)).unwrap();
        assert_eq!(
            (
                w.counts.rate_limited(),
                w.counts.failures(),
                w.counts.judged()
            ),
            (2, 2, 8)
        );
        assert_eq!(w.counts.timeouts(), 1);
        let mut sum = w.counts.clone();
        sum.merge(&w.counts);
        assert_eq!((sum.attempts, sum.failures()), (20, 4));
    }

    #[test]
    fn bad_windows_are_refused_naming_the_field() {
        let mut w = wire("n", "a/m", 10_000);
        w.successes = 9;
        assert_eq!(WindowRecord::try_from(&w).unwrap_err().field, "attempts");
        let mut w = wire("", "a/m", 10_000);
        assert_eq!(WindowRecord::try_from(&w).unwrap_err().field, "node_id");
        w = wire("n", "a/m", 10_000);
        w.errors[0].error_class = CANCELLED;
        assert_eq!(
            WindowRecord::try_from(&w).unwrap_err().field,
            "errors[0].error_class"
        );
        w = wire("n", "a/m", 10_000);
        w.end = None;
        assert_eq!(WindowRecord::try_from(&w).unwrap_err().field, "end");
    }
}

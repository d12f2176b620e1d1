//! A target's windows in one-second buckets over the longest sliding window,
//! so any shorter window is a merge of its newest buckets.

use std::collections::{BTreeSet, VecDeque};

use super::window::{Counts, WindowRecord};

/// The longest window kept, in seconds.
pub const HORIZON_SECONDS: i64 = 300;

#[derive(Debug, Default)]
struct Bucket {
    second: i64,
    counts: Counts,
    nodes: BTreeSet<String>,
}

/// What a target did over one window.
#[derive(Debug, Clone, Default)]
pub struct Rollup {
    pub seconds: u32,
    pub counts: Counts,
    pub nodes: usize,
}

#[derive(Debug, Default)]
pub struct Series {
    /// Oldest first.
    buckets: VecDeque<Bucket>,
}

impl Series {
    /// Files a window under the second it ended in.
    pub fn add(&mut self, record: &WindowRecord) {
        let second = record.end_ms.div_euclid(1000);
        let at = self.buckets.partition_point(|b| b.second < second);
        if self.buckets.get(at).is_none_or(|b| b.second != second) {
            self.buckets.insert(
                at,
                Bucket {
                    second,
                    ..Default::default()
                },
            );
        }
        if let Some(bucket) = self.buckets.get_mut(at) {
            bucket.counts.merge(&record.counts);
            if !bucket.nodes.contains(&record.node_id) {
                bucket.nodes.insert(record.node_id.clone());
            }
        }
    }

    /// Drops buckets older than the horizon.
    pub fn prune(&mut self, now_ms: i64) {
        let oldest = now_ms.div_euclid(1000) - HORIZON_SECONDS;
        while self.buckets.front().is_some_and(|b| b.second < oldest) {
            self.buckets.pop_front();
        }
    }

    /// Windows of the last `spans` seconds up to `now_ms`, counting only
    /// windows that ended at or after `not_before_ms` (evidence older than a
    /// state change is moot). Shortest first (`spans` ascending): each extends
    /// the one before, so every bucket is merged once.
    pub fn rollups(&self, now_ms: i64, spans: &[u32], not_before_ms: i64) -> Vec<Rollup> {
        let now_s = now_ms.div_euclid(1000);
        let floor = not_before_ms.div_euclid(1000);
        let mut out = Vec::with_capacity(spans.len());
        let mut counts = Counts::default();
        let mut nodes = BTreeSet::new();
        let mut newest_first = self.buckets.iter().rev().peekable();
        for &seconds in spans {
            let first = (now_s - i64::from(seconds)).max(floor);
            while let Some(bucket) = newest_first.next_if(|b| b.second > first) {
                counts.merge(&bucket.counts);
                nodes.extend(bucket.nodes.iter());
            }
            out.push(Rollup {
                seconds,
                counts: counts.clone(),
                nodes: nodes.len(),
            });
        }
        out
    }

    /// The newest bucket's runs of failures, if it falls within the last
    /// `seconds` and after `not_before_ms`: what the nodes say right now.
    pub fn latest_run(&self, now_ms: i64, seconds: u32, not_before_ms: i64) -> u64 {
        let first =
            (now_ms.div_euclid(1000) - i64::from(seconds)).max(not_before_ms.div_euclid(1000));
        self.buckets
            .back()
            .filter(|b| b.second > first)
            .map_or(0, |b| b.counts.consecutive_failures)
    }

    /// When the target last had an attempt, in Unix ms; 0 for never (within the horizon).
    pub fn last_seen_ms(&self) -> i64 {
        self.buckets.back().map_or(0, |b| b.second * 1000)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn record(node: &str, end_ms: i64, attempts: u64) -> WindowRecord {
        WindowRecord {
            node_id: node.into(),
            target_id: "a/m".into(),
            start_ms: end_ms - 1000,
            end_ms,
            counts: Counts {
                attempts,
                successes: attempts,
                ..Default::default()
            },
        }
    }

    #[test]
    fn windows_roll_up_by_span_and_nodes_and_age_out() {
        let mut s = Series::default();
        // Out of order, as windows from several nodes arrive.
        s.add(&record("b", 100_500, 2));
        s.add(&record("a", 95_000, 1));
        s.add(&record("a", 100_200, 4));
        let ten = &s.rollups(101_000, &[10], 0)[0];
        assert_eq!((ten.counts.attempts, ten.nodes), (7, 2));
        assert_eq!(s.rollups(101_000, &[3], 0)[0].counts.attempts, 6);
        assert_eq!(s.rollups(101_000, &[10], 99_000)[0].counts.attempts, 6);
        let nested: Vec<u64> = s
            .rollups(101_000, &[3, 10], 0)
            .iter()
            .map(|r| r.counts.attempts)
            .collect();
        assert_eq!(nested, [6, 7]);
        s.prune(101_000 + 1000 * HORIZON_SECONDS - 2000);
        assert_eq!(s.rollups(399_000, &[300], 0)[0].counts.attempts, 6);
        s.prune(200_000 + 1000 * HORIZON_SECONDS);
        assert!(s.buckets.is_empty());
    }
}

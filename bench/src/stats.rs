//! Latency statistics: exact percentiles over every collected sample.

use std::time::Duration;

/// p50, p90 and p99 of one set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Percentiles {
    /// `None` when there are no samples.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Some(Self {
            p50: percentile(&sorted, 50.0)?,
            p90: percentile(&sorted, 90.0)?,
            p99: percentile(&sorted, 99.0)?,
        })
    }
}

/// Nearest-rank percentile of already sorted samples, in milliseconds: the
/// smallest sample that at least `p` percent of the samples are not above.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // Nearest rank is ceil(p/100 * n), 1-based; clamp into the slice.
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    let index = rank.clamp(1, n) - 1;
    sorted.get(index).map(|d| d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        let samples = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 90.0), Some(90.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
    }

    #[test]
    fn small_sets_and_unsorted_input() {
        let p = Percentiles::of(&ms(&[30, 10, 20])).unwrap();
        assert_eq!((p.p50, p.p90, p.p99), (20.0, 30.0, 30.0));
        assert_eq!(percentile(&ms(&[7]), 0.0), Some(7.0));
        assert_eq!(Percentiles::of(&[]), None);
    }
}

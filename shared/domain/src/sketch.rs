//! A mergeable quantile sketch (DDSketch, Masson et al., VLDB 2019). Values land
//! in logarithmic buckets; a bucket's width bounds the relative error of any
//! quantile read from it. Every node uses the one configuration below, so
//! sketches from many data planes and many windows merge by adding counts, and
//! a merged sketch answers as accurately as one fed every value directly.

use switchyard_proto::v1 as pb;

use crate::ValidationError;

/// Any quantile read back is within 1 % of the true value.
pub const SKETCH_RELATIVE_ACCURACY: f64 = 0.01;
/// Values at or below this (milliseconds) count as zero.
const MIN_INDEXABLE: f64 = 1e-3;
/// Enough for 1 µs to a day in milliseconds at 1 %; past it the lowest
/// buckets fold together, which only coarsens the smallest values.
const MAX_BUCKETS: usize = 2048;

fn ln_gamma() -> f64 {
    let a = SKETCH_RELATIVE_ACCURACY;
    ((1.0 + a) / (1.0 - a)).ln()
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuantileSketch {
    zero_count: u64,
    /// Bucket index of `counts[0]`.
    offset: i32,
    counts: Vec<u64>,
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
}

impl QuantileSketch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Adds one value; NaN, infinities and negative values are ignored.
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() || value < 0.0 {
            return;
        }
        if value <= MIN_INDEXABLE {
            self.zero_count += 1;
        } else {
            let index = (value.ln() / ln_gamma()).ceil() as i32;
            self.bump(index, 1);
        }
        self.note(value, value, 1, value);
    }

    fn note(&mut self, min: f64, max: f64, count: u64, sum: f64) {
        if self.count == 0 {
            (self.min, self.max) = (min, max);
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.count += count;
        self.sum += sum;
    }

    fn bump(&mut self, index: i32, by: u64) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(0);
        }
        if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
        }
        let at = (index - self.offset) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] += by;
        self.fold_lowest();
    }

    /// Keeps at most `MAX_BUCKETS` by folding the lowest buckets into one.
    fn fold_lowest(&mut self) {
        if self.counts.len() <= MAX_BUCKETS {
            return;
        }
        let excess = self.counts.len() - MAX_BUCKETS;
        let folded: u64 = self.counts.drain(..excess).sum();
        self.counts[0] += folded;
        self.offset += excess as i32;
    }

    /// Adds every value `other` holds: one resize, then aligned counts added
    /// (merging is what the aggregator does most).
    pub fn merge(&mut self, other: &Self) {
        if other.count == 0 {
            return;
        }
        if !other.counts.is_empty() {
            if self.counts.is_empty() {
                self.offset = other.offset;
            }
            let low = self.offset.min(other.offset);
            let high = (self.offset + self.counts.len() as i32)
                .max(other.offset + other.counts.len() as i32);
            if low < self.offset {
                let grow = (self.offset - low) as usize;
                self.counts.splice(0..0, std::iter::repeat_n(0, grow));
                self.offset = low;
            }
            self.counts.resize((high - low) as usize, 0);
            let at = (other.offset - self.offset) as usize;
            for (mine, theirs) in self.counts[at..].iter_mut().zip(&other.counts) {
                *mine += theirs;
            }
            self.fold_lowest();
        }
        self.zero_count += other.zero_count;
        self.note(other.min, other.max, other.count, other.sum);
    }

    /// The value at quantile `q` in [0, 1], within the relative accuracy of the
    /// true one: the nearest-rank value, the ⌈q × n⌉-th smallest of the n added
    /// (so the p99 of two values is the larger); 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count) - 1;
        let mut seen = self.zero_count;
        if rank < seen {
            return self.min.clamp(0.0, MIN_INDEXABLE);
        }
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if rank < seen {
                let index = f64::from(self.offset + i as i32);
                let gamma = ln_gamma().exp();
                // The point of the bucket (gamma^(i-1), gamma^i] nearest to both ends in relative terms.
                let value = 2.0 * (index * ln_gamma()).exp() / (gamma + 1.0);
                return value.clamp(self.min, self.max);
            }
        }
        self.max
    }

    pub fn to_wire(&self) -> pb::QuantileSketch {
        pb::QuantileSketch {
            relative_accuracy: SKETCH_RELATIVE_ACCURACY,
            zero_count: self.zero_count,
            offset: self.offset,
            counts: self.counts.clone(),
            min: self.min,
            max: self.max,
            sum: self.sum,
        }
    }
}

impl TryFrom<&pb::QuantileSketch> for QuantileSketch {
    type Error = ValidationError;

    fn try_from(w: &pb::QuantileSketch) -> Result<Self, Self::Error> {
        if w.zero_count == 0 && w.counts.iter().all(|&c| c == 0) {
            return Ok(Self::default());
        }
        if (w.relative_accuracy - SKETCH_RELATIVE_ACCURACY).abs() > 1e-12 {
            return Err(ValidationError::new(
                "relative_accuracy",
                format!(
                    "{} differs from this node's {SKETCH_RELATIVE_ACCURACY}: sketches would not merge",
                    w.relative_accuracy
                ),
            ));
        }
        if w.counts.len() > MAX_BUCKETS {
            return Err(ValidationError::new(
                "counts",
                format!("at most {MAX_BUCKETS} buckets"),
            ));
        }
        if w.offset.checked_add(w.counts.len() as i32).is_none() {
            return Err(ValidationError::new("offset", "out of range"));
        }
        let finite = |v: f64| v.is_finite() && v >= 0.0;
        if !(finite(w.min) && finite(w.max) && finite(w.sum) && w.min <= w.max) {
            return Err(ValidationError::new(
                "min",
                "min, max and sum must be finite, >= 0, min <= max",
            ));
        }
        let count = w
            .counts
            .iter()
            .try_fold(w.zero_count, |n, &c| n.checked_add(c))
            .ok_or_else(|| ValidationError::new("counts", "total overflows"))?;
        Ok(Self {
            zero_count: w.zero_count,
            offset: w.offset,
            counts: w.counts.clone(),
            count,
            min: w.min,
            max: w.max,
            sum: w.sum,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use proptest::prelude::*;

    use super::*;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn within(estimate: f64, truth: f64) -> bool {
        if truth <= MIN_INDEXABLE {
            return estimate <= MIN_INDEXABLE;
        }
        (estimate - truth).abs() <= SKETCH_RELATIVE_ACCURACY * truth * (1.0 + 1e-9)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Values split across any number of sketches (nodes, windows) and
        /// merged answer every quantile within the relative accuracy.
        #[test]
        fn merged_sketches_stay_within_the_relative_accuracy(
            values in prop::collection::vec(
                prop_oneof![9 => 0.01f64..100_000.0, 1 => Just(0.0)], 1..2000),
            parts in 1usize..8,
        ) {
            let mut merged = QuantileSketch::new();
            for chunk in values.chunks(values.len().div_ceil(parts)) {
                let mut part = QuantileSketch::new();
                for &v in chunk {
                    part.add(v);
                }
                // Through the wire, as windows travel.
                let part = QuantileSketch::try_from(&part.to_wire()).unwrap();
                merged.merge(&part);
            }
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            prop_assert_eq!(merged.count(), values.len() as u64);
            for q in [0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
                let (estimate, truth) = (merged.quantile(q), exact(&sorted, q));
                prop_assert!(within(estimate, truth), "q={} estimate={} truth={}", q, estimate, truth);
            }
        }
    }

    #[test]
    fn a_sketch_of_another_configuration_is_refused_naming_the_field() {
        let mut s = QuantileSketch::new();
        s.add(5.0);
        let mut wire = s.to_wire();
        wire.relative_accuracy = 0.02;
        assert_eq!(
            QuantileSketch::try_from(&wire).unwrap_err().field,
            "relative_accuracy"
        );
        let mut wire = s.to_wire();
        wire.max = f64::NAN;
        assert!(QuantileSketch::try_from(&wire).is_err());
    }

    #[test]
    fn empty_and_bad_values() {
        let mut s = QuantileSketch::new();
        assert_eq!(s.quantile(0.5), 0.0);
        s.add(f64::NAN);
        s.add(-1.0);
        assert!(s.is_empty());
        s.add(1e12);
        assert!(within(s.quantile(0.5), 1e12));
        // Nearest rank: the tail of two values is the larger one.
        let mut two = QuantileSketch::new();
        two.add(50.0);
        two.add(160.0);
        assert!(within(two.quantile(0.99), 160.0) && within(two.quantile(0.5), 50.0));
    }
}

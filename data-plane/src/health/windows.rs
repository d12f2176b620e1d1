//! The health windows a data plane reports: per target, what its attempts did
//! over the last few seconds, as counts by outcome and quantile sketches of
//! latency, time to first token and time per output token. Built from the
//! traces on their way to the control plane (and from probes), so the request
//! path does no extra work for it.

use std::collections::{BTreeMap, HashMap};

use switchyard_domain::{QuantileSketch, timestamp_from_millis, timestamp_to_millis};
use switchyard_proto::v1 as pb;

const CANCELLED: i32 = pb::ErrorClass::Cancelled as i32;
const RATE_LIMITED: i32 = pb::ErrorClass::RateLimited as i32;

/// One finished attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub target_id: String,
    /// `None` for a success, else the failure's error class.
    pub error_class: Option<i32>,
    pub latency_ms: f64,
    /// 0 when no first token was seen.
    pub ttft_ms: f64,
    /// Time per output token after the first; 0 when unknown.
    pub tpot_ms: f64,
    pub retry: bool,
    pub probe: bool,
    /// For a 429 with Retry-After: until when (Unix ms); else 0.
    pub retry_after_until_ms: i64,
}

impl Sample {
    /// The attempts of a finished trace. Cancelled attempts say nothing about
    /// the target and are left out; time per output token is known only for
    /// the attempt that produced the answer.
    pub fn from_trace(trace: &pb::Trace) -> impl Iterator<Item = Sample> + '_ {
        trace
            .attempts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.error_class != CANCELLED)
            .map(move |(i, a)| {
                // Only a stream shows the pace of its tokens; a whole answer arrives at once.
                let answered = a.success && a.target_id == trace.final_target && trace.stream;
                let tpot_ms = if answered && trace.tokens_out > 1 && a.ttft_ms > 0 {
                    a.duration_ms.saturating_sub(a.ttft_ms) as f64 / (trace.tokens_out - 1) as f64
                } else {
                    0.0
                };
                let started = a
                    .started_at
                    .as_ref()
                    .map(timestamp_to_millis)
                    .unwrap_or_default();
                let retry_after_until_ms = if a.error_class == RATE_LIMITED && a.retry_after_ms > 0
                {
                    started
                        + i64::try_from(a.duration_ms + a.retry_after_ms).unwrap_or(i64::MAX / 2)
                } else {
                    0
                };
                Sample {
                    target_id: a.target_id.clone(),
                    error_class: (!a.success).then_some(a.error_class),
                    latency_ms: a.duration_ms as f64,
                    ttft_ms: a.ttft_ms as f64,
                    tpot_ms,
                    retry: i > 0,
                    probe: false,
                    retry_after_until_ms,
                }
            })
    }
}

#[derive(Debug, Default)]
struct Acc {
    attempts: u64,
    successes: u64,
    errors: BTreeMap<i32, u64>,
    retries: u64,
    probes: u64,
    latency_ms: QuantileSketch,
    ttft_ms: QuantileSketch,
    tpot_ms: QuantileSketch,
    retry_after_until_ms: i64,
}

/// The open window of every target on this node.
#[derive(Debug)]
pub struct WindowBuilder {
    node_id: String,
    start_ms: i64,
    targets: HashMap<String, Acc>,
    /// Failures in a row per target, across windows.
    runs: HashMap<String, u64>,
}

impl WindowBuilder {
    pub fn new(node_id: String, now_ms: i64) -> Self {
        Self {
            node_id,
            start_ms: now_ms,
            targets: HashMap::new(),
            runs: HashMap::new(),
        }
    }

    pub fn add(&mut self, s: &Sample) {
        let acc = match self.targets.get_mut(&s.target_id) {
            Some(acc) => acc,
            None => self.targets.entry(s.target_id.clone()).or_default(),
        };
        acc.attempts += 1;
        acc.retries += u64::from(s.retry);
        acc.probes += u64::from(s.probe);
        match s.error_class {
            None => {
                acc.successes += 1;
                acc.latency_ms.add(s.latency_ms);
                if s.ttft_ms > 0.0 {
                    acc.ttft_ms.add(s.ttft_ms);
                }
                if s.tpot_ms > 0.0 {
                    acc.tpot_ms.add(s.tpot_ms);
                }
            }
            Some(class) => *acc.errors.entry(class).or_default() += 1,
        }
        acc.retry_after_until_ms = acc.retry_after_until_ms.max(s.retry_after_until_ms);
        match s.error_class {
            None => {
                self.runs.remove(&s.target_id);
            }
            // A 429 says the target is busy, not failing.
            Some(RATE_LIMITED) => {}
            Some(_) => *self.runs.entry(s.target_id.clone()).or_default() += 1,
        }
    }

    /// Closes the open windows at `now_ms` and starts new ones.
    pub fn drain(&mut self, now_ms: i64) -> Vec<pb::HealthWindow> {
        let start = timestamp_from_millis(self.start_ms);
        // A window has a start distinct from the last one's even within one millisecond.
        let end_ms = now_ms.max(self.start_ms + 1);
        let end = timestamp_from_millis(end_ms);
        self.start_ms = end_ms;
        let mut windows: Vec<pb::HealthWindow> = self
            .targets
            .drain()
            .map(|(target_id, acc)| pb::HealthWindow {
                node_id: self.node_id.clone(),
                start: Some(start),
                end: Some(end),
                attempts: acc.attempts,
                successes: acc.successes,
                errors: acc
                    .errors
                    .into_iter()
                    .map(|(error_class, count)| pb::ErrorCount { error_class, count })
                    .collect(),
                retries: acc.retries,
                probes: acc.probes,
                latency_ms: Some(acc.latency_ms.to_wire()),
                ttft_ms: Some(acc.ttft_ms.to_wire()),
                tpot_ms: Some(acc.tpot_ms.to_wire()),
                retry_after_until: (acc.retry_after_until_ms > 0)
                    .then(|| timestamp_from_millis(acc.retry_after_until_ms)),
                consecutive_failures: self.runs.get(&target_id).copied().unwrap_or(0),
                target_id,
            })
            .collect();
        windows.sort_by(|a, b| a.target_id.cmp(&b.target_id));
        windows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(target: &str, success: bool, class: pb::ErrorClass, ms: u64) -> pb::Attempt {
        pb::Attempt {
            target_id: target.into(),
            started_at: Some(timestamp_from_millis(1_000)),
            duration_ms: ms,
            success,
            error_class: class.into(),
            ttft_ms: if success { ms / 4 } else { 0 },
            retry_after_ms: if class == pb::ErrorClass::RateLimited {
                5_000
            } else {
                0
            },
            ..Default::default()
        }
    }

    #[test]
    fn traces_become_windows_with_429s_apart_and_cancellations_left_out() {
        let trace = pb::Trace {
            final_target: "b/m".into(),
            stream: true,
            tokens_out: 11,
            attempts: vec![
                attempt("a/m", false, pb::ErrorClass::RateLimited, 10),
                attempt("b/m", false, pb::ErrorClass::Cancelled, 3),
                attempt("b/m", true, pb::ErrorClass::Unspecified, 400),
            ],
            ..Default::default()
        };
        let mut builder = WindowBuilder::new("dp".into(), 500);
        for s in Sample::from_trace(&trace) {
            builder.add(&s);
        }
        let windows = builder.drain(2_500);
        assert_eq!(windows.len(), 2);
        let (a, b) = (&windows[0], &windows[1]);
        assert_eq!((a.attempts, a.successes, a.retries), (1, 0, 0));
        assert_eq!(
            a.errors,
            [pb::ErrorCount {
                error_class: RATE_LIMITED,
                count: 1
            }]
        );
        assert_eq!(
            a.retry_after_until.as_ref().map(timestamp_to_millis),
            Some(6_010)
        );
        assert_eq!((b.attempts, b.successes, b.retries), (1, 1, 1));
        let tpot = QuantileSketch::try_from(b.tpot_ms.as_ref().unwrap()).unwrap();
        // (400 - 100) ms over the 10 tokens after the first.
        assert!(
            (tpot.quantile(0.5) - 30.0).abs() <= 0.3,
            "{}",
            tpot.quantile(0.5)
        );
        assert_eq!(b.start.as_ref().map(timestamp_to_millis), Some(500));
        // The next window starts where this one ended, and an idle node reports nothing.
        assert!(builder.drain(4_500).is_empty());
        // Runs of failures continue across windows until a success; 429s neither add nor end them.
        let failure = |class: Option<i32>| Sample {
            target_id: "a/m".into(),
            error_class: class,
            latency_ms: 5.0,
            ttft_ms: 0.0,
            tpot_ms: 0.0,
            retry: false,
            probe: false,
            retry_after_until_ms: 0,
        };
        let transient = Some(pb::ErrorClass::Transient as i32);
        builder.add(&failure(transient));
        builder.add(&failure(transient));
        assert_eq!(builder.drain(5_000)[0].consecutive_failures, 2);
        builder.add(&failure(Some(RATE_LIMITED)));
        builder.add(&failure(transient));
        assert_eq!(builder.drain(6_000)[0].consecutive_failures, 3);
        builder.add(&failure(None));
        assert_eq!(builder.drain(7_000)[0].consecutive_failures, 0);
    }
}

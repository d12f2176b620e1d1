//! The markdown report of a run, and `--write`: the results go between the
//! markers of the "Snapshot propagation" section of the bench README (the
//! section is added at the end of the file if it is not there yet), and
//! nothing else in the file changes.

use crate::readme::Section;
use std::fmt::Write as _;
use std::time::Duration;

use super::aggregation::{self, Second};
use super::changes::{CrossCheck, Propagated};
use crate::logs::LogSummary;
use crate::process::Stopped;
use crate::stats::{Percentiles, percentile};

/// Where the results go in bench/README.md.
pub const README_SECTION: Section = Section {
    title: "## Snapshot propagation",
    start: "<!-- propagation-results:start -->",
    end: "<!-- propagation-results:end -->",
};

/// The propagation goal: p99 from a registry change to the last ACK.
const PROPAGATION_GOAL_MS: f64 = 200.0;
/// The aggregation goal, in trace records a second.
const AGGREGATION_GOAL: f64 = 20_000.0;
/// The longest window the aggregator keeps, in seconds.
const FIVE_MINUTES: usize = 300;

/// Everything the report says.
#[derive(Debug)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub load_average: String,
    pub load_average_after: String,
    pub subscribers: usize,
    pub warmup: usize,
    pub pause: Duration,
    pub models: usize,
    /// Encoded size of the last snapshot, in bytes.
    pub snapshot_bytes: usize,
    pub propagated: Vec<Propagated>,
    /// Snapshots the subscribers received during the measured changes.
    pub versions_seen: usize,
    pub control_plane_cpu: Duration,
    pub bench_cpu: Duration,
    pub measured_wall: Duration,
    pub cross_check: CrossCheck,
    pub stopped: Stopped,
    pub control_plane_log: LogSummary,
    pub aggregation: aggregation::Measured,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// p50, p90, p99 and max of some durations, in milliseconds.
fn spread(samples: &[Duration]) -> Option<(Percentiles, f64)> {
    let max = samples.iter().max().copied().map(ms)?;
    Some((Percentiles::of(samples)?, max))
}

fn spread_row(out: &mut String, label: &str, samples: &[Duration]) {
    match spread(samples) {
        Some((p, max)) => {
            let _ = writeln!(
                out,
                "| {label} | {} | {:.1} | {:.1} | {:.1} | {max:.1} |",
                samples.len(),
                p.p50,
                p.p90,
                p.p99
            );
        }
        None => {
            let _ = writeln!(out, "| {label} | 0 | – | – | – | – |");
        }
    }
}

/// The median of some durations, in milliseconds.
fn median(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    percentile(&sorted, 50.0).unwrap_or(0.0)
}

fn worst(samples: &[Duration]) -> f64 {
    samples.iter().max().copied().map_or(0.0, ms)
}

fn met(ok: bool) -> &'static str {
    if ok { "**yes**" } else { "**no**" }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        self.propagation(&mut out);
        self.aggregation(&mut out);
        self.goals(&mut out);
        self.facts(&mut out);
        out
    }

    fn column<F: Fn(&Propagated) -> Duration>(&self, f: F) -> Vec<Duration> {
        self.propagated.iter().map(f).collect()
    }

    fn propagation(&self, out: &mut String) {
        let n = self.propagated.len();
        let _ = writeln!(
            out,
            "Run on {} on {} (load average {} before the run, {} after). \
             The control plane is the release `switchyard-control-plane` in its own process, \
             on SQLite in a temporary directory, with a registry of one simulated provider, \
             {} models and one API key (a snapshot of {} bytes encoded). {} simulated data planes each hold a \
             snapshot stream on a connection of their own, in the benchmark's process, and \
             validate every snapshot into a `RoutingSnapshot` before they ACK it. {n} measured \
             registry changes (`UpdateModel`, the input price of one model), after {} unmeasured \
             ones, one at a time: the next starts {} ms after every subscriber has acknowledged \
             the last. All numbers come from this one run; p50 is its median.\n",
            self.date,
            self.machine,
            self.load_average,
            self.load_average_after,
            self.models,
            self.snapshot_bytes,
            self.subscribers,
            self.warmup,
            self.pause.as_millis(),
        );
        let _ = writeln!(
            out,
            "| From the start of the `UpdateModel` call to … ({} subscribers) | Changes | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |",
            self.subscribers
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|");
        spread_row(
            out,
            "**the last subscriber's ACK (propagation)**",
            &self.column(|p| p.last_ack),
        );
        spread_row(
            out,
            "the first subscriber's ACK",
            &self.column(|p| p.first_ack),
        );
        spread_row(
            out,
            "the call's return (snapshot published)",
            &self.column(|p| p.call),
        );
        spread_row(
            out,
            "first to last ACK (fan-out to all subscribers)",
            &self.column(|p| p.last_ack.saturating_sub(p.first_ack)),
        );
        spread_row(
            out,
            "receipt to ACK on the slowest subscriber (validation)",
            &self.column(|p| p.apply_max),
        );
        out.push('\n');
    }

    fn aggregation(&self, out: &mut String) {
        let a = &self.aggregation;
        let plan = a.plan;
        let secs = &a.seconds;
        let col = |f: fn(&Second) -> Duration| secs.iter().map(f).collect::<Vec<_>>();
        let records =
            secs.iter().map(|s| s.records).sum::<usize>() as f64 / secs.len().max(1) as f64;
        let windows = secs.iter().map(|s| s.windows).max().unwrap_or(0).max(1) as f64;
        let total = col(Second::total);
        let control = col(Second::control_plane);
        let data = col(Second::data_plane);
        let per_second = |samples: &[Duration]| {
            let m = median(samples);
            if m > 0.0 { records / (m / 1000.0) } else { 0.0 }
        };
        let worst_second = |samples: &[Duration]| {
            let w = worst(samples);
            if w > 0.0 { records / (w / 1000.0) } else { 0.0 }
        };
        let _ = writeln!(
            out,
            "Aggregation, in process on one core: {} trace records a second from {} data-plane \
             nodes over {} targets, pre-aggregated as data planes do it (one window per node per \
             target per second, about {} windows a second), then decoded, ingested and judged \
             (`Aggregator::evaluate` of every target once a second) as the control plane does. \
             {} simulated seconds were fed first, untimed{}; the {} seconds after them were \
             timed stage by stage, records generated outside the timed stages. Each row gives the \
             median second and the slowest one. Not included: gRPC, and the control plane \
             storing windows in its database and reading them back.\n",
            thousands(records),
            plan.nodes,
            plan.targets,
            thousands(windows),
            plan.history,
            if plan.history + plan.seconds >= FIVE_MINUTES {
                ", so the five-minute window is full as in steady state"
            } else {
                ""
            },
            plan.seconds,
        );
        let _ = writeln!(
            out,
            "| Stage, one simulated second | Median (ms) | Slowest (ms) | Median per unit | Records/s it keeps up with alone (median second) |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|");
        let mut row = |label: &str, samples: &[Duration], unit: String| {
            let _ = writeln!(
                out,
                "| {label} | {:.2} | {:.2} | {unit} | {} |",
                median(samples),
                worst(samples),
                thousands(per_second(samples)),
            );
        };
        let adds = col(|s| s.record_adds);
        row(
            "Data planes: every record into its window (counts, three sketch adds)",
            &adds,
            format!("{:.0} ns a record", median(&adds) * 1e6 / records),
        );
        let close = col(|s| s.close);
        row(
            "Data planes: closing the windows into their wire form",
            &close,
            format!("{:.1} µs a window", median(&close) * 1e3 / windows),
        );
        let decode = col(|s| s.decode);
        row(
            "Control plane: wire form to `WindowRecord`",
            &decode,
            format!("{:.1} µs a window", median(&decode) * 1e3 / windows),
        );
        let ingest = col(|s| s.ingest);
        row(
            "Control plane: `Aggregator::ingest`",
            &ingest,
            format!("{:.1} µs a window", median(&ingest) * 1e3 / windows),
        );
        let evaluate = col(|s| s.evaluate);
        row(
            "Control plane: `Aggregator::evaluate`, once a second",
            &evaluate,
            format!(
                "{:.1} µs a target",
                median(&evaluate) * 1e3 / plan.targets as f64
            ),
        );
        row("**Data planes, together**", &data, String::from("–"));
        row("**Control plane, together**", &control, String::from("–"));
        row("**Whole pipeline**", &total, String::from("–"));
        out.push('\n');
        let _ = writeln!(
            out,
            "- Whole pipeline on one core: **{} records/s** in the median second ({} in the \
             slowest); the control plane's part alone: {} records/s ({} in the slowest).",
            thousands(per_second(&total)),
            thousands(worst_second(&total)),
            thousands(per_second(&control)),
            thousands(worst_second(&control)),
        );
        let states = a
            .states
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "- Targets after the last evaluation: {states} (a few simulated targets fail, \
             answer 429 or are flaky on purpose, so the health states have work to do).\n"
        );
    }

    fn goals(&self, out: &mut String) {
        let last = self.column(|p| p.last_ack);
        let p99 = spread(&last).map(|(p, _)| p.p99);
        let total: Vec<Duration> = self.aggregation.seconds.iter().map(Second::total).collect();
        let m = median(&total);
        let throughput = if m > 0.0 {
            self.aggregation.plan.rate as f64 / (m / 1000.0)
        } else {
            0.0
        };
        let _ = writeln!(out, "| Goal | Target | Measured | Met |");
        let _ = writeln!(out, "|---|--:|--:|---|");
        let _ = writeln!(
            out,
            "| Propagation p99, registry change to ACK from all {} subscribers | < {PROPAGATION_GOAL_MS:.0} ms | {} | {} |",
            self.subscribers,
            p99.map_or_else(|| "–".to_owned(), |p| format!("{p:.1} ms")),
            met(p99.is_some_and(|p| p < PROPAGATION_GOAL_MS)),
        );
        let _ = writeln!(
            out,
            "| Aggregation throughput, whole pipeline on one core | ≥ {} records/s | {} records/s | {} |\n",
            thousands(AGGREGATION_GOAL),
            thousands(throughput),
            met(throughput >= AGGREGATION_GOAL),
        );
    }

    fn facts(&self, out: &mut String) {
        let n = self.propagated.len().max(1) as f64;
        let c = &self.cross_check;
        let check = if c.passed(self.subscribers) {
            format!(
                "all {} data planes at version {} with `acked_version == snapshot_version` and `lag_versions == 0`",
                c.data_planes, c.snapshot_version
            )
        } else {
            format!(
                "**not settled**: {} of {} expected data planes listed, {} current at version {}; {}",
                c.data_planes,
                self.subscribers,
                c.current,
                c.snapshot_version,
                c.problems.join("; ")
            )
        };
        let _ = writeln!(
            out,
            "- Cross-check at the end (`ClusterService/Status`): {check}."
        );
        let versions = match (self.propagated.first(), self.propagated.last()) {
            (Some(first), Some(last)) => {
                format!(", versions {} to {}", first.version, last.version)
            }
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "- Snapshots each subscriber received during the measured changes: {} for {} changes{versions} \
             (any others are telemetry republications by the control plane's aggregation loop).",
            self.versions_seen,
            self.propagated.len()
        );
        let _ = writeln!(
            out,
            "- CPU over the measured changes ({:.1} s of wall time, pauses included): control \
             plane {:.2} s ({:.2} ms a change, its background loops included), benchmark with \
             its {} subscribers {:.2} s ({:.2} ms a change).",
            self.measured_wall.as_secs_f64(),
            self.control_plane_cpu.as_secs_f64(),
            ms(self.control_plane_cpu) / n,
            self.subscribers,
            self.bench_cpu.as_secs_f64(),
            ms(self.bench_cpu) / n,
        );
        let s = &self.stopped;
        let _ = writeln!(
            out,
            "- Control plane {} after SIGTERM in {:.2}s ({}).",
            if s.killed { "was killed" } else { "exited" },
            s.took.as_secs_f64(),
            s.status
        );
        let log = &self.control_plane_log;
        if log.lines == 0 {
            let _ = writeln!(out, "- Control-plane log at `RUST_LOG=warn`: empty.");
        } else {
            let top = log
                .top
                .iter()
                .map(|(message, count)| format!("{count}× {message}"))
                .collect::<Vec<_>>()
                .join("; ");
            let levels = log
                .by_level
                .iter()
                .map(|(level, n)| format!("{n} {level}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "- Control-plane log at `RUST_LOG=warn`: {} lines, {levels} ({top}).",
                log.lines
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(20_000.0), "20,000");
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}

//! The markdown report of a failover benchmark, and `--write`: the results go
//! between the markers of the "Failover" section of the bench README (the
//! section is added at the end of the file if it is not there yet), and
//! nothing else in the file changes.

use crate::readme::Section;
use std::fmt::Write as _;
use std::time::Duration;

use super::Measured;
use super::runs::{Mode, Run};
use crate::logs::LogSummary;
use crate::stats::percentile;

/// Where the results go in bench/README.md.
pub const README_SECTION: Section = Section {
    title: "## Failover",
    start: "<!-- failover-results:start -->",
    end: "<!-- failover-results:end -->",
};

/// The failover goal: a killed leader to the first snapshot from the new one.
const FAILOVER_GOAL: Duration = Duration::from_secs(5);

/// Everything the report says.
#[derive(Debug)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub load_average: String,
    pub load_average_after: String,
    pub replicas: usize,
    pub rate: u32,
    pub max_in_flight: usize,
    pub poll: Duration,
    pub measured: Measured,
    /// All control-plane logs together (every replica, every process).
    pub control_plane_log: LogSummary,
    pub data_plane_log: LogSummary,
    /// How each process ended at the end of the benchmark.
    pub stopped: Vec<String>,
}

/// One timed quantity of a run.
struct Measure {
    label: &'static str,
    of: fn(&Run) -> Duration,
}

const MEASURES: [Measure; 5] = [
    Measure {
        label: "**first snapshot from the new leader** (a survivor's subscriber)",
        of: |r| r.first_snapshot,
    },
    Measure {
        label: "the new leader's snapshot on every survivor's subscriber",
        of: |r| r.all_snapshots,
    },
    Measure {
        label: "the data plane serving it (`switchyard_dp_snapshot_epoch`)",
        of: |r| r.data_plane,
    },
    Measure {
        label: "`Status` on a survivor naming the new leader",
        of: |r| r.status,
    },
    Measure {
        label: "the old leader's process gone",
        of: |r| r.exited,
    },
];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median, p90 and max in milliseconds (nearest rank).
fn spread(samples: &[Duration]) -> Option<(f64, f64, f64)> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    Some((
        percentile(&sorted, 50.0)?,
        percentile(&sorted, 90.0)?,
        sorted.last().copied().map(ms)?,
    ))
}

fn runs(n: usize) -> String {
    if n == 1 {
        "1 run".to_owned()
    } else {
        format!("{n} runs")
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

impl Report {
    fn of_mode(&self, mode: Mode) -> Vec<&Run> {
        self.measured
            .runs
            .iter()
            .filter(|r| r.mode == mode)
            .collect()
    }

    fn modes(&self) -> Vec<Mode> {
        [Mode::Kill, Mode::Term]
            .into_iter()
            .filter(|&m| !self.of_mode(m).is_empty())
            .collect()
    }

    /// What makes the run a failure: traces lost or stored twice.
    pub fn failures(&self) -> Vec<String> {
        let traces = &self.measured.traces;
        let mut failures = Vec::new();
        if traces.lost() > 0 {
            failures.push(format!(
                "{} of {} served requests have no trace row",
                traces.lost(),
                traces.served
            ));
        }
        if traces.duplicated() > 0 {
            failures.push(format!(
                "{} trace rows beyond one per request",
                traces.duplicated()
            ));
        }
        failures
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        self.intro(&mut out);
        self.summary(&mut out);
        self.goals(&mut out);
        self.every_run(&mut out);
        self.facts(&mut out);
        out
    }

    fn intro(&self, out: &mut String) {
        let runs = runs(self.modes().first().map_or(0, |&m| self.of_mode(m).len()));
        let _ = writeln!(
            out,
            "Run on {} on {} (load average {} before the run, {} after). {} control-plane \
             replicas (release `switchyard-control-plane`, each its own process, default \
             timings) on one Postgres database, electing through an etcd of their own; one \
             release `switchyard-data-plane` following all of them (`--control-plane a,b,c`) \
             under {} requests/s; a raw snapshot subscriber on every replica. {runs} of \
             each mode one after another; between runs the stopped replica is started again \
             and the cluster waits until every replica lists all {} again. The data plane's \
             metrics and the survivors' `Status` are read every {} ms, so those two columns \
             include up to that much polling delay.\n",
            self.date,
            self.machine,
            self.load_average,
            self.load_average_after,
            self.replicas,
            self.rate,
            self.replicas,
            self.poll.as_millis(),
        );
    }

    fn summary(&self, out: &mut String) {
        let modes = self.modes();
        let mut header = String::from("| From the signal to … |");
        let mut rule = String::from("|---|");
        for &mode in &modes {
            let _ = write!(
                header,
                " {0} median (ms) | {0} p90 (ms) | {0} max (ms) |",
                mode.name()
            );
            rule.push_str("--:|--:|--:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for measure in &MEASURES {
            let _ = write!(out, "| {} |", measure.label);
            for &mode in &modes {
                let samples: Vec<Duration> =
                    self.of_mode(mode).iter().map(|r| (measure.of)(r)).collect();
                match spread(&samples) {
                    Some((p50, p90, max)) => {
                        let _ = write!(out, " {p50:.0} | {p90:.0} | {max:.0} |");
                    }
                    None => out.push_str(" – | – | – |"),
                }
            }
            out.push('\n');
        }
        let counts: Vec<String> = modes
            .iter()
            .map(|&m| {
                let name = match m {
                    Mode::Kill => "`kill` (SIGKILL)",
                    Mode::Term => "`term` (SIGTERM)",
                };
                format!("{name}: {}", runs(self.of_mode(m).len()))
            })
            .collect();
        let _ = writeln!(out, "\n{}.\n", counts.join("; "));
    }

    fn goals(&self, out: &mut String) {
        let traces = &self.measured.traces;
        out.push_str("| Goal | Target | Measured | Met |\n|---|--:|--:|---|\n");
        let killed: Vec<Duration> = self
            .of_mode(Mode::Kill)
            .iter()
            .map(|r| r.first_snapshot)
            .collect();
        match spread(&killed) {
            Some((p50, _, max)) => {
                let _ = writeln!(
                    out,
                    "| Failover: leader killed to the first snapshot from the new leader, every run | < {} s | max {:.2} s (median {:.2} s, {}) | {} |",
                    FAILOVER_GOAL.as_secs(),
                    max / 1000.0,
                    p50 / 1000.0,
                    runs(killed.len()),
                    met(max < ms(FAILOVER_GOAL)),
                );
            }
            None => out.push_str(
                "| Failover: leader killed to the first snapshot from the new leader | < 5 s | not run | – |\n",
            ),
        }
        let _ = writeln!(
            out,
            "| Traces lost (served requests without a trace row) | 0 | {} of {} | {} |",
            traces.lost(),
            traces.served,
            met(traces.lost() == 0),
        );
        let _ = writeln!(
            out,
            "| Traces stored twice (rows beyond one per request) | 0 | {} | {} |\n",
            traces.duplicated(),
            met(traces.duplicated() == 0),
        );
    }

    fn every_run(&self, out: &mut String) {
        out.push_str(
            "Every run, in order (ms from the signal; the data plane column says which replica \
             its snapshot stream was on when the leader was stopped):\n\n\
             | # | Mode | Leader stopped → new | Epoch | Data plane on | First snapshot | Every survivor | Data plane | `Status` | Old leader gone |\n\
             |--:|---|---|---|---|--:|--:|--:|--:|--:|\n",
        );
        for (i, run) in self.measured.runs.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} → {} | {} → {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                i + 1,
                run.mode.name(),
                run.old_leader,
                run.new_leader,
                run.old_epoch,
                run.new_epoch,
                run.data_plane_on.as_deref().unwrap_or("?"),
                ms(run.first_snapshot),
                ms(run.all_snapshots),
                ms(run.data_plane),
                ms(run.status),
                ms(run.exited),
            );
        }
        out.push('\n');
    }

    fn facts(&self, out: &mut String) {
        let tally = &self.measured.tally;
        let traces = &self.measured.traces;
        let sent = tally.served.len() + tally.failed;
        let _ = writeln!(
            out,
            "- Client load: {sent} requests over {:.0} s, {} served, {} failed; {} ticks sent \
             nothing because {} requests were already in flight.",
            tally.duration.as_secs_f64(),
            tally.served.len(),
            tally.failed,
            tally.skipped,
            self.max_in_flight,
        );
        if !tally.failures.is_empty() {
            let _ = writeln!(
                out,
                "- First failures: {}.",
                tally
                    .failures
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        let drained = traces.drained_in.map_or_else(
            || "it had not emptied when the benchmark stopped waiting".to_owned(),
            |d| {
                format!(
                    "it was empty {:.1} s after the load stopped",
                    d.as_secs_f64()
                )
            },
        );
        let dropped = traces
            .dropped
            .map_or_else(|| "not reported".to_owned(), |d| format!("{d:.0}"));
        let _ = writeln!(
            out,
            "- Traces: {} of {} served requests have their row in Postgres; {} rows in all for \
             {} distinct requests; `switchyard_dp_traces_dropped_total` {dropped}; the data \
             plane's trace spool: {drained}.",
            traces.stored, traces.served, traces.rows, traces.requests,
        );
        let _ = writeln!(
            out,
            "- Control-plane logs (all replicas, every process): {}.",
            levels(&self.control_plane_log)
        );
        let _ = writeln!(out, "- Data-plane log: {}.", levels(&self.data_plane_log));
        if !self.stopped.is_empty() {
            let _ = writeln!(out, "- At the end: {}.", self.stopped.join("; "));
        }
    }
}

/// `N lines (INFO a, WARN b); warnings and errors: "…" ×n, …`.
fn levels(logs: &LogSummary) -> String {
    let by_level = logs
        .by_level
        .iter()
        .map(|(level, n)| format!("{level} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let complaints = logs
        .complaints
        .iter()
        .map(|(message, n)| format!("`{message}` ×{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!("{} lines ({by_level})", logs.lines);
    if !complaints.is_empty() {
        let _ = write!(text, "; warnings and errors: {complaints}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_median_p90_and_max() {
        let samples: Vec<Duration> = (1..=10).map(|i| Duration::from_millis(i * 100)).collect();
        assert_eq!(spread(&samples), Some((500.0, 900.0, 1000.0)));
        assert_eq!(spread(&[]), None);
    }
}

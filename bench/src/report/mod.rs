//! The markdown report: the results tables, the goals, the processes'
//! resource use, and how it replaces the results section of the README.

mod facts;
mod profiles;
mod tables;

use crate::readme::Section;
use std::fmt::Write as _;
use std::time::Duration;

use crate::gateway::BothStopped;
use crate::load::{Load, Outcome};
use crate::logs::LogSummary;
use crate::procfs::{Memory, Settled};
use crate::stats::Percentiles;
use crate::streams::StreamsResult;

/// Where the results go in bench/README.md.
pub const README_SECTION: Section = Section {
    title: "### Results",
    start: "<!-- bench-results:start -->",
    end: "<!-- bench-results:end -->",
};

/// A 1-minute load average above this many per core before the run means
/// other work was competing for the cores; the report says so.
const BUSY_LOAD_PER_CORE: f64 = 0.5;

/// JSON straight to the mock and through the gateway at one concurrency,
/// closed loop.
#[derive(Debug)]
pub struct SweepResult {
    pub concurrency: usize,
    pub direct: ScenarioResult,
    pub gateway: ScenarioResult,
}

/// JSON straight to the mock and through the gateway at a paced load.
#[derive(Debug)]
pub struct PacedResult {
    /// Of `saturation`.
    pub fraction: f64,
    /// The highest closed-loop JSON throughput through the gateway before
    /// the paced run, req/s.
    pub saturation: f64,
    /// The concurrency it was reached at.
    pub saturation_concurrency: usize,
    /// Connections and their pace.
    pub load: Load,
    pub direct: ScenarioResult,
    pub gateway: ScenarioResult,
}

/// Soft and hard open-file limits, as /proc shows them.
#[derive(Debug)]
pub struct OpenFiles {
    pub bench: Option<(String, String)>,
    pub gateway: Option<(String, String)>,
}

/// What one process used during a scenario.
#[derive(Debug)]
pub struct Usage {
    /// CPU while the scenario's requests ran.
    pub cpu_serving: Duration,
    /// The same until the control plane had stored the scenario's traces.
    pub cpu: Duration,
    /// The part of `cpu` spent in the kernel (system time).
    pub cpu_system: Duration,
    /// `cpu` by thread name, busiest first.
    pub threads: Vec<(String, Duration)>,
    /// Resident memory once the scenario was over.
    pub rss_after: Memory,
}

/// One measured scenario.
#[derive(Debug)]
pub struct ScenarioResult {
    pub name: String,
    pub stream: bool,
    /// Sent through the gateway (else straight to the mock).
    pub via_gateway: bool,
    pub outcome: Outcome,
    /// The data plane: the gateway.
    pub gateway: Usage,
    /// The control plane, storing the traces.
    pub control_plane: Usage,
    /// Traces not yet acked by the control plane when the last response ended.
    pub spool_after_load: Option<f64>,
    /// From the last response to the control plane acking the last trace;
    /// `None` if that took too long.
    pub trace_drain: Option<Duration>,
    /// The number of the callgrind dump that holds this scenario, if any.
    pub callgrind_dump: Option<usize>,
}

impl ScenarioResult {
    fn total(&self) -> Option<Percentiles> {
        let samples: Vec<Duration> = self.outcome.samples.iter().map(|s| s.total).collect();
        Percentiles::of(&samples)
    }

    fn first_byte(&self) -> Option<Percentiles> {
        let samples: Vec<Duration> = self.outcome.samples.iter().map(|s| s.first_byte).collect();
        Percentiles::of(&samples)
    }

    fn first_token(&self) -> Option<Percentiles> {
        let samples: Vec<Duration> = self
            .outcome
            .samples
            .iter()
            .filter_map(|s| s.first_token)
            .collect();
        Percentiles::of(&samples)
    }

    /// Successful requests over the scenario's wall time.
    pub fn throughput(&self) -> f64 {
        let secs = self.outcome.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.outcome.samples.len() as f64 / secs
        } else {
            0.0
        }
    }

    /// CPU per successful request, in ms.
    fn per_request(&self, cpu: Duration) -> f64 {
        let ok = self.outcome.samples.len();
        if ok > 0 { ms(cpu) / ok as f64 } else { 0.0 }
    }
}

/// Everything one benchmark run found.
#[derive(Debug)]
pub struct Report {
    pub date: String,
    pub machine: String,
    /// /proc/loadavg's 1, 5 and 15 minute averages before the run.
    pub load_average: String,
    /// The same after it.
    pub load_average_after: String,
    pub load: Load,
    pub warmup: usize,
    pub scenarios: Vec<ScenarioResult>,
    /// JSON at further concurrencies, closed loop.
    pub sweep: Vec<SweepResult>,
    /// JSON at a paced load.
    pub paced: Option<PacedResult>,
    /// The many-streams memory test, if it ran.
    pub streams: Option<StreamsResult>,
    /// How long its traces took to be acked (`Some(None)`: not within 10 s).
    pub streams_trace_drain: Option<Option<Duration>>,
    pub open_files: OpenFiles,
    /// The data plane's memory once it was ready.
    pub rss_ready: Memory,
    /// ... and once its memory had settled, before any request.
    pub rss_idle: Settled,
    pub control_plane_ready: Memory,
    pub memory_end: Memory,
    pub control_plane_memory_end: Memory,
    /// Requests the mock provider received over the whole run, warm-ups included.
    pub mock_received: usize,
    /// Requests sent to the mock, directly or through the gateway, warm-ups included.
    pub sent: usize,
    pub metrics: Vec<String>,
    /// The data plane's log.
    pub log: LogSummary,
    pub control_plane_log: LogSummary,
    pub stopped: BothStopped,
    /// The data plane ran under callgrind: timings are not comparable.
    pub callgrind: bool,
    /// What callgrind counted, per profiled scenario.
    pub profiles: Vec<Profiled>,
}

/// One scenario's callgrind profile.
#[derive(Debug)]
pub struct Profiled {
    pub scenario: String,
    /// Requests sent while the counters ran.
    pub requests: usize,
    pub file: std::path::PathBuf,
    pub profile: crate::callgrind::Profile,
}

impl Report {
    /// The whole results section, as it goes into the README.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.write_markdown(&mut out);
        out
    }

    fn write_markdown(&self, out: &mut String) -> std::fmt::Result {
        if self.callgrind {
            writeln!(
                out,
                "**The data plane ran under callgrind: it is many times slower, and none of the \
                 timings below say anything about the gateway.**\n"
            )?;
        }
        writeln!(
            out,
            "Run on {} on {} (load average {} before the run, {} after): {} requests per scenario at \
             concurrency {}, after {} warm-up requests. The gateway is the data plane \
             (`switchyard-data-plane`) in its own process; the control plane \
             (`switchyard-control-plane`, storing traces in SQLite) runs as another process on the \
             same cores, as do the client and the mock provider. Every request carries an API \
             key (`Authorization: Bearer`), which the gateway checks. All numbers come from this one run \
             on a machine shared with other work; p50 is the median of that run.{}\n",
            self.date,
            self.machine,
            self.load_average,
            self.load_average_after,
            self.load.requests,
            self.load.concurrency,
            self.warmup,
            self.busy_note(),
        )?;
        self.scenario_table(out)?;
        self.overhead_table(out)?;
        self.concurrency_table(out)?;
        self.paced_table(out)?;
        self.goals_table(out)?;
        self.streams_facts(out)?;
        self.process_facts(out)?;
        self.profiles(out)?;
        Ok(())
    }

    /// A sentence when the machine was busy before the run, else nothing.
    fn busy_note(&self) -> String {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let one_minute = self
            .load_average
            .split_whitespace()
            .next()
            .and_then(|l| l.parse::<f64>().ok());
        match one_minute {
            Some(load) if load > BUSY_LOAD_PER_CORE * cores as f64 => format!(
                " Other work was running on the machine (1-minute load average {load:.2} on \
                 {cores} cores before the run), which adds noise, mostly to the p99 figures."
            ),
            _ => String::new(),
        }
    }

    /// JSON direct and through the gateway at every closed-loop concurrency
    /// measured, the main scenarios' included.
    fn json_pairs(&self) -> Vec<(usize, &ScenarioResult, &ScenarioResult)> {
        let find = |gateway: bool| {
            self.scenarios
                .iter()
                .find(|s| !s.stream && s.via_gateway == gateway)
        };
        let mut pairs: Vec<_> = self
            .sweep
            .iter()
            .map(|p| (p.concurrency, &p.direct, &p.gateway))
            .collect();
        if let (Some(direct), Some(gateway)) = (find(false), find(true)) {
            pairs.push((self.load.concurrency, direct, gateway));
        }
        pairs.sort_by_key(|(concurrency, _, _)| *concurrency);
        pairs
    }
}

/// "yes", or "no: X over" and how many times the goal that is.
fn verdict(measured: f64, goal: f64, unit: &str, decimals: usize) -> String {
    if measured < goal {
        "yes".to_owned()
    } else {
        format!(
            "**no**: {:.decimals$} {unit} over ({:.1}× the goal)",
            measured - goal,
            measured / goal
        )
    }
}

/// `1000` as `1,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Average cores busy: CPU time over wall time.
fn cores(cpu: Duration, wall: Duration) -> f64 {
    if wall.is_zero() {
        0.0
    } else {
        cpu.as_secs_f64() / wall.as_secs_f64()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn fmt_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 * 1024.0 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_thousands() {
        assert_eq!(verdict(0.15, 0.2, "ms", 2), "yes");
        assert_eq!(
            verdict(0.5, 0.2, "ms", 2),
            "**no**: 0.30 ms over (2.5× the goal)"
        );
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}

//! The markdown report: the results table, the overhead table and the
//! gateway's resource use, and how it replaces the results section of the
//! README.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::gateway::Stopped;
use crate::load::{Load, Outcome};
use crate::logs::LogSummary;
use crate::procfs::Memory;
use crate::stats::Percentiles;
use crate::streams::StreamsResult;

/// The README lines that enclose the generated section.
pub const START_MARKER: &str = "<!-- bench-results:start -->";
pub const END_MARKER: &str = "<!-- bench-results:end -->";

/// The concurrency the latency goals are set at.
const GOAL_CONCURRENCY: usize = 64;
/// Added p50 and p99 latency the gateway should stay under there, ms.
const GOAL_ADDED_P50_MS: f64 = 0.2;
const GOAL_ADDED_P99_MS: f64 = 1.0;
/// The gateway's resident memory should stay under this with
/// [`GOAL_STREAMS`] streams open, in MB (10^6 bytes).
const GOAL_STREAMS_MB: f64 = 150.0;
const GOAL_STREAMS: usize = 1000;

/// JSON straight to the mock and through the gateway at one concurrency.
#[derive(Debug)]
pub struct SweepResult {
    pub concurrency: usize,
    pub direct: ScenarioResult,
    pub gateway: ScenarioResult,
}

/// Soft and hard open-file limits, as /proc shows them.
#[derive(Debug)]
pub struct OpenFiles {
    pub bench: Option<(String, String)>,
    pub gateway: Option<(String, String)>,
}

/// One measured scenario.
#[derive(Debug)]
pub struct ScenarioResult {
    pub name: String,
    pub stream: bool,
    pub outcome: Outcome,
    /// CPU the gateway process used while the scenario's requests ran.
    pub gateway_cpu_serving: Duration,
    /// The same until the control plane had stored the scenario's traces.
    pub gateway_cpu: Duration,
    /// `gateway_cpu` by thread name, busiest first.
    pub gateway_threads: Vec<(String, Duration)>,
    /// The gateway's resident memory once the scenario was over.
    pub gateway_rss_after: Memory,
    /// Traces not yet acked by the control plane when the last response ended.
    pub spool_after_load: Option<f64>,
    /// From the last response to the control plane acking the last trace;
    /// `None` if that took too long.
    pub trace_drain: Option<Duration>,
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

    fn throughput(&self) -> f64 {
        let secs = self.outcome.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.outcome.samples.len() as f64 / secs
        } else {
            0.0
        }
    }
}

/// Everything one benchmark run found.
#[derive(Debug)]
pub struct Report {
    pub date: String,
    pub machine: String,
    /// /proc/loadavg's 1, 5 and 15 minute averages before the run.
    pub load_average: String,
    pub load: Load,
    pub warmup: usize,
    pub scenarios: Vec<ScenarioResult>,
    /// JSON at further concurrencies.
    pub sweep: Vec<SweepResult>,
    /// The many-streams memory test, if it ran.
    pub streams: Option<StreamsResult>,
    /// How long its traces took to be acked (`Some(None)`: not within 10 s).
    pub streams_trace_drain: Option<Option<Duration>>,
    pub open_files: OpenFiles,
    pub rss_ready: Memory,
    pub memory_end: Memory,
    /// Requests the mock provider received over the whole run, warm-ups included.
    pub mock_received: usize,
    /// Requests sent to the mock, directly or through the gateway, warm-ups included.
    pub sent: usize,
    pub metrics: Vec<String>,
    pub log: LogSummary,
    pub stopped: Stopped,
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
        writeln!(
            out,
            "Run on {} on {} (load average {} before the run): {} requests per scenario at concurrency {}, \
             after {} warm-up requests. All numbers come from this one run on a noisy machine shared \
             with other work; p50 is the median of that run.\n",
            self.date,
            self.machine,
            self.load_average,
            self.load.requests,
            self.load.concurrency,
            self.warmup
        )?;
        self.scenario_table(out)?;
        self.overhead_table(out)?;
        self.concurrency_table(out)?;
        self.goals_table(out)?;
        self.streams_facts(out)?;
        self.gateway_facts(out)?;
        Ok(())
    }

    /// JSON direct and through the gateway at every concurrency measured,
    /// the main scenarios' included.
    fn json_pairs(&self) -> Vec<(usize, &ScenarioResult, &ScenarioResult)> {
        let find = |gateway: bool| {
            self.scenarios
                .iter()
                .find(|s| !s.stream && s.name.starts_with("gateway") == gateway)
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

    fn concurrency_table(&self, out: &mut String) -> std::fmt::Result {
        if self.sweep.is_empty() {
            return Ok(());
        }
        writeln!(
            out,
            "Overhead by concurrency (JSON, {} measured requests each way after {} warm-up requests; \
             concurrency {} is the JSON rows above):\n",
            self.load.requests, self.warmup, self.load.concurrency
        )?;
        writeln!(
            out,
            "| Concurrency | Direct p50 (ms) | Direct p99 (ms) | Gateway p50 (ms) | Gateway p99 (ms) | Added p50 (ms) | Added p99 (ms) | Direct (req/s) | Gateway (req/s) | Gateway CPU while serving (cores) | Errors direct / gateway |"
        )?;
        writeln!(out, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
        for (concurrency, direct, gateway) in self.json_pairs() {
            let (d, g) = (direct.total(), gateway.total());
            let added = |f: fn(&Percentiles) -> f64| match (d, g) {
                (Some(d), Some(g)) => format!("{:+.2}", f(&g) - f(&d)),
                _ => "–".to_owned(),
            };
            writeln!(
                out,
                "| {concurrency} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.2} | {} / {} |",
                fmt_ms(d.map(|p| p.p50)),
                fmt_ms(d.map(|p| p.p99)),
                fmt_ms(g.map(|p| p.p50)),
                fmt_ms(g.map(|p| p.p99)),
                added(|p| p.p50),
                added(|p| p.p99),
                direct.throughput(),
                gateway.throughput(),
                cores(gateway.gateway_cpu_serving, gateway.outcome.elapsed),
                direct.outcome.error_count(),
                gateway.outcome.error_count(),
            )?;
        }
        writeln!(out)?;
        for s in self.sweep.iter().flat_map(|p| [&p.direct, &p.gateway]) {
            for (kind, n) in &s.outcome.errors {
                writeln!(out, "- {} error ×{n}: `{kind}`", s.name)?;
            }
            if s.outcome.not_sent > 0 {
                writeln!(
                    out,
                    "- {}: {} requests not sent, the {}s deadline passed",
                    s.name,
                    s.outcome.not_sent,
                    self.load.deadline.as_secs()
                )?;
            }
        }
        // The busiest the gateway got: its highest JSON throughput.
        if let Some((concurrency, _, gateway)) = self
            .json_pairs()
            .into_iter()
            .max_by(|a, b| a.2.throughput().total_cmp(&b.2.throughput()))
        {
            writeln!(
                out,
                "- Requests per second at saturation through the gateway: **{:.0} req/s**, the highest \
                 JSON throughput through the gateway in this run (at concurrency {concurrency}: \
                 successful requests over the wall time of {} requests), with the gateway process \
                 using {:.2} cores while client and mock ran on the same {} cores.\n",
                gateway.throughput(),
                gateway.outcome.samples.len() + gateway.outcome.error_count(),
                cores(gateway.gateway_cpu_serving, gateway.outcome.elapsed),
                std::thread::available_parallelism().map_or(0, |n| n.get()),
            )?;
        }
        Ok(())
    }

    fn goals_table(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out, "| Goal | Target | Measured | Met |")?;
        writeln!(out, "|---|--:|--:|---|")?;
        let at_goal = self
            .json_pairs()
            .into_iter()
            .find(|(c, _, _)| *c == GOAL_CONCURRENCY)
            .and_then(|(_, d, g)| Some((d.total()?, g.total()?)));
        for (what, goal, pick) in [
            (
                "p50",
                GOAL_ADDED_P50_MS,
                (|p: &Percentiles| p.p50) as fn(&Percentiles) -> f64,
            ),
            ("p99", GOAL_ADDED_P99_MS, |p: &Percentiles| p.p99),
        ] {
            let label = format!("Added latency {what}, JSON, concurrency {GOAL_CONCURRENCY}");
            match at_goal {
                Some((d, g)) => {
                    let added = pick(&g) - pick(&d);
                    writeln!(
                        out,
                        "| {label} | < {goal} ms | {added:+.2} ms | {} |",
                        verdict(added, goal, "ms", 2)
                    )?;
                }
                None => writeln!(out, "| {label} | < {goal} ms | not measured | – |")?,
            }
        }
        let label = format!(
            "Gateway RSS with {} concurrent streams",
            thousands(GOAL_STREAMS)
        );
        match &self.streams {
            Some(s) => {
                let (kib, how) = match s.peak_rss_all_open_kib {
                    Some(kib) => (kib, "peak VmRSS sampled while all were open"),
                    None => (
                        s.peak_rss_kib,
                        "peak VmRSS sampled; they were never all open at once",
                    ),
                };
                let mb = kib as f64 * 1024.0 / 1e6;
                let ran = if s.started == GOAL_STREAMS {
                    String::new()
                } else {
                    format!(", {} streams run instead", thousands(s.started))
                };
                writeln!(
                    out,
                    "| {label} | < {GOAL_STREAMS_MB:.0} MB | {mb:.1} MB ({how}{ran}) | {} |",
                    verdict(mb, GOAL_STREAMS_MB, "MB", 1)
                )?;
            }
            None => writeln!(
                out,
                "| {label} | < {GOAL_STREAMS_MB:.0} MB | not measured | – |"
            )?,
        }
        writeln!(out)
    }

    fn streams_facts(&self, out: &mut String) -> std::fmt::Result {
        let Some(s) = &self.streams else {
            return Ok(());
        };
        let fmt_mb = |kib: u64| format!("{:.1} MB", kib as f64 * 1024.0 / 1e6);
        writeln!(
            out,
            "- {} streams started at once through the gateway, each a {}-word reply (one event per \
             word, about 5 ms apart at the mock): **{} completed** with every word and `[DONE]`, \
             {} failed; all took {:.1}s.",
            thousands(s.started),
            s.words,
            thousands(s.completed),
            s.started - s.completed,
            s.elapsed.as_secs_f64()
        )?;
        for (kind, n) in &s.errors {
            writeln!(out, "  - stream error ×{n}: `{kind}`")?;
        }
        let together = match s.all_open_after {
            Some(after) => format!(
                "all {} were open together {:.2}s after the first was sent, for {:.2}s",
                thousands(s.started),
                after.as_secs_f64(),
                s.all_open_for.as_secs_f64()
            ),
            None => "they were never all open at once".to_owned(),
        };
        writeln!(
            out,
            "- Streams open at once (first bytes received, not yet ended): at most {}; {together}.",
            thousands(s.peak_open)
        )?;
        let all_open = s
            .peak_rss_all_open_kib
            .map_or_else(|| "–".to_owned(), fmt_mb);
        writeln!(
            out,
            "- Gateway VmRSS around the streams ({} samples, every 10 ms): {} before, **{} peak while \
             all were open**, {} peak over the whole test, {} once all had ended.",
            s.samples,
            fmt_mb(s.rss_before_kib),
            all_open,
            fmt_mb(s.peak_rss_kib),
            fmt_mb(s.rss_after_kib),
        )?;
        if let Some(drain) = self.streams_trace_drain {
            match drain {
                Some(d) => writeln!(
                    out,
                    "- Their traces were all acked by the control plane {:.1}s after the last stream ended.",
                    d.as_secs_f64()
                )?,
                None => writeln!(
                    out,
                    "- Their traces were still not all acked by the control plane 10s after the last stream ended."
                )?,
            }
        }
        let limit = |l: &Option<(String, String)>| {
            l.as_ref().map_or_else(
                || "unknown".to_owned(),
                |(soft, hard)| format!("{soft} (hard {hard})"),
            )
        };
        writeln!(
            out,
            "- Open-file limit: {} for the benchmark (client and mock, about two descriptors per \
             stream), {} for the gateway (about two per stream too).\n",
            limit(&self.open_files.bench),
            limit(&self.open_files.gateway),
        )
    }

    fn scenario_table(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "| Scenario | Requests | Errors | Throughput (req/s) | p50 (ms) | p90 (ms) | p99 (ms) | First byte p50 (ms) | First token p50 / p99 (ms) | Gateway CPU per request (ms): while serving / until traces stored |"
        )?;
        writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
        for s in &self.scenarios {
            let total = s.total();
            let ok = s.outcome.samples.len();
            let per_request = |cpu: Duration| {
                if ok > 0 { ms(cpu) / ok as f64 } else { 0.0 }
            };
            let first_token = match (s.stream, s.first_token()) {
                (true, Some(p)) => format!("{:.2} / {:.2}", p.p50, p.p99),
                _ => "–".to_owned(),
            };
            let first_byte = match (s.stream, s.first_byte()) {
                (true, Some(p)) => format!("{:.2}", p.p50),
                _ => "–".to_owned(),
            };
            writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.3} / {:.3} |",
                s.name,
                ok + s.outcome.error_count(),
                s.outcome.error_count(),
                s.throughput(),
                fmt_ms(total.map(|p| p.p50)),
                fmt_ms(total.map(|p| p.p90)),
                fmt_ms(total.map(|p| p.p99)),
                first_byte,
                first_token,
                per_request(s.gateway_cpu_serving),
                per_request(s.gateway_cpu),
            )?;
        }
        writeln!(out)?;
        for s in &self.scenarios {
            for (kind, n) in &s.outcome.errors {
                writeln!(out, "- {} error ×{n}: `{kind}`", s.name)?;
            }
            if s.outcome.not_sent > 0 {
                writeln!(
                    out,
                    "- {}: {} requests not sent, the {}s deadline passed",
                    s.name,
                    s.outcome.not_sent,
                    self.load.deadline.as_secs()
                )?;
            }
        }
        Ok(())
    }

    /// Gateway against direct, pairing the scenarios by stream mode.
    fn overhead_table(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "| Overhead | Direct p50 (ms) | Gateway p50 (ms) | Added p50 (ms) | Ratio p50 | Added p99 (ms) |"
        )?;
        writeln!(out, "|---|--:|--:|--:|--:|--:|")?;
        for stream in [false, true] {
            let find = |gateway: bool| {
                self.scenarios
                    .iter()
                    .find(|s| s.stream == stream && s.name.starts_with("gateway") == gateway)
            };
            let (Some(direct), Some(gateway)) = (find(false), find(true)) else {
                continue;
            };
            let label = if stream { "streamed" } else { "JSON" };
            overhead_row(
                out,
                &format!("{label}, whole response"),
                direct.total(),
                gateway.total(),
            )?;
            if stream {
                overhead_row(
                    out,
                    "streamed, first token",
                    direct.first_token(),
                    gateway.first_token(),
                )?;
            }
        }
        writeln!(out)
    }

    fn gateway_facts(&self, out: &mut String) -> std::fmt::Result {
        let rss_after: Vec<String> = self
            .scenarios
            .iter()
            .map(|s| format!("{} after {}", mib(s.gateway_rss_after.rss_kib), s.name))
            .collect();
        writeln!(
            out,
            "- Gateway memory: peak RSS (VmHWM) **{}**; RSS {} when ready, {}, {} at the end.",
            mib(self.memory_end.peak_kib),
            mib(self.rss_ready.rss_kib),
            rss_after.join(", "),
            mib(self.memory_end.rss_kib),
        )?;
        writeln!(
            out,
            "- The mock provider received {} requests for the {} sent to it directly or through the gateway (warm-ups included).",
            self.mock_received, self.sent
        )?;
        for s in self
            .scenarios
            .iter()
            .filter(|s| s.name.starts_with("gateway"))
        {
            let threads: Vec<String> = s
                .gateway_threads
                .iter()
                .map(|(name, cpu)| format!("{:.2}s `{name}`", cpu.as_secs_f64()))
                .collect();
            writeln!(
                out,
                "- Gateway CPU for {} until its traces were stored: {:.2}s in all ({:.2}s while serving); by thread: {}.",
                s.name,
                s.gateway_cpu.as_secs_f64(),
                s.gateway_cpu_serving.as_secs_f64(),
                threads.join(", ")
            )?;
        }
        let drains: Vec<String> = self
            .scenarios
            .iter()
            .filter(|s| s.name.starts_with("gateway"))
            .map(|s| {
                let waiting = s
                    .spool_after_load
                    .map_or_else(|| "?".to_owned(), |n| format!("{n:.0}"));
                match s.trace_drain {
                    Some(d) => format!(
                        "{} ({waiting} traces still unacked when its last response ended, all acked {:.1}s later)",
                        s.name,
                        d.as_secs_f64()
                    ),
                    None => format!(
                        "{} ({waiting} traces unacked when its last response ended, still not all acked 10s later)",
                        s.name
                    ),
                }
            })
            .collect();
        writeln!(out, "- Traces: {}.", drains.join(", "))?;
        let how = if self.stopped.killed {
            "did not exit within the grace period after SIGTERM and was killed"
        } else {
            "exited after SIGTERM"
        };
        writeln!(
            out,
            "- Gateway {how} in {:.2}s ({}).",
            self.stopped.took.as_secs_f64(),
            self.stopped.status
        )?;
        let levels: Vec<String> = self
            .log
            .by_level
            .iter()
            .map(|(level, n)| format!("{n} {level}"))
            .collect();
        if self.log.lines == 0 {
            writeln!(out, "- Gateway log at `RUST_LOG=warn`: empty.")?;
        } else {
            writeln!(
                out,
                "- Gateway log at `RUST_LOG=warn`: {} lines ({}). Most frequent:",
                self.log.lines,
                levels.join(", ")
            )?;
            for (message, n) in &self.log.top {
                writeln!(out, "  - ×{n} `{message}`")?;
            }
        }
        writeln!(out, "\nData-plane counters at the end of the run:\n")?;
        writeln!(out, "```text")?;
        for line in &self.metrics {
            writeln!(out, "{line}")?;
        }
        writeln!(out, "```")
    }
}

fn overhead_row(
    out: &mut String,
    label: &str,
    direct: Option<Percentiles>,
    gateway: Option<Percentiles>,
) -> std::fmt::Result {
    let (Some(d), Some(g)) = (direct, gateway) else {
        return writeln!(out, "| {label} | – | – | – | – | – |");
    };
    let ratio = if d.p50 > 0.0 {
        format!("{:.2}×", g.p50 / d.p50)
    } else {
        "–".to_owned()
    };
    writeln!(
        out,
        "| {label} | {:.2} | {:.2} | {:+.2} | {ratio} | {:+.2} |",
        d.p50,
        g.p50,
        g.p50 - d.p50,
        g.p99 - d.p99
    )
}

/// "met", or "no: X over" and how many times the goal that is.
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

/// Replaces what is between the markers in the file at `path` with `section`.
pub fn write_readme(path: &Path, section: &str) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let updated = replace_section(&text, section)
        .with_context(|| format!("updating the results section of {}", path.display()))?;
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

fn replace_section(text: &str, section: &str) -> anyhow::Result<String> {
    let Some(start) = text.find(START_MARKER) else {
        bail!("no {START_MARKER} line");
    };
    let body_start = start + START_MARKER.len();
    let Some(end) = text[body_start..].find(END_MARKER).map(|i| body_start + i) else {
        bail!("no {END_MARKER} line after {START_MARKER}");
    };
    Ok(format!(
        "{}\n\n{}\n{}",
        &text[..body_start],
        section.trim_end(),
        &text[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_marked_section() {
        let text = format!("# T\n\nintro\n\n{START_MARKER}\nold\n{END_MARKER}\n\nafter\n");
        let updated = replace_section(&text, "new table\n").unwrap();
        assert_eq!(
            updated,
            format!("# T\n\nintro\n\n{START_MARKER}\n\nnew table\n{END_MARKER}\n\nafter\n")
        );
        // Idempotent: a second write gives the same file.
        assert_eq!(replace_section(&updated, "new table\n").unwrap(), updated);
    }

    #[test]
    fn missing_markers_are_an_error() {
        assert!(replace_section("no markers", "x").is_err());
        assert!(replace_section(START_MARKER, "x").is_err());
    }

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

    #[test]
    fn overhead_row_shows_difference_and_ratio() {
        let p = |p50, p99| Some(Percentiles { p50, p90: p50, p99 });
        let mut out = String::new();
        overhead_row(&mut out, "JSON", p(1.0, 2.0), p(1.5, 4.0)).unwrap();
        assert_eq!(out, "| JSON | 1.00 | 1.50 | +0.50 | 1.50× | +2.00 |\n");
    }
}

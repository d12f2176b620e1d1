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

/// The README lines that enclose the generated section.
pub const START_MARKER: &str = "<!-- bench-results:start -->";
pub const END_MARKER: &str = "<!-- bench-results:end -->";

/// One measured scenario.
#[derive(Debug)]
pub struct ScenarioResult {
    pub name: &'static str,
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
        self.gateway_facts(out)?;
        Ok(())
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
    fn overhead_row_shows_difference_and_ratio() {
        let p = |p50, p99| Some(Percentiles { p50, p90: p50, p99 });
        let mut out = String::new();
        overhead_row(&mut out, "JSON", p(1.0, 2.0), p(1.5, 4.0)).unwrap();
        assert_eq!(out, "| JSON | 1.00 | 1.50 | +0.50 | 1.50× | +2.00 |\n");
    }
}

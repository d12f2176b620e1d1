//! The report's facts in words: the many-streams memory test, and what the
//! data plane and the control plane used, logged and how they stopped.

use std::fmt::Write as _;

use super::{Report, ScenarioResult, Usage, mb, mib, thousands};
use crate::logs::LogSummary;
use crate::process::Stopped;

impl Report {
    pub(super) fn streams_facts(&self, out: &mut String) -> std::fmt::Result {
        let Some(s) = &self.streams else {
            return Ok(());
        };
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
        let all_open = s.peak_rss_all_open_kib.map_or_else(|| "–".to_owned(), mb);
        writeln!(
            out,
            "- Data-plane VmRSS around the streams ({} samples, every 10 ms): {} before, **{} peak \
             while all were open**, {} peak over the whole test, {} once all had ended.",
            s.samples,
            mb(s.rss_before_kib),
            all_open,
            mb(s.peak_rss_kib),
            mb(s.rss_after_kib),
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
             stream), {} for the data plane (about two per stream too).\n",
            limit(&self.open_files.bench),
            limit(&self.open_files.gateway),
        )
    }

    pub(super) fn process_facts(&self, out: &mut String) -> std::fmt::Result {
        let through_gateway = || self.all_scenarios().filter(|s| s.via_gateway);
        let rss_after: Vec<String> = self
            .scenarios
            .iter()
            .map(|s| format!("{} after {}", mib(s.gateway.rss_after.rss_kib), s.name))
            .collect();
        let idle = &self.rss_idle;
        let settled = if idle.settled {
            format!("settled {:.1}s after ready", idle.after.as_secs_f64())
        } else {
            format!("still moving {:.1}s after ready", idle.after.as_secs_f64())
        };
        writeln!(
            out,
            "- Gateway (data plane) memory: peak RSS (VmHWM) **{}**; RSS {} when `/readyz` first \
             answered, **{} idle** ({settled}, its tokenizer loaded in the background), {}, {} at \
             the end.",
            mib(self.memory_end.peak_kib),
            mib(self.rss_ready.rss_kib),
            mib(idle.memory.rss_kib),
            rss_after.join(", "),
            mib(self.memory_end.rss_kib),
        )?;
        writeln!(
            out,
            "- Control plane memory (for information; it runs apart from the gateway): RSS {} when \
             the data plane was ready, {} at the end, peak (VmHWM) {}.",
            mib(self.control_plane_ready.rss_kib),
            mib(self.control_plane_memory_end.rss_kib),
            mib(self.control_plane_memory_end.peak_kib),
        )?;
        writeln!(
            out,
            "- The mock provider received {} requests for the {} sent to it directly or through the gateway (warm-ups included).",
            self.mock_received, self.sent
        )?;
        for s in through_gateway() {
            writeln!(
                out,
                "- CPU for {} until its traces were stored: data plane {}; control plane {}.",
                s.name,
                usage_words(s, &s.gateway),
                usage_words(s, &s.control_plane),
            )?;
        }
        let drains: Vec<String> = through_gateway()
            .map(|s| {
                let waiting = s
                    .spool_after_load
                    .map_or_else(|| "?".to_owned(), |n| format!("{n:.0}"));
                match s.trace_drain {
                    Some(d) => format!(
                        "{} {waiting}, all acked {:.1}s later",
                        s.name,
                        d.as_secs_f64()
                    ),
                    None => format!("{} {waiting}, still not all acked 10s later", s.name),
                }
            })
            .collect();
        writeln!(
            out,
            "- Traces still unacked by the control plane when a scenario's last response ended: {}.",
            drains.join("; ")
        )?;
        stopped_line(out, "Data plane", &self.stopped.data_plane)?;
        stopped_line(out, "Control plane", &self.stopped.control_plane)?;
        log_lines(out, "Data-plane", &self.log)?;
        log_lines(out, "Control-plane", &self.control_plane_log)?;
        writeln!(out, "\nData-plane counters at the end of the run:\n")?;
        writeln!(out, "```text")?;
        for line in &self.metrics {
            writeln!(out, "{line}")?;
        }
        writeln!(out, "```")
    }

    /// Every measured scenario in the order it ran.
    fn all_scenarios(&self) -> impl Iterator<Item = &ScenarioResult> {
        self.scenarios
            .iter()
            .chain(self.sweep.iter().flat_map(|p| [&p.direct, &p.gateway]))
            .chain(self.paced.iter().flat_map(|p| [&p.direct, &p.gateway]))
    }
}

/// e.g. `1.17s (0.110 ms a request, 40% of it in the kernel; 0.55s while
/// serving), by thread 0.81s `x``.
fn usage_words(s: &ScenarioResult, usage: &Usage) -> String {
    let threads: Vec<String> = usage
        .threads
        .iter()
        .map(|(name, cpu)| format!("{:.2}s `{name}`", cpu.as_secs_f64()))
        .collect();
    let threads = if threads.is_empty() {
        "none measurable".to_owned()
    } else {
        threads.join(", ")
    };
    let kernel = if usage.cpu.is_zero() {
        0.0
    } else {
        100.0 * usage.cpu_system.as_secs_f64() / usage.cpu.as_secs_f64()
    };
    format!(
        "{:.2}s ({:.3} ms a request, {kernel:.0}% of it in the kernel; {:.2}s while serving), by \
         thread {threads}",
        usage.cpu.as_secs_f64(),
        s.per_request(usage.cpu),
        usage.cpu_serving.as_secs_f64(),
    )
}

fn stopped_line(out: &mut String, who: &str, stopped: &Stopped) -> std::fmt::Result {
    let how = if stopped.killed {
        "did not exit within the grace period after SIGTERM and was killed"
    } else {
        "exited after SIGTERM"
    };
    writeln!(
        out,
        "- {who} {how} in {:.2}s ({}).",
        stopped.took.as_secs_f64(),
        stopped.status
    )
}

fn log_lines(out: &mut String, who: &str, log: &LogSummary) -> std::fmt::Result {
    if log.lines == 0 {
        return writeln!(out, "- {who} log at `RUST_LOG=warn`: empty.");
    }
    let levels: Vec<String> = log
        .by_level
        .iter()
        .map(|(level, n)| format!("{n} {level}"))
        .collect();
    writeln!(
        out,
        "- {who} log at `RUST_LOG=warn`: {} lines ({}). Most frequent:",
        log.lines,
        levels.join(", ")
    )?;
    for (message, n) in &log.top {
        writeln!(out, "  - ×{n} `{message}`")?;
    }
    Ok(())
}

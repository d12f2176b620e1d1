//! The latency tables of the report and the goals.

use std::fmt::Write as _;

use super::{Report, ScenarioResult, cores, fmt_ms, mb, thousands, verdict};
use crate::stats::{Percentiles, percentile};

/// The connections the latency goals are set at.
const GOAL_CONCURRENCY: usize = 64;
/// Added p50 and p99 latency the gateway should stay under there, ms.
const GOAL_ADDED_P50_MS: f64 = 0.2;
const GOAL_ADDED_P99_MS: f64 = 1.0;
/// The gateway's resident memory should stay under this with
/// [`GOAL_STREAMS`] streams open, in MB (10^6 bytes).
const GOAL_STREAMS_MB: f64 = 150.0;
const GOAL_STREAMS: usize = 1000;

impl Report {
    pub(super) fn scenario_table(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "| Scenario | Requests | Errors | Throughput (req/s) | p50 (ms) | p90 (ms) | p99 (ms) | First byte p50 (ms) | First token p50 / p99 (ms) | Gateway CPU per request (ms): while serving / until traces stored | Control plane CPU per request (ms), until traces stored |"
        )?;
        writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
        for s in &self.scenarios {
            let total = s.total();
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
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.3} / {:.3} | {:.3} |",
                s.name,
                s.outcome.samples.len() + s.outcome.error_count(),
                s.outcome.error_count(),
                s.throughput(),
                fmt_ms(total.map(|p| p.p50)),
                fmt_ms(total.map(|p| p.p90)),
                fmt_ms(total.map(|p| p.p99)),
                first_byte,
                first_token,
                s.per_request(s.gateway.cpu_serving),
                s.per_request(s.gateway.cpu),
                s.per_request(s.control_plane.cpu),
            )?;
        }
        writeln!(out)?;
        self.problems(out, self.scenarios.iter())
    }

    /// Errors and unsent requests of these scenarios, one line each.
    fn problems<'a>(
        &self,
        out: &mut String,
        scenarios: impl Iterator<Item = &'a ScenarioResult>,
    ) -> std::fmt::Result {
        for s in scenarios {
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
    pub(super) fn overhead_table(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "| Overhead (closed loop, concurrency {}) | Direct p50 (ms) | Gateway p50 (ms) | Added p50 (ms) | Ratio p50 | Added p99 (ms) |",
            self.load.concurrency
        )?;
        writeln!(out, "|---|--:|--:|--:|--:|--:|")?;
        for stream in [false, true] {
            let find = |gateway: bool| {
                self.scenarios
                    .iter()
                    .find(|s| s.stream == stream && s.via_gateway == gateway)
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

    pub(super) fn concurrency_table(&self, out: &mut String) -> std::fmt::Result {
        if self.sweep.is_empty() {
            return Ok(());
        }
        writeln!(
            out,
            "Closed loop by concurrency (JSON; each connection sends its next request as soon as \
             the previous one has ended, so the load is as high as client, mock and gateway \
             allow; {} measured requests each way after {} warm-up requests; concurrency {} is \
             the JSON rows above):\n",
            self.load.requests, self.warmup, self.load.concurrency
        )?;
        writeln!(
            out,
            "| Concurrency | Direct p50 (ms) | Direct p99 (ms) | Gateway p50 (ms) | Gateway p99 (ms) | Added p50 (ms) | Added p99 (ms) | Direct (req/s) | Gateway (req/s) | Gateway CPU per request (ms) | Gateway CPU while serving (cores) | Control plane CPU (cores) | Errors direct / gateway |"
        )?;
        writeln!(out, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
        for (concurrency, direct, gateway) in self.json_pairs() {
            let (d, g) = (direct.total(), gateway.total());
            writeln!(
                out,
                "| {concurrency} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.3} | {:.2} | {:.2} | {} / {} |",
                fmt_ms(d.map(|p| p.p50)),
                fmt_ms(d.map(|p| p.p99)),
                fmt_ms(g.map(|p| p.p50)),
                fmt_ms(g.map(|p| p.p99)),
                added(d, g, |p| p.p50),
                added(d, g, |p| p.p99),
                direct.throughput(),
                gateway.throughput(),
                gateway.per_request(gateway.gateway.cpu_serving),
                cores(gateway.gateway.cpu_serving, gateway.outcome.elapsed),
                cores(gateway.control_plane.cpu_serving, gateway.outcome.elapsed),
                direct.outcome.error_count(),
                gateway.outcome.error_count(),
            )?;
        }
        writeln!(out)?;
        self.problems(out, self.sweep.iter().flat_map(|p| [&p.direct, &p.gateway]))?;
        // The busiest the gateway got: its highest JSON throughput.
        if let Some((concurrency, _, gateway)) = self
            .json_pairs()
            .into_iter()
            .max_by(|a, b| a.2.throughput().total_cmp(&b.2.throughput()))
        {
            writeln!(
                out,
                "- Requests per second at saturation through the gateway: **{:.0} req/s**, the highest \
                 closed-loop JSON throughput through the gateway in this run (at concurrency \
                 {concurrency}: successful requests over the wall time of {} requests), with the data \
                 plane using {:.2} cores and the control plane {:.2} while client and mock ran on the \
                 same {} cores.\n",
                gateway.throughput(),
                gateway.outcome.samples.len() + gateway.outcome.error_count(),
                cores(gateway.gateway.cpu_serving, gateway.outcome.elapsed),
                cores(gateway.control_plane.cpu_serving, gateway.outcome.elapsed),
                std::thread::available_parallelism().map_or(0, |n| n.get()),
            )?;
        }
        Ok(())
    }

    /// The closed loop and the paced run at the paced concurrency, side by side.
    pub(super) fn paced_table(&self, out: &mut String) -> std::fmt::Result {
        let Some(paced) = &self.paced else {
            return Ok(());
        };
        let concurrency = paced.load.concurrency;
        let offered = paced.load.offered_rate().unwrap_or(0.0);
        writeln!(
            out,
            "JSON with {concurrency} connections, closed loop and paced (direct and through the \
             gateway, {} measured requests each way after {} warm-up requests):\n",
            self.load.requests, self.warmup
        )?;
        writeln!(
            out,
            "| Measurement, {concurrency} connections | Offered (req/s) | Direct p50 (ms) | Direct p99 (ms) | Gateway p50 (ms) | Gateway p99 (ms) | Added p50 (ms) | Added p99 (ms) | Direct (req/s) | Gateway (req/s) | Gateway CPU per request (ms) | Gateway CPU while serving (cores) | Errors direct / gateway |"
        )?;
        writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
        let closed = self
            .json_pairs()
            .into_iter()
            .find(|(c, _, _)| *c == concurrency);
        let mut rows: Vec<(String, String, &ScenarioResult, &ScenarioResult)> = Vec::new();
        if let Some((_, direct, gateway)) = closed {
            rows.push((
                "closed loop: saturation".to_owned(),
                "as fast as answered".to_owned(),
                direct,
                gateway,
            ));
        }
        rows.push((
            format!("paced: {:.0}% of saturation", paced.fraction * 100.0),
            format!("{offered:.0}"),
            &paced.direct,
            &paced.gateway,
        ));
        for (label, offered, direct, gateway) in rows {
            let (d, g) = (direct.total(), gateway.total());
            writeln!(
                out,
                "| {label} | {offered} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.3} | {:.2} | {} / {} |",
                fmt_ms(d.map(|p| p.p50)),
                fmt_ms(d.map(|p| p.p99)),
                fmt_ms(g.map(|p| p.p50)),
                fmt_ms(g.map(|p| p.p99)),
                added(d, g, |p| p.p50),
                added(d, g, |p| p.p99),
                direct.throughput(),
                gateway.throughput(),
                gateway.per_request(gateway.gateway.cpu_serving),
                cores(gateway.gateway.cpu_serving, gateway.outcome.elapsed),
                direct.outcome.error_count(),
                gateway.outcome.error_count(),
            )?;
        }
        writeln!(out)?;
        self.problems(out, [&paced.direct, &paced.gateway].into_iter())?;
        let pace_ms = paced.load.pace.map_or(0.0, |p| p.as_secs_f64() * 1000.0);
        writeln!(
            out,
            "- Paced: each of the {concurrency} connections sends one request every {pace_ms:.2} ms \
             on a fixed schedule, the connections staggered evenly, {offered:.0} req/s in all: \
             {:.0}% of {:.0} req/s, the saturation throughput measured above (closed loop, \
             concurrency {}). Latency is timed from the moment a request is sent, as in the closed \
             loop.",
            paced.fraction * 100.0,
            paced.saturation,
            paced.saturation_concurrency,
        )?;
        for s in [&paced.direct, &paced.gateway] {
            writeln!(out, "- {}", pacing_summary(s))?;
        }
        writeln!(out)
    }

    pub(super) fn goals_table(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out, "| Goal | Measurement | Target | Measured | Met |")?;
        writeln!(out, "|---|---|--:|--:|---|")?;
        let mut measurements: Vec<(String, Option<(Percentiles, Percentiles)>)> = Vec::new();
        if let Some(paced) = self
            .paced
            .as_ref()
            .filter(|p| p.load.concurrency == GOAL_CONCURRENCY)
        {
            measurements.push((
                format!(
                    "paced: {GOAL_CONCURRENCY} connections offering {:.0}% of saturation ({:.0} req/s)",
                    paced.fraction * 100.0,
                    paced.load.offered_rate().unwrap_or(0.0)
                ),
                both(&paced.direct, &paced.gateway),
            ));
        }
        let closed = self
            .json_pairs()
            .into_iter()
            .find(|(c, _, _)| *c == GOAL_CONCURRENCY)
            .and_then(|(_, d, g)| both(d, g));
        measurements.push((
            format!("closed loop: concurrency {GOAL_CONCURRENCY}, saturated"),
            closed,
        ));
        for (what, goal, pick) in [
            (
                "p50",
                GOAL_ADDED_P50_MS,
                (|p: &Percentiles| p.p50) as fn(&Percentiles) -> f64,
            ),
            ("p99", GOAL_ADDED_P99_MS, |p: &Percentiles| p.p99),
        ] {
            for (measurement, pair) in &measurements {
                let label = format!("Added latency {what}, JSON, {GOAL_CONCURRENCY} connections");
                match pair {
                    Some((d, g)) => {
                        let added = pick(g) - pick(d);
                        writeln!(
                            out,
                            "| {label} | {measurement} | < {goal} ms | {added:+.2} ms | {} |",
                            verdict(added, goal, "ms", 2)
                        )?;
                    }
                    None => writeln!(
                        out,
                        "| {label} | {measurement} | < {goal} ms | not measured | – |"
                    )?,
                }
            }
        }
        let label = format!(
            "Gateway (data plane) RSS with {} concurrent streams",
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
                let ran = if s.started == GOAL_STREAMS {
                    String::new()
                } else {
                    format!(", {} streams run instead", thousands(s.started))
                };
                writeln!(
                    out,
                    "| {label} | {how}{ran} | < {GOAL_STREAMS_MB:.0} MB | {} | {} |",
                    mb(kib),
                    verdict(kib as f64 * 1024.0 / 1e6, GOAL_STREAMS_MB, "MB", 1)
                )?;
            }
            None => writeln!(
                out,
                "| {label} | – | < {GOAL_STREAMS_MB:.0} MB | not measured | – |"
            )?,
        }
        writeln!(out)
    }
}

fn both(direct: &ScenarioResult, gateway: &ScenarioResult) -> Option<(Percentiles, Percentiles)> {
    Some((direct.total()?, gateway.total()?))
}

/// Gateway minus direct for one percentile, e.g. `+0.12`.
fn added(
    direct: Option<Percentiles>,
    gateway: Option<Percentiles>,
    pick: fn(&Percentiles) -> f64,
) -> String {
    match (direct, gateway) {
        (Some(d), Some(g)) => format!("{:+.2}", pick(&g) - pick(&d)),
        _ => "–".to_owned(),
    }
}

/// How well a paced scenario kept to its schedule.
fn pacing_summary(s: &ScenarioResult) -> String {
    let mut lags = s.outcome.send_lags.clone();
    lags.sort_unstable();
    let at = |p: f64| percentile(&lags, p).map_or_else(|| "–".to_owned(), |v| format!("{v:.2} ms"));
    format!(
        "{}: {} of {} requests were due while their connection still waited for the previous \
         response (sent as soon as it ended); requests went out {} after their scheduled time at \
         p50, {} at p99, {} at most (the timer wakes on whole milliseconds).",
        s.name,
        s.outcome.late,
        lags.len(),
        at(50.0),
        at(99.0),
        at(100.0),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_row_shows_difference_and_ratio() {
        let p = |p50, p99| Some(Percentiles { p50, p90: p50, p99 });
        let mut out = String::new();
        overhead_row(&mut out, "JSON", p(1.0, 2.0), p(1.5, 4.0)).unwrap();
        assert_eq!(out, "| JSON | 1.00 | 1.50 | +0.50 | 1.50× | +2.00 |\n");
    }

    #[test]
    fn added_is_gateway_minus_direct() {
        let p = |p50| {
            Some(Percentiles {
                p50,
                p90: p50,
                p99: p50,
            })
        };
        assert_eq!(added(p(1.0), p(1.25), |p| p.p50), "+0.25");
        assert_eq!(added(None, p(1.0), |p| p.p50), "–");
    }
}

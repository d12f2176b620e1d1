//! The markdown section the simulation prints, and how `--write` puts it
//! into the bench README in place of the previous one.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use switchyard_domain::HealthState;

use super::market::{Market, PROFILES, utility};
use super::switchyard::{
    Closing, DEBOUNCE_MS, EVALUATE_MS, Inside, PROPAGATION_MS, REPORT_MS, ROUTE_WINDOW_MS,
    STALE_AFTER_MS, TELEMETRY_REFRESH_MS, WINDOW_MS,
};
use super::{
    AWAY_SHARE, BEFORE_MS, GRACE_MS, Kind, Outcome, SHARE_WINDOW_MS, Simulated, TIMELINE_MS,
};

/// The section's heading; `--write` replaces from it to the next `## ` heading.
pub const HEADING: &str = "## Routing quality (simulation)";

/// The goals the issue sets.
const ORACLE_SHARE_GOAL: f64 = 0.9;
const OUTAGE_SHARE_GOAL: f64 = 0.05;

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

fn secs(ms: Option<i64>) -> String {
    ms.map_or_else(
        || "never".to_owned(),
        |ms| format!("{:.1} s", ms as f64 / 1000.0),
    )
}

fn yes_no(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

/// Utility as a share of the oracle's.
fn of_oracle(o: &Outcome, oracle: &Outcome) -> f64 {
    o.utility / oracle.utility
}

struct Goals {
    oracle_share: f64,
    beats_baselines: bool,
    best_baseline: Option<(String, f64)>,
    outage: f64,
}

impl Goals {
    fn of(outcomes: &[Outcome]) -> Option<Self> {
        let oracle = outcomes.iter().find(|o| o.kind == Kind::Oracle)?;
        let us = outcomes.iter().find(|o| o.kind == Kind::Switchyard)?;
        let best_baseline = outcomes
            .iter()
            .filter(|o| o.kind == Kind::Baseline)
            .max_by(|a, b| a.utility.total_cmp(&b.utility));
        Some(Self {
            oracle_share: of_oracle(us, oracle),
            beats_baselines: best_baseline.is_none_or(|b| us.utility > b.utility),
            best_baseline: best_baseline.map(|b| (b.name.to_owned(), of_oracle(b, oracle))),
            outage: us.share_after_grace,
        })
    }

    fn met(&self) -> (bool, bool, bool) {
        (
            self.oracle_share >= ORACLE_SHARE_GOAL,
            self.beats_baselines,
            self.outage < OUTAGE_SHARE_GOAL,
        )
    }
}

fn market_table(out: &mut String, market: &Market) {
    let t0 = -market.scenario.warmup_ms;
    out.push_str(
        "| Target | Tier | Price in / out (USD per M tokens) | First token | Tokens/s | Whole answer | Errors | Utility of a request |\n|---|---|--:|--:|--:|--:|--:|--:|\n",
    );
    for (i, p) in PROFILES.iter().enumerate() {
        let outage = if i == market.scenario.outage_target {
            " (outage)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| `{}/{}`{outage} | {} | {:.2} / {:.2} | {:.0} ms | {:.0} | {:.0} ms | {:.1} % | {:+.3} |",
            p.provider,
            p.model,
            p.tier.as_str(),
            p.input_price,
            p.output_price,
            p.ttft_ms,
            p.tokens_per_second,
            market.mean_latency_ms(i, t0),
            p.error_rate * 100.0,
            market.expected_utility(i, t0),
        );
    }
}

fn results_table(out: &mut String, outcomes: &[Outcome]) {
    let Some(oracle) = outcomes.iter().find(|o| o.kind == Kind::Oracle) else {
        return;
    };
    let goals = Goals::of(outcomes);
    out.push_str(
        "| Router | Utility, % of oracle's | Succeeded | Attempts per request | Outage target's share before it | Sent into the outage | … after its first 2 s | Shift away | Shift back | Goals met |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n",
    );
    for o in outcomes {
        let name = match o.kind {
            Kind::Switchyard => format!("**{}**", o.name),
            Kind::Diagnostic => format!("*{}* (diagnostic)", o.name),
            Kind::Oracle | Kind::Baseline => o.name.to_owned(),
        };
        let goal = match (&goals, o.kind) {
            (Some(g), Kind::Switchyard) => {
                let (a, b, c) = g.met();
                format!(
                    "≥ 90 % of oracle: {}; ahead of every baseline: {}; < 5 % into the outage after 2 s: {}",
                    yes_no(a),
                    yes_no(b),
                    yes_no(c)
                )
            }
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {:.3} | {} | {} | {} | {} | {} | {goal} |",
            pct(of_oracle(o, oracle)),
            pct(o.success_rate()),
            o.attempts as f64 / o.requests.max(1) as f64,
            pct(o.share_before),
            pct(o.share_during),
            pct(o.share_after_grace),
            secs(o.shift_away_ms),
            secs(o.shift_back_ms),
        );
    }
}

fn goals_table(out: &mut String, outcomes: &[Outcome]) {
    let Some(g) = Goals::of(outcomes) else {
        return;
    };
    let (a, b, c) = g.met();
    let best = g
        .best_baseline
        .as_ref()
        .map_or("no baseline".to_owned(), |(name, share)| {
            format!("best baseline: {name}, {}", pct(*share))
        });
    out.push_str("| Goal | Target | Measured | Met |\n|---|--:|--:|---|\n");
    let _ = writeln!(
        out,
        "| Utility as a share of the oracle's | ≥ 90 % | {} | {} |",
        pct(g.oracle_share),
        yes_no(a)
    );
    let _ = writeln!(
        out,
        "| Ahead of every baseline | above the best | {} ({best}) | {} |",
        pct(g.oracle_share),
        yes_no(b)
    );
    let _ = writeln!(
        out,
        "| Requests sent into the outage after its first 2 s | < 5 % | {} | {} |",
        pct(g.outage),
        yes_no(c)
    );
}

/// The outage target's id.
fn outage_id(market: &Market) -> String {
    let p = &PROFILES[market.scenario.outage_target];
    format!("{}/{}", p.provider, p.model)
}

/// "nimbus-lite 52 %, atlas-pro 17 %", largest first, leaving out targets under 1 %.
fn answered_by(served: &[usize]) -> String {
    let total = served.iter().sum::<usize>().max(1) as f64;
    let mut by: Vec<(usize, usize)> = served.iter().copied().enumerate().collect();
    by.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    by.iter()
        .filter(|(_, n)| *n as f64 / total >= 0.01)
        .map(|(t, n)| format!("{} {:.0} %", PROFILES[*t].model, 100.0 * *n as f64 / total))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How the outage target's breakers closed again after the outage.
struct Recovery {
    /// From the outage's end until every node's breaker on it had closed.
    all_closed_ms: i64,
    /// Of those closings (each node's first after the end), how many came
    /// before the cool-down was over (a probe's success).
    early: usize,
    /// The fleet's error rate, attempts and confidence on it in the
    /// snapshot of the node whose breaker closed last.
    fleet: Option<(f64, u64, f64)>,
    /// Failed probes on it within the routing window before then.
    failed_probes: usize,
}

fn recovery(market: &Market, inside: &Inside) -> Option<Recovery> {
    let target = market.scenario.outage_target;
    let (_, end) = market.scenario.outage;
    let firsts: Vec<&Closing> = (0..market.scenario.nodes)
        .map(|n| {
            inside
                .closings
                .iter()
                .find(|c| c.target == target && c.node == n && c.at_ms >= end)
        })
        .collect::<Option<_>>()?;
    let last = firsts.iter().max_by_key(|c| c.at_ms)?;
    let window = last.at_ms - ROUTE_WINDOW_MS..=last.at_ms;
    let failed_probes = inside
        .failed_probes
        .iter()
        .filter(|(t, who)| *who == target && window.contains(t))
        .count();
    Some(Recovery {
        all_closed_ms: last.at_ms - end,
        early: firsts.iter().filter(|c| c.cooling).count(),
        fleet: last.fleet,
        failed_probes,
    })
}

fn inside_facts(out: &mut String, market: &Market, us: &Outcome, oracle: &Outcome) {
    let Some(inside) = &us.inside else {
        return;
    };
    let target = market.scenario.outage_target;
    let (start, end) = market.scenario.outage;
    let id = outage_id(market);
    let at = |ms: i64| format!("{:.1} s", ms as f64 / 1000.0);
    let verdicts: Vec<String> = inside
        .verdicts
        .iter()
        .filter(|(t, who, _)| *who == target && *t >= start - 10_000)
        .map(|(t, _, state)| format!("{} at {}", state.as_str(), at(*t)))
        .collect();
    let openings: Vec<&(i64, usize, usize)> = inside
        .openings
        .iter()
        .filter(|(t, who, _)| *who == target && (start..end + 60_000).contains(t))
        .collect();
    let nodes = market.scenario.nodes;
    let all_open = (0..nodes)
        .map(|n| openings.iter().find(|o| o.2 == n).map(|o| o.0 - start))
        .collect::<Option<Vec<i64>>>()
        .and_then(|delays| delays.into_iter().max());
    let b = &inside.before;
    let others = inside
        .verdicts
        .iter()
        .filter(|(t, who, s)| *who != target && *t >= 0 && *s != HealthState::Healthy)
        .count();
    let added = b.mean(b.added_ms) / 1000.0;
    let _ = writeln!(
        out,
        "- In the minute before the outage, when a data plane scored a request it had {:.1} attempts in flight on `{id}` on average, against a usual {:.1} when an attempt started there, and a peak-EWMA of its time to first token of {:.0} ms, so the in-flight count {} its expected time for a whole answer, which was truly {:.1} s.",
        b.mean(b.in_flight),
        b.mean(b.usual_in_flight),
        b.mean(b.ewma_ms),
        if added >= 0.0 {
            format!("added about {added:.2} s to")
        } else {
            format!("took about {:.2} s off", -added)
        },
        b.mean(b.latency_ms) / 1000.0,
    );
    let closed = recovery(market, inside).map_or_else(String::new, |r| {
        format!(
            " After it, every node's breaker on it had closed within {} of its end, {} of {nodes} by a probe before the cool-down was over.",
            at(r.all_closed_ms),
            r.early
        )
    });
    let _ = writeln!(
        out,
        "- Outage ({} to {}): breakers on {} opened {}; they opened on it {} times in all, each failed probe in half-open doubling the cool-down. The fleet's verdict on it: {}.{closed}",
        at(start),
        at(end),
        if all_open.is_some() {
            "every node"
        } else {
            "some nodes"
        },
        all_open.map_or_else(
            || "on some nodes only".to_owned(),
            |ms| format!("within {ms} ms of its start (streams cut off at once count as failures)")
        ),
        openings.len(),
        if verdicts.is_empty() {
            "no change".to_owned()
        } else {
            verdicts.join(", ")
        },
    );
    let _ = writeln!(
        out,
        "- During the outage Switchyard's requests were answered by {}; the oracle's by {}.",
        answered_by(&us.served_during),
        answered_by(&oracle.served_during),
    );
    let _ = writeln!(
        out,
        "- {} snapshots published over the run (warm-up included), {} active probes sent ({} to `{id}`); other targets were judged unhealthy {others} times; {} breakers were opened by the failure-ratio rule rather than by five failures in a row.",
        inside.snapshots,
        inside.probes,
        inside.probes_to.get(target).copied().unwrap_or(0),
        inside.ratio_openings,
    );
}

/// "gains 1.2 points", "costs 3.0 points", or "makes little difference (-0.3 points)".
fn effect(points: f64) -> String {
    if points >= 0.5 {
        format!("gains {points:.1} points")
    } else if points <= -0.5 {
        format!("costs {:.1} points", -points)
    } else {
        format!("makes little difference ({points:+.1} points)")
    }
}

/// A router's mean share of the oracle's utility over every seed's run.
fn mean_share(runs: &[Simulated], name: &str) -> Option<f64> {
    let shares: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let oracle = r.outcomes.iter().find(|o| o.kind == Kind::Oracle)?;
            let o = r.outcomes.iter().find(|o| o.name == name)?;
            Some(of_oracle(o, oracle))
        })
        .collect();
    (!shares.is_empty()).then(|| shares.iter().sum::<f64>() / shares.len() as f64)
}

/// What `us` lost against the oracle from `from` to `to` (virtual ms, on
/// the timeline's grid), in points of the oracle's whole utility.
fn points_lost(us: &Outcome, oracle: &Outcome, from: i64, to: i64) -> f64 {
    let slices = usize::try_from(from / TIMELINE_MS).unwrap_or(0)
        ..usize::try_from(to / TIMELINE_MS).unwrap_or(0);
    let sum = |o: &Outcome| {
        o.timeline
            .get(slices.clone())
            .map_or(0.0, |s| s.iter().map(|s| s.utility).sum::<f64>())
    };
    100.0 * (sum(oracle) - sum(us)) / oracle.utility
}

/// Data-driven sentences on the first seed's numbers.
fn what_the_numbers_say(
    out: &mut String,
    market: Option<&Market>,
    outcomes: &[Outcome],
    runs: &[Simulated],
) {
    let (Some(oracle), Some(us), Some(goals)) = (
        outcomes.iter().find(|o| o.kind == Kind::Oracle),
        outcomes.iter().find(|o| o.kind == Kind::Switchyard),
        Goals::of(outcomes),
    ) else {
        return;
    };
    let (a, b, c) = goals.met();
    let best = goals
        .best_baseline
        .as_ref()
        .map_or_else(String::new, |(name, share)| {
            format!("{name} at {}", pct(*share))
        });
    let _ = writeln!(
        out,
        "Switchyard reached {} of the oracle's utility ({} the 90 % goal) and was {} the best baseline, {best}. It sent {} of requests into the outage after its first 2 s ({} the 5 % goal), where fixed priority sent all of them and the latency EWMA {}.",
        pct(goals.oracle_share),
        if a { "meeting" } else { "missing" },
        if b { "ahead of" } else { "behind" },
        pct(goals.outage),
        if c { "meeting" } else { "missing" },
        outcomes
            .iter()
            .find(|o| o.name == "Latency EWMA")
            .map_or_else(|| "–".to_owned(), |o| pct(o.share_after_grace)),
    );
    let find = |name: &str| {
        outcomes
            .iter()
            .find(|o| o.name == name)
            .map(|o| of_oracle(o, oracle))
    };
    let over_seeds = |name: &str| {
        if runs.len() < 2 {
            return String::new();
        }
        mean_share(runs, name)
            .zip(mean_share(runs, "Switchyard"))
            .map_or_else(String::new, |(without, with)| {
                format!(
                    "; over all {} seeds it {}",
                    runs.len(),
                    effect(100.0 * (with - without))
                )
            })
    };
    if let (Some(truth), Some(no_count), Some(no_local)) = (
        find("Scoring with the true state"),
        find("Switchyard, no in-flight count"),
        find("Switchyard, no local signals"),
    ) {
        let load = us
            .inside
            .as_ref()
            .map(|i| i.before)
            .filter(|b| b.requests > 0 && b.ewma_ms > 0.0)
            .zip(market)
            .map_or_else(String::new, |(b, market)| {
                format!(
                    " (in the minute before the outage `{}` had {:.1} attempts in flight on a node against a usual {:.1}, so it looked {:.2} times as slow as its EWMA)",
                    outage_id(market),
                    b.mean(b.in_flight),
                    b.mean(b.usual_in_flight),
                    1.0 + b.added_ms / b.ewma_ms,
                )
            });
        let _ = writeln!(
            out,
            "\nThe diagnostics split the gap. The real scoring fed the true state reached {}: the {:.1} points it leaves are the balanced formula's own preferences, not missing information (its cost score 1 / (1 + price / reference) is steep for cheap models, so it accepts more latency for a lower price than this utility does). Switchyard without the count of attempts in flight reached {} and without any local signals {}. The count is taken relative to each target's usual level, so a hosted target's steady load does not make it look slow{load}: the in-flight count {} here{}.",
            pct(truth),
            100.0 * (1.0 - truth),
            pct(no_count),
            pct(no_local),
            effect(100.0 * (goals.oracle_share - no_count)),
            over_seeds("Switchyard, no in-flight count"),
        );
    }
    if runs.len() > 1 {
        let share = |r: &Simulated, kind: Kind, name: Option<&str>| {
            let oracle = r.outcomes.iter().find(|o| o.kind == Kind::Oracle)?;
            r.outcomes
                .iter()
                .filter(|o| o.kind == kind && name.is_none_or(|n| o.name == n))
                .map(|o| of_oracle(o, oracle))
                .max_by(f64::total_cmp)
        };
        let truth: Vec<f64> = runs
            .iter()
            .filter_map(|r| share(r, Kind::Diagnostic, Some("Scoring with the true state")))
            .collect();
        let behind = runs
            .iter()
            .filter(|r| {
                share(r, Kind::Diagnostic, Some("Scoring with the true state"))
                    .zip(share(r, Kind::Baseline, None))
                    .is_some_and(|(t, b)| t <= b)
            })
            .count();
        if !truth.is_empty() {
            let _ = writeln!(
                out,
                "\nOver all {} seeds the scoring fed the true state reached {:.1} % of the oracle's utility on average ({:.1} % at worst), and it was not ahead of the best baseline in {behind} of them: with this utility, a perfect health pipeline alone would not put Switchyard ahead of every baseline on every market; the rest of the gap is Switchyard's own.",
                runs.len(),
                100.0 * truth.iter().sum::<f64>() / truth.len() as f64,
                100.0 * truth.iter().copied().fold(f64::INFINITY, f64::min),
            );
        }
    }
    if let (Some(back), Some(market)) = (us.shift_back_ms, market) {
        let (start, end) = market.scenario.outage;
        let target = market.scenario.outage_target;
        let inside = us.inside.as_ref();
        let healthy = inside.and_then(|i| {
            i.verdicts
                .iter()
                .rfind(|(t, who, state)| {
                    *who == target && *t >= start && *state == HealthState::Healthy
                })
                .map(|(t, _, _)| t - end)
        });
        let verdict = match healthy {
            Some(d) if d >= 0 => format!(
                "the fleet's verdict on it was healthy {:.1} s after it",
                d as f64 / 1000.0
            ),
            Some(d) => format!(
                "the fleet's verdict on it was already healthy {:.1} s before it",
                -d as f64 / 1000.0
            ),
            None => "the fleet's verdict on it never left healthy".to_owned(),
        };
        let lost = points_lost(us, oracle, end, end + 60_000);
        let gap = 100.0 * (1.0 - goals.oracle_share);
        let during = points_lost(us, oracle, start, end);
        let share_of_gap = if lost > gap && during < 0.0 {
            format!(
                "more than the {gap:.1} it left in all (during the outage it got {:.1} points more than the oracle)",
                -during
            )
        } else {
            format!("of the {gap:.1} it left in all")
        };
        let _ = write!(
            out,
            "\nTraffic came back to the recovered target {:.1} s after the outage ended; {verdict}. The minute after the outage alone cost Switchyard {lost:.1} points of the oracle's utility, {share_of_gap}.",
            back as f64 / 1000.0,
        );
        let recovered = inside.and_then(|i| recovery(market, i));
        match recovered {
            Some(r) if r.all_closed_ms + 2_000 < back => {
                let fleet = r.fleet.map_or_else(String::new, |(error_rate, attempts, confidence)| {
                    format!(
                        " when the last breaker closed, that node's snapshot put its error rate over the last {} s at {} across {attempts} attempts (confidence {confidence:.2}), with {} failed probes in that window.",
                        ROUTE_WINDOW_MS / 1000,
                        pct(error_rate),
                        r.failed_probes,
                    )
                });
                let _ = writeln!(
                    out,
                    " Every node's breaker on it had closed {:.1} s after the end ({} of {} by a probe before the cool-down was over), so for the {:.1} s between, it was the fleet's telemetry that held traffic back, not the breakers:{fleet} The scorer kept the target behind the others until those failures aged out of the window and answers took their place.",
                    r.all_closed_ms as f64 / 1000.0,
                    r.early,
                    market.scenario.nodes,
                    (back - r.all_closed_ms) as f64 / 1000.0,
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    " What holds it back is each data plane's breaker: it stays open until its cool-down ends (5, 10, 20, 40 s, up to 60 s, doubled by every failed probe in half-open), unless a probe succeeds first (before the cool-down ends, the prober probes only a target the fleet marks: idle for 60 s, or ejected)."
                );
            }
        }
    }
}

fn seeds_table(out: &mut String, first_seed: u64, runs: &[&[Outcome]]) {
    let Some(first) = runs.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "The same over {} seeds ({first_seed} to {}): mean, with the lowest and highest in brackets.\n",
        runs.len(),
        first_seed + runs.len() as u64 - 1
    );
    out.push_str("| Router | Utility, % of oracle's | Sent into the outage after its first 2 s | Shift away | Shift back |\n|---|--:|--:|--:|--:|\n");
    let stat = |values: &[f64], f: &dyn Fn(f64) -> String| {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{} ({}–{})", f(mean), f(lo), f(hi))
    };
    let times = |values: Vec<Option<i64>>| {
        let never = values.iter().filter(|v| v.is_none()).count();
        let known: Vec<f64> = values.into_iter().flatten().map(|ms| ms as f64).collect();
        let mut cell = if known.is_empty() {
            "never".to_owned()
        } else {
            stat(&known, &|ms| format!("{:.1} s", ms / 1000.0))
        };
        if never > 0 && !known.is_empty() {
            let _ = write!(cell, "; never in {never}");
        }
        cell
    };
    for (i, o) in first.iter().enumerate() {
        if o.kind == Kind::Oracle {
            continue;
        }
        let shares: Vec<f64> = runs
            .iter()
            .filter_map(|r| Some(of_oracle(r.get(i)?, r.first()?)))
            .collect();
        let outage: Vec<f64> = runs
            .iter()
            .filter_map(|r| Some(r.get(i)?.share_after_grace))
            .collect();
        let away = runs
            .iter()
            .filter_map(|r| Some(r.get(i)?.shift_away_ms))
            .collect();
        let back = runs
            .iter()
            .filter_map(|r| Some(r.get(i)?.shift_back_ms))
            .collect();
        let name = match o.kind {
            Kind::Switchyard => format!("**{}**", o.name),
            Kind::Diagnostic => format!("*{}* (diagnostic)", o.name),
            Kind::Oracle | Kind::Baseline => o.name.to_owned(),
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} |",
            stat(&shares, &|x| format!("{:.1} %", x * 100.0)),
            stat(&outage, &|x| format!("{:.1} %", x * 100.0)),
            times(away),
            times(back),
        );
    }
    let goals: Vec<(bool, bool, bool)> = runs
        .iter()
        .filter_map(|r| Goals::of(r))
        .map(|g| g.met())
        .collect();
    let count = |f: &dyn Fn(&(bool, bool, bool)) -> bool| goals.iter().filter(|g| f(g)).count();
    let _ = writeln!(
        out,
        "\nSwitchyard met all three goals in {} of {} seeds: ≥ 90 % of the oracle's utility in {}, ahead of every baseline in {}, under 5 % into the outage after 2 s in {}.",
        count(&|g| g.0 && g.1 && g.2),
        goals.len(),
        count(&|g| g.0),
        count(&|g| g.1),
        count(&|g| g.2),
    );
}

/// The whole README section.
pub fn section(seed: u64, runs: &[Simulated], elapsed: Duration) -> String {
    let Some(first) = runs.first() else {
        return format!("{HEADING}\n\nNo run.\n");
    };
    let (market, outcomes) = (&first.market, first.outcomes.as_slice());
    let s = &market.scenario;
    let id = outage_id(market);
    let mut out = String::new();
    let _ = writeln!(out, "{HEADING}\n");
    let _ = writeln!(
        out,
        "How much of what a perfect router would get out of a moving market does Switchyard get? `switchyard-routing-sim` drives Switchyard's real routing and health code (in the data plane `scoring::plan`, `Breakers`, `LocalSignals`, `WindowBuilder` and the prober's `ProbeSchedule`; in the control plane `Aggregator`) in virtual time against a seeded market of simulated targets whose latency, error rate and price drift, one of which goes down for a minute and comes back. On the very same market it runs an oracle that knows the true state and three baselines, and reports utility as a share of the oracle's, requests sent into the outage, and how long traffic takes to shift away and back.\n"
    );
    let _ = writeln!(
        out,
        "```sh\n./bench/routing_sim.sh                # build (release), run, print this section\n./bench/routing_sim.sh --write        # ... and replace this section of the README\n./bench/routing_sim.sh --seed 7 --more-seeds 0 --timeline   # one market, with a 10 s timeline on stderr\n```\n\nDeterministic for a seed: `--seed` (default 1) makes the market, `--more-seeds` (default 9) adds that many further seeds to the summary. Everything runs in virtual time; this run took {:.1} s of real time for {} seeds of {} routers each.\n",
        elapsed.as_secs_f64(),
        runs.len(),
        outcomes.len()
    );

    out.push_str("### The market\n\n");
    let _ = writeln!(
        out,
        "Five targets on five providers, all answering to the alias `chat`; every request is the same streamed chat turn of 1,000 tokens in and 300 out, {:.0} a second (Poisson), spread round-robin over {} data planes. Each target's starting point, and what a request there is worth on average (its expected utility, below):\n",
        s.rate_per_s, s.nodes
    );
    market_table(&mut out, market);
    let _ = writeln!(
        out,
        "\nEvery 10 to 30 s, independently per target, latency, error rate and price take a step of a bounded random walk: latency × e^N(0, 0.12) within 0.6–1.8 times its start, error rate + N(0, 0.6 points) within 0.2–6 %, prices × e^N(0, 0.04) within 0.8–1.25 times (a registry write, which Switchyard publishes like any other). Each attempt draws its time to first token and its generation time log-normally around the means (σ 0.3 and 0.15); a 5xx arrives after 0.1–1 s. From {:.0} s to {:.0} s of the {:.0} s measured, every attempt on `{id}` fails with a 5xx after 0.2–0.6 s, and streams under way when it starts are cut off. A {:.0} s warm-up runs first and is not measured. Every router meets the same drift, outage and arrivals, and the same draw for the same attempt on the same target.\n",
        s.outage.0 as f64 / 1000.0,
        s.outage.1 as f64 / 1000.0,
        s.duration_ms as f64 / 1000.0,
        s.warmup_ms as f64 / 1000.0,
    );

    out.push_str("### Utility\n\n");
    let _ = writeln!(
        out,
        "One number per request, after the `balanced` strategy (quality, speed and cost weighed evenly), judged on what actually happened:\n\n- answered: *tier value − {mw} × price ÷ {ru:.4} USD − {tw} × time to the whole answer ÷ {rm:.0} ms*. The tier value is the scorer's quality of the tier (economy 0.45, standard 0.70, frontier 0.95); the two references are the scorer's own for this request (a model at 1 / 4 USD per million tokens in / out, and one at 500 ms to first token and 100 tokens a second, score 0.5 on cost and speed); {mw} is the slope of the scorer's 1 / (1 + x) at the reference, the same for money and for time. The time includes failed attempts and back-offs before the answer.\n- failed (every attempt failed, or a stream was cut off): *−{fp} − {tw} × time waited ÷ {rm:.0} ms*: the answer a standard model would have given is lost, and the time with it.\n\nZero is not asking at all, so a share of the oracle's utility is a share of the value it creates. The oracle knows every target's true error rate, mean latency and price at each moment and tries the targets in order of expected utility.\n",
        mw = utility::MONEY_WEIGHT,
        tw = utility::TIME_WEIGHT,
        ru = utility::REFERENCE_USD,
        rm = utility::REFERENCE_MS,
        fp = utility::FAILURE_PENALTY,
    );

    out.push_str("### Routers\n\n");
    let _ = writeln!(
        out,
        "- **Switchyard**: {nodes} data planes, each with its own breakers, local signals (a peak-EWMA of time to first token, times the attempts in flight plus one over the usual number plus one) and health windows, scoring every request with the real `scoring::plan` (strategy `balanced`, chain of 3) on the snapshot it last received, and executing as the engine does: the chain in order, skipping a target its breaker does not admit, one retry on the same target after a 5xx within the retry budget, at most 3 attempts; breakers hear every failure and success, the local signals every attempt and time to first token, the windows every attempt. Every {w} s a node closes its health windows (nodes staggered), stored {r} ms later. Every {e} s the control plane feeds the stored windows to the real `Aggregator` (default `HealthConfig`; targets' model names as peers, as the control plane passes them) and offers the telemetry (trusted for {st} s) to the publisher, which publishes at once when a verdict changes and otherwise at most every {tr} s while the numbers move; a price change is published {d} ms after the registry write. A snapshot reaches the data planes {p} ms after publication. Once a second each node's prober asks the data plane's own `ProbeSchedule` what to probe: every target its breaker holds half-open (taking the breaker's probe lease), and every target the fleet marks (idle for 60 s, or ejected) every 30 s × {nodes} nodes (± 20 %), as the control plane's defaults set it. A probe's success closes the breaker even while it cools down; a failure reaches the breaker and the health windows, as in the prober.\n- **Fixed priority**: always the registry's first and cheapest target, then down the list on failure.\n- **Round robin**: each node takes the targets in turn; a failure moves on to the next.\n- **Latency EWMA**: each node tries the target with the lowest EWMA (10 s decay) of the response times it has seen, answers and errors alike, untried ones first; no health, price or quality.\n- Diagnostics, to explain Switchyard's numbers: *scoring with the true state* runs the real `scoring::plan` on a snapshot whose telemetry is the truth (fresh, full confidence, the outage target ejected while down), with no breakers or local signals, so what separates it from the oracle is the scoring formula, not information; *no in-flight count* is Switchyard with the peak-EWMA fed but attempts in flight never counted; *no local signals* is Switchyard with neither.\n\nThe baselines fall back without retrying the same target; every router makes at most 3 attempts per request.\n",
        nodes = s.nodes,
        w = WINDOW_MS / 1000,
        r = REPORT_MS,
        e = EVALUATE_MS / 1000,
        st = STALE_AFTER_MS / 1000,
        tr = TELEMETRY_REFRESH_MS / 1000,
        d = DEBOUNCE_MS,
        p = PROPAGATION_MS,
    );

    let _ = writeln!(out, "### Results (seed {seed})\n");
    results_table(&mut out, outcomes);
    let _ = writeln!(
        out,
        "\n*Sent into the outage*: requests with any attempt on `{id}` while it was down, of all requests arriving then; *… after its first 2 s*: the same from {:.0} s on. *Shift away*: from the outage's start until that share, over {w} s windows every 0.1 s, stays below {away:.0} % to the end of the outage. *Shift back*: from its end until the share first reaches half of what it was over the {before} s before the outage. Succeeded: requests answered in full.\n",
        (s.outage.0 + GRACE_MS) as f64 / 1000.0,
        w = SHARE_WINDOW_MS / 1000,
        away = AWAY_SHARE * 100.0,
        before = BEFORE_MS / 1000,
    );
    goals_table(&mut out, outcomes);
    out.push('\n');
    if let (Some(us), Some(oracle)) = (
        outcomes.iter().find(|o| o.kind == Kind::Switchyard),
        outcomes.iter().find(|o| o.kind == Kind::Oracle),
    ) {
        inside_facts(&mut out, market, us, oracle);
        out.push('\n');
    }
    if runs.len() > 1 {
        let all: Vec<&[Outcome]> = runs.iter().map(|r| r.outcomes.as_slice()).collect();
        seeds_table(&mut out, seed, &all);
        out.push('\n');
    }

    out.push_str("### What the numbers say\n\n");
    what_the_numbers_say(&mut out, Some(market), outcomes, runs);
    out.push('\n');

    out.push_str("### Caveats\n\n");
    out.push_str(
        "- Restated rather than driven, because the code is private or bound to the wall clock and the network: the engine's loop over the chain (admission, retry budget, fallback), the publisher's rule for when telemetry is republished, and the prober's loop around `ProbeSchedule::due` (sending the probe, and what `Probe::run` does with its result). They follow the code as of this run; a change there is not picked up until this benchmark is changed too. Everything else is called as it is, with the virtual time wherever it takes one (`Breakers::success_at`, `ProbeSchedule::due`, …).\n- The market has hosted providers only: latency does not grow with the requests in flight, and there are no rate limits (no 429s), so the in-flight count and the rate-limited state get no chance to help; a self-hosted target with limited capacity would be the case for them. One request shape, one strategy, one kind of outage (a hard one: every attempt fails fast and streams under way are cut). Probes cost nothing in the utility.\n",
    );
    out
}

/// Replaces the section from [`HEADING`] to the next `## ` heading (or the
/// end), or appends it when the README has none.
pub fn replace_section(text: &str, section: &str) -> String {
    let section = section.trim_end();
    let Some(start) = text
        .match_indices(HEADING)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || text[..i].ends_with('\n'))
    else {
        return format!("{}\n\n{section}\n", text.trim_end());
    };
    let body = start + HEADING.len();
    let end = text[body..]
        .match_indices("\n## ")
        .next()
        .map_or(text.len(), |(i, _)| body + i + 1);
    let rest = &text[end..];
    if rest.is_empty() {
        format!("{}{section}\n", &text[..start])
    } else {
        format!("{}{section}\n\n{rest}", &text[..start])
    }
}

pub fn write_readme(path: &Path, section: &str) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    std::fs::write(path, replace_section(&text, section))
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_appended_once_then_replaced_in_place() {
        let text = "# Benchmarks\n\nintro\n\n## Scoring\n\nfast\n";
        let first = replace_section(text, &format!("{HEADING}\n\nold\n"));
        assert_eq!(first, format!("{}\n\n{HEADING}\n\nold\n", text.trim_end()));
        let second = replace_section(&first, &format!("{HEADING}\n\nnew\n"));
        assert_eq!(second, format!("{}\n\n{HEADING}\n\nnew\n", text.trim_end()));
        // In the middle, the sections around it stay as they are.
        let middle = format!("# B\n\n{HEADING}\n\nold\n\n### Sub\n\nx\n\n## Next\n\nkept\n");
        assert_eq!(
            replace_section(&middle, &format!("{HEADING}\n\nnew\n")),
            format!("# B\n\n{HEADING}\n\nnew\n\n## Next\n\nkept\n")
        );
    }
}

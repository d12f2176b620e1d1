//! `--timeline`: one seed's run in 10 s slices, for reading why a router
//! scored what it did. Not part of the README section.

use std::fmt::Write as _;

use super::market::PROFILES;
use super::{Kind, Simulated, TIMELINE_MS};

/// Each router's utility as a share of the oracle's, which targets answered
/// each router's requests, the market's true state, and what happened
/// inside each Switchyard variant.
pub fn timeline(run: &Simulated) -> String {
    let mut out = String::new();
    let outcomes = &run.outcomes;
    let Some(oracle) = outcomes.iter().find(|o| o.kind == Kind::Oracle) else {
        return out;
    };
    let header = |out: &mut String| {
        let _ = write!(out, "| From (s) |");
        for o in outcomes {
            let _ = write!(out, " {} |", o.name);
        }
        let _ = writeln!(out, "\n|{}", "--:|".repeat(outcomes.len() + 1));
    };
    let _ = writeln!(out, "Utility as a share of the oracle's, per 10 s:\n");
    header(&mut out);
    for (i, base) in oracle.timeline.iter().enumerate() {
        let _ = write!(out, "| {} |", i as i64 * TIMELINE_MS / 1000);
        for o in outcomes {
            let u = o.timeline.get(i).map_or(0.0, |s| s.utility);
            let _ = write!(out, " {:.0} % |", 100.0 * u / base.utility);
        }
        out.push('\n');
    }
    let names: Vec<&str> = PROFILES.iter().map(|p| p.model).collect();
    let _ = writeln!(
        out,
        "\nRequests answered by each target ({}), % per 10 s:\n",
        names.join(" / ")
    );
    header(&mut out);
    for i in 0..oracle.timeline.len() {
        let _ = write!(out, "| {} |", i as i64 * TIMELINE_MS / 1000);
        for o in outcomes {
            let cell = o.timeline.get(i).map_or_else(String::new, |slice| {
                slice
                    .served
                    .iter()
                    .map(|&n| format!("{:.0}", 100.0 * n as f64 / slice.requests.max(1) as f64))
                    .collect::<Vec<_>>()
                    .join("/")
            });
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\nTrue state at the start of each 10 s, per target: expected utility, latency factor, error rate, price factor:\n"
    );
    let market = &run.market;
    for i in 0..oracle.timeline.len() {
        let t = i as i64 * TIMELINE_MS;
        let cells: Vec<String> = (0..market.targets())
            .map(|target| {
                let step = market.step(target, t);
                format!(
                    "{:+.3} ×{:.2} {:.1} % ×{:.2}",
                    market.expected_utility(target, t),
                    step.latency,
                    market.error_rate(target, t) * 100.0,
                    step.price
                )
            })
            .collect();
        let _ = writeln!(out, "| {} | {} |", t / 1000, cells.join(" | "));
    }
    let at = |ms: i64| format!("{:.1}", ms as f64 / 1000.0);
    for o in outcomes {
        let Some(inside) = &o.inside else {
            continue;
        };
        let verdicts: Vec<String> = inside
            .verdicts
            .iter()
            .map(|(t, target, state)| {
                format!("{} {} {}", at(*t), PROFILES[*target].model, state.as_str())
            })
            .collect();
        let openings: Vec<String> = inside
            .openings
            .iter()
            .map(|(t, target, node)| format!("{} {} dp-{node}", at(*t), PROFILES[*target].model))
            .collect();
        let _ = writeln!(
            out,
            "\n{}: verdicts (s): {}\nbreakers opened (s): {}\nprobes per target: {:?}",
            o.name,
            verdicts.join(", "),
            openings.join(", "),
            inside.probes_to
        );
    }
    out
}

//! The markdown report of the rate-limiter benchmark, and where `--write`
//! puts it in bench/README.md.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Backend, ESTIMATED_TOKENS, KEYS, PACED, Plan, Timed, USED_TOKENS, WORKSPACES};
use crate::readme::Section;
use crate::stats::percentile;

/// Where the results go in bench/README.md.
pub const README_SECTION: Section = Section {
    title: "## Rate limiter",
    start: "<!-- limits-results:start -->",
    end: "<!-- limits-results:end -->",
};

/// What rate limiting may add to a request at p99 (with authentication).
pub const GOAL: Duration = Duration::from_micros(500);

#[derive(Debug)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub load_average: String,
    pub load_average_after: String,
    pub redis_version: String,
    pub plan: Plan,
    pub timed: Vec<Timed>,
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

fn sorted(samples: &[Duration]) -> Vec<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted
}

fn ms(sorted: &[Duration], p: f64) -> String {
    percentile(sorted, p).map_or_else(|| "–".to_owned(), |v| format!("{v:.3}"))
}

fn under_goal(sorted: &[Duration]) -> bool {
    percentile(sorted, 99.0).is_some_and(|p99| p99 < GOAL.as_secs_f64() * 1000.0)
}

impl Report {
    /// The scenarios the goal is about: Redis from one caller, and from
    /// several at a pace the node keeps up with. A closed loop of several
    /// callers measures queueing at saturation instead.
    fn judged(&self) -> impl Iterator<Item = &Timed> {
        self.timed.iter().filter(|t| {
            t.scenario.backend == Backend::Redis
                && (t.scenario.callers == 1 || t.scenario.offered.is_some())
        })
    }

    /// What makes the run miss its goal, in words; empty when it meets it.
    pub fn misses(&self) -> Vec<String> {
        self.judged()
            .filter(|t| !under_goal(&sorted(&t.both)))
            .map(|t| {
                format!(
                    "{}: admit + settle p99 {} ms, goal under {} ms",
                    t.scenario.label,
                    ms(&sorted(&t.both), 99.0),
                    GOAL.as_secs_f64() * 1000.0
                )
            })
            .collect()
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Run on {} on {} (load average {} before the run, {} after), against Redis {} \
             on loopback. In process, through the data plane's `Limiter` with the flags' \
             defaults (50 ms deadline, probe every second), this node's share set to a \
             quarter. Each call checks four limits in one `EVALSHA`: an API key's requests \
             and tokens per minute and its workspace's, reserving {} tokens; then settles \
             {} (a refund, the second round trip, which the data plane makes after the \
             response). {} API keys in {} workspaces, taking turns; limits high enough that \
             every call is admitted and writes all four limits. {} untimed calls first, then \
             {} timed ones per scenario; the concurrent scenario splits them among its \
             callers. Times in milliseconds, measured around each call.\n",
            self.date,
            self.machine,
            self.load_average,
            self.load_average_after,
            self.redis_version,
            ESTIMATED_TOKENS,
            USED_TOKENS,
            KEYS,
            WORKSPACES,
            self.plan.warmup,
            self.plan.calls,
        );
        out.push_str(
            "| Scenario | Callers | Offered (calls/s) | admit p50 | admit p99 | \
             admit + settle p50 | admit + settle p99 | max | Achieved (calls/s) | \
             decided in Redis / locally |\n\
             |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for t in &self.timed {
            let admit = sorted(&t.admit);
            let both = sorted(&t.both);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} / {} |",
                t.scenario.label,
                t.scenario.callers,
                t.scenario
                    .offered
                    .map_or_else(|| "as fast as answered".to_owned(), |r| format!("{r:.0}")),
                ms(&admit, 50.0),
                ms(&admit, 99.0),
                ms(&both, 50.0),
                ms(&both, 99.0),
                ms(&both, 100.0),
                t.calls_per_second(),
                t.redis,
                t.local,
            );
        }
        if let Some(paced) = self.timed.iter().find(|t| t.scenario.label == PACED)
            && let Some(offered) = paced.scenario.offered
        {
            let callers = paced.scenario.callers;
            let _ = writeln!(
                out,
                "\nPaced: each of the {callers} callers sends one call every {:.2} ms on a \
                 fixed schedule, the callers staggered evenly, {offered:.0} calls/s in all. \
                 Times run from when a call is sent; the timer wakes on whole milliseconds, \
                 so calls due within the same millisecond go out together.",
                callers as f64 / offered * 1000.0,
            );
        }
        let denied: u64 = self.timed.iter().map(|t| t.denied).sum();
        if denied > 0 {
            let _ = writeln!(out, "\n{denied} calls were denied (none should be).");
        }
        let verdicts: Vec<String> = self
            .judged()
            .map(|t| {
                format!(
                    "{} {}: {} ms (admit alone: {})",
                    met(under_goal(&sorted(&t.both))),
                    t.scenario.label,
                    ms(&sorted(&t.both), 99.0),
                    ms(&sorted(&t.admit), 99.0),
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "\nGoal: rate limiting adds under {} ms at p99 with Redis on loopback, admit and \
             settle together (not judged: the closed loop of several callers, which \
             measures queueing at saturation): {}.",
            GOAL.as_secs_f64() * 1000.0,
            verdicts.join("; ")
        );
        out
    }
}

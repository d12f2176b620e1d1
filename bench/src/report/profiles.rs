//! The callgrind summary: instructions per request in the data plane, by
//! function, for each scenario profiled with `--callgrind`.

use std::fmt::Write as _;

use super::Report;

/// Functions listed per table.
const TOP_EXCLUSIVE: usize = 15;
const TOP_INCLUSIVE: usize = 30;
/// Functions that include at least this share of everything (thread roots,
/// the runtime's loops) say nothing and are left out of the inclusive table.
const ROOT_SHARE: f64 = 0.9;
/// Longest function name shown.
const NAME_CHARS: usize = 160;

impl Report {
    pub(super) fn profiles(&self, out: &mut String) -> std::fmt::Result {
        for p in &self.profiles {
            let requests = p.requests.max(1) as f64;
            let total = p.profile.total.max(1) as f64;
            writeln!(
                out,
                "\nCallgrind, data plane, **{}**: **{:.0} instructions per request** ({} requests; \
                 counters zeroed after the warm-up, dumped once the requests' traces were stored; \
                 user space only). Profile: `{}`.\n",
                p.scenario,
                total / requests,
                p.requests,
                p.file.display()
            )?;
            writeln!(
                out,
                "| Exclusive: function | Instructions per request | Share |"
            )?;
            writeln!(out, "|---|--:|--:|")?;
            for (name, cost) in p.profile.exclusive.iter().take(TOP_EXCLUSIVE) {
                row(out, name, *cost as f64 / requests, *cost as f64 / total)?;
            }
            writeln!(out)?;
            writeln!(
                out,
                "| Inclusive: function (thread roots and runtime loops left out) | Instructions per request | Share |"
            )?;
            writeln!(out, "|---|--:|--:|")?;
            for (name, cost) in p
                .profile
                .inclusive
                .iter()
                .filter(|(_, cost)| (*cost as f64) < ROOT_SHARE * total)
                .take(TOP_INCLUSIVE)
            {
                row(out, name, *cost as f64 / requests, *cost as f64 / total)?;
            }
        }
        Ok(())
    }
}

fn row(out: &mut String, name: &str, per_request: f64, share: f64) -> std::fmt::Result {
    let mut shown: String = name.chars().take(NAME_CHARS).collect();
    if name.chars().count() > NAME_CHARS {
        shown.push('…');
    }
    writeln!(
        out,
        "| `{}` | {per_request:.0} | {:.1}% |",
        shown.replace('|', "\\|").replace('`', "'"),
        share * 100.0
    )
}

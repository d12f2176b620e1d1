//! `switchyard-routing-sim`: routing quality in a simulated market. A seeded
//! market of five targets serving one alias, whose latency, error rate and
//! price drift, one of which has a one-minute outage and recovers, is served
//! by Switchyard's real data-plane scoring, circuit breakers, local signals
//! and probe schedule on four simulated data planes, fed by the real
//! control-plane health aggregation through snapshots published with
//! production's delays, all in virtual time. The same market is served by an oracle that knows
//! the true state and by three baselines (fixed priority, round robin,
//! latency EWMA). It prints a markdown report: utility as a share of the
//! oracle's, requests sent into the outage, time to shift traffic away and
//! back; `--write` puts it into the "Routing quality (simulation)" section of
//! the bench README. Deterministic for a seed; a run takes seconds.

#![expect(
    clippy::print_stdout,
    reason = "the report is this binary's output and goes to stdout"
)]

#[path = "../routing_sim/mod.rs"]
mod routing_sim;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard-routing-sim",
    version,
    args_override_self = true,
    about = "Routing quality against an oracle and three baselines, in a simulated market"
)]
struct Args {
    /// Seeds the market: its drift, the arrivals and every attempt's draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also run this many further seeds (seed + 1, …) and summarise them.
    #[arg(long, default_value_t = 9)]
    more_seeds: u64,
    /// Replace the "Routing quality (simulation)" section of the README with the report.
    #[arg(long)]
    write: bool,
    /// Also print, per 10 s of the first seed's run, each router's utility
    /// and which targets answered (to stderr).
    #[arg(long)]
    timeline: bool,
    /// The README whose section `--write` replaces (or appends).
    #[arg(long, default_value = "bench/README.md")]
    readme: PathBuf,
}

/// Simulates every seed, spread over the available cores; results in seed order.
fn simulate_all(seeds: &[u64]) -> anyhow::Result<Vec<routing_sim::Simulated>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(seeds.len())
        .max(1);
    let mut done: Vec<Option<anyhow::Result<routing_sim::Simulated>>> =
        (0..seeds.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    seeds
                        .iter()
                        .enumerate()
                        .skip(w)
                        .step_by(workers)
                        .map(|(i, &seed)| (i, routing_sim::simulate(seed)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(results) => {
                    for (i, result) in results {
                        done[i] = Some(result);
                    }
                }
                Err(_) => anyhow::bail!("a simulation thread panicked"),
            }
        }
        Ok(())
    })?;
    done.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("a seed was not simulated"))))
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let seeds: Vec<u64> = (0..=args.more_seeds)
        .map(|i| args.seed.wrapping_add(i))
        .collect();
    let runs = simulate_all(&seeds)?;
    let section = routing_sim::report::section(args.seed, &runs, started.elapsed());
    println!("{section}");
    if args.timeline
        && let Some(first) = runs.first()
    {
        eprintln!("{}", routing_sim::timeline::timeline(first));
    }
    if args.write {
        routing_sim::report::write_readme(&args.readme, &section)?;
        eprintln!("updated {}", args.readme.display());
    }
    Ok(())
}

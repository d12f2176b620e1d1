//! `switchyard-limits`: what the data plane's rate limiter adds to a
//! request, against Redis on loopback.
//!
//! In process, against the real limiter (`switchyard_data_plane::limits`):
//! every call admits a request against an API key's and a workspace's
//! request and token limits (one script call in Redis) and then settles its
//! tokens (one more), timed around each call; first from one caller, then
//! from `--concurrency` callers at once, as fast as they are answered (a
//! closed loop) and then paced at `--paced-rate`. For comparison, the
//! same calls with Redis unreachable (the fallback to local limits: a URL on
//! which nothing listens) and with no Redis at all.
//!
//! It prints a markdown report and, with `--write`, puts it into the "Rate
//! limiter" section of the bench README. Its keys in Redis expire on their
//! own within milliseconds (the limits are far from spent).

#![expect(
    clippy::print_stdout,
    reason = "the report is this binary's output and goes to stdout"
)]

#[path = "../host.rs"]
mod host;
#[path = "../interrupts.rs"]
mod interrupts;
#[path = "../limits/mod.rs"]
mod limits;
#[path = "../readme.rs"]
mod readme;
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "shared with switchyard-bench; this binary uses only `percentile`"
    )
)]
#[path = "../stats.rs"]
mod stats;

use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::{Context as _, anyhow, ensure};
use clap::Parser;

use crate::interrupts::Interrupts;
use crate::limits::Plan;
use crate::limits::report::{self, Report};

/// Time the rate limiter's admission and settlement against Redis.
#[derive(Debug, Parser)]
#[command(name = "switchyard-limits", version, args_override_self = true)]
struct Args {
    /// The Redis to measure against (keys go under a prefix of their own).
    #[arg(long, env = "SWITCHYARD_TEST_REDIS_URL")]
    redis_url: String,
    /// Timed calls of each scenario.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Untimed calls before them.
    #[arg(long, default_value_t = 1_000)]
    warmup: usize,
    /// Callers of the concurrent scenarios.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Calls a second the paced scenario offers, all callers together: by
    /// default a busy data plane, over a third of the gateway benchmark's
    /// saturation throughput on two cores.
    #[arg(long, default_value_t = 2_000.0)]
    paced_rate: f64,
    /// Also put the report into the "Rate limiter" section of the README.
    #[arg(long)]
    write: bool,
    /// The README `--write` updates.
    #[arg(long, default_value = "bench/README.md")]
    readme: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Listen before anything starts, so an interrupt always finds a handler.
    let mut interrupts = Interrupts::listen()?;
    tokio::select! {
        result = run(args) => result,
        () = interrupts.recv() => Err(anyhow!("interrupted")),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.calls > 0, "--calls must be at least 1");
    ensure!(
        args.concurrency > 0 && args.concurrency <= args.calls,
        "--concurrency must be between 1 and --calls"
    );
    ensure!(
        args.paced_rate >= 1.0 && args.paced_rate.is_finite(),
        "--paced-rate must be at least 1"
    );
    let plan = Plan {
        calls: args.calls,
        warmup: args.warmup,
        concurrency: args.concurrency,
        paced_rate: args.paced_rate,
    };
    let load_average = host::load_average();
    let redis_version = redis_version(&args.redis_url).await?;
    // A loopback port nothing listens on, for the fallback scenario.
    let down_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port();
    let down_url = format!("redis://127.0.0.1:{down_port}");

    let timed = limits::measure(&args.redis_url, &down_url, &plan).await?;
    let report = Report {
        date: host::today(),
        machine: host::machine(),
        load_average,
        load_average_after: host::load_average(),
        redis_version,
        plan,
        timed,
    };
    readme::publish(
        &report.markdown(),
        args.write.then_some(args.readme.as_path()),
        &report::README_SECTION,
    )?;
    for miss in report.misses() {
        eprintln!("goal missed: {miss}");
    }
    Ok(())
}

/// `redis_version` from `INFO server`.
async fn redis_version(url: &str) -> anyhow::Result<String> {
    let client = redis::Client::open(url).context("the Redis URL")?;
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis (SWITCHYARD_TEST_REDIS_URL)")?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut connection)
        .await
        .context("INFO server")?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map_or_else(|| "(unknown version)".to_owned(), |v| v.trim().to_owned()))
}

//! `switchyard-trace-store`: how fast the control plane's trace store takes
//! traces into Postgres, and how fast it lists them once a million are
//! stored.
//!
//! In process, against the real store (`switchyard_control_plane::store`):
//! it creates a fresh database on the Postgres server it is given, connects
//! a `Store` to it (which applies the migrations) and stores realistic traces
//! (see `trace_store::corpus`) with `insert_traces` in batches of 256, as the
//! control plane does for each batch a data plane reports: first from one
//! writer, then from 4 concurrent ones (several data planes into one or more
//! replicas), then 4 writers fill the table up to `--traces`. It counts the
//! rows (every trace and attempt stored once), runs `ANALYZE`, then times
//! `list_traces` for the common filters, each `--runs` times, and finally
//! times 4 writers once more on the full table.
//!
//! It prints a markdown report and, with `--write`, puts it into the "Trace
//! store" section of the bench README. The database is dropped at the end,
//! after an error and on Ctrl-C or SIGTERM.

#![expect(
    clippy::print_stdout,
    reason = "the report is this binary's output and goes to stdout"
)]

// Shared with the other benchmarks without a library crate.
#[path = "../database.rs"]
mod database;
#[path = "../host.rs"]
mod host;
#[path = "../interrupts.rs"]
mod interrupts;
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
#[path = "../trace_store/mod.rs"]
mod trace_store;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use clap::Parser;

use crate::database::Database;
use crate::interrupts::Interrupts;
use crate::trace_store::Plan;
use crate::trace_store::report::{self, Report};

/// Time trace ingestion into Postgres and ListTraces on a full table.
#[derive(Debug, Parser)]
#[command(name = "switchyard-trace-store", version, args_override_self = true)]
struct Args {
    /// Any database on the Postgres server to use; the benchmark creates a
    /// database of its own there and drops it at the end.
    #[arg(long, env = "SWITCHYARD_TEST_DATABASE_URL")]
    database_url: String,
    /// Traces stored before ListTraces is timed.
    #[arg(long, default_value_t = 1_000_000)]
    traces: u64,
    /// Traces a batch (one `insert_traces` call), as a data plane sends them.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Traces of the one-writer run (the first traces stored).
    #[arg(long, default_value_t = 100_000)]
    single_writer_traces: u64,
    /// Traces of the concurrent run (stored next).
    #[arg(long, default_value_t = 200_000)]
    concurrent_traces: u64,
    /// Traces of the concurrent run on the full table, after ListTraces;
    /// 0 skips it.
    #[arg(long, default_value_t = 200_000)]
    at_size_traces: u64,
    /// The newest this many traces go through WhatIf (timed 3 times).
    #[arg(long, default_value_t = 100_000)]
    what_if_traces: u64,
    /// Receive times span this many days up to now.
    #[arg(long, default_value_t = 7)]
    days: u64,
    /// ListTraces page size.
    #[arg(long, default_value_t = 50)]
    page: u32,
    /// Timed calls of each ListTraces filter.
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// Untimed rounds of every filter before them.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Seed of the traces and of the filters' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also put the report into the "Trace store" section of the README.
    #[arg(long)]
    write: bool,
    /// The README `--write` updates.
    #[arg(long, default_value = "bench/README.md")]
    readme: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow!("a rustls crypto provider was already installed"))?;
    // Listen before anything starts, so an interrupt always finds a handler.
    let mut interrupts = Interrupts::listen()?;
    run(args, &mut interrupts).await
}

async fn run(args: Args, interrupts: &mut Interrupts) -> anyhow::Result<()> {
    ensure!(args.traces > 0, "--traces must be at least 1");
    ensure!(
        args.batch > 0 && args.writers > 0,
        "--batch and --writers must be at least 1"
    );
    ensure!(
        args.single_writer_traces + args.concurrent_traces <= args.traces,
        "--traces must be at least --single-writer-traces plus --concurrent-traces"
    );
    ensure!(
        args.page > 0 && args.runs > 0,
        "--page and --runs must be at least 1"
    );
    ensure!(args.days > 0, "--days must be at least 1");
    let plan = Plan {
        traces: args.traces,
        batch: args.batch,
        writers: args.writers,
        single_writer_traces: args.single_writer_traces,
        concurrent_traces: args.concurrent_traces,
        at_size_traces: args.at_size_traces,
        what_if_traces: args.what_if_traces,
        span: Duration::from_secs(args.days * 86_400),
        page: args.page,
        runs: args.runs,
        warmup: args.warmup,
        seed: args.seed,
    };
    let load_average = host::load_average();
    let database = tokio::select! {
        result = Database::create(&args.database_url) => result?,
        () = interrupts.recv() => bail!("interrupted while creating the database"),
    };
    eprintln!("database {} created", database.name());

    // An interrupt or an error drops the measurement (and its connections);
    // the database goes either way.
    let measured = tokio::select! {
        result = trace_store::measure(&database.url, &plan) => result,
        () = interrupts.recv() => Err(anyhow!("interrupted")),
    };
    let removed = database.remove().await;
    let measured = measured.context("the trace-store benchmark failed")?;
    removed?;

    let report = Report {
        date: host::today(),
        machine: host::machine(),
        load_average,
        load_average_after: host::load_average(),
        plan,
        measured,
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

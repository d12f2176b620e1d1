//! `switchyard-failover`: how long the control plane takes to fail over when
//! its leader goes away, and whether any trace is lost or stored twice on
//! the way.
//!
//! It starts an etcd of its own (free loopback ports, a temporary data
//! directory), creates a fresh database on the Postgres server it is given,
//! and starts three replicas of the real `switchyard-control-plane` on it,
//! electing a leader through that etcd with the default timings. One real
//! `switchyard-data-plane` follows all three under a steady client load, and
//! a raw snapshot subscriber (hello, ACK every snapshot) holds a stream to
//! each replica. Then, `--runs` times for each mode, it stops the leader,
//! with SIGKILL (`kill`) or SIGTERM (`term`, the leader resigns), and times
//! from the signal: the first snapshot of the new leader's epoch on a
//! surviving replica's subscriber, the same on every survivor's, the data
//! plane serving that epoch (its `/metrics`), and `ClusterService/Status` on
//! a survivor naming the new leader. The stopped replica is started again
//! and the cluster made whole before the next run. At the end it stops the
//! load, waits for the data plane's trace spool to empty, and counts the
//! trace rows of the requests served: none may be missing or doubled.
//!
//! It prints a markdown report and, with `--write`, puts it into the
//! "Failover" section of the bench README. Loopback only; every process is
//! stopped by its PID at the end, after an error and on Ctrl-C or SIGTERM,
//! and killed if anything returns before that; the database is dropped.

#![expect(
    clippy::print_stdout,
    reason = "the report is this binary's output and goes to stdout"
)]

// Shared with `switchyard-bench` (src/main.rs) without a library crate.
#[path = "../credentials.rs"]
mod credentials;
#[path = "../database.rs"]
mod database;
#[path = "../failover/mod.rs"]
mod failover;
#[path = "../host.rs"]
mod host;
#[path = "../interrupts.rs"]
mod interrupts;
#[path = "../logs.rs"]
mod logs;
// Their unit tests use the rest.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "shared with switchyard-bench; this binary reads three series"
    )
)]
#[path = "../metrics.rs"]
mod metrics;
#[path = "../process.rs"]
mod process;
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

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use clap::Parser;

use crate::database::Database;
use crate::failover::report::{self, Report};
use crate::failover::runs::Mode;
use crate::failover::{Deployment, Plan};
use crate::interrupts::Interrupts;

/// Time control-plane failover under load, and check no trace is lost.
#[derive(Debug, Parser)]
#[command(name = "switchyard-failover", version, args_override_self = true)]
struct Args {
    /// The control-plane binary (build it with --release).
    #[arg(long, default_value = "target/release/switchyard-control-plane")]
    control_plane: PathBuf,
    /// The data-plane binary (build it with --release).
    #[arg(long, default_value = "target/release/switchyard-data-plane")]
    data_plane: PathBuf,
    /// The etcd binary; the benchmark runs one of its own.
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// Any database on the Postgres server to use; the benchmark creates a
    /// database of its own there and drops it at the end.
    #[arg(long, env = "SWITCHYARD_TEST_DATABASE_URL")]
    database_url: String,
    /// Control-plane replicas.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Failovers timed for each mode.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// How the leader is stopped, in order: kill (SIGKILL), term (SIGTERM).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "kill,term")]
    modes: Vec<Mode>,
    /// Client requests a second on the data plane.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Most client requests in flight at once.
    #[arg(long, default_value_t = 50)]
    max_in_flight: usize,
    /// How often the data plane's metrics and the survivors' Status are read
    /// while a failover is timed.
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// Longest wait for anything (a failover, a restart, the cluster whole again).
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Load before the first failover.
    #[arg(long, default_value_t = 3)]
    warmup_secs: u64,
    /// Pause after each failover, once the cluster is whole again.
    #[arg(long, default_value_t = 2)]
    settle_secs: u64,
    /// Longest wait at the end for the data plane's trace spool to empty.
    #[arg(long, default_value_t = 60)]
    drain_secs: u64,
    /// Keep the directory with every process's log (it is kept anyway when
    /// the benchmark fails).
    #[arg(long)]
    keep_logs: bool,
    /// Also put the report into the "Failover" section of the README.
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
    ensure!(args.replicas >= 2, "--replicas must be at least 2");
    ensure!(args.runs > 0, "--runs must be at least 1");
    ensure!(!args.modes.is_empty(), "--modes names no mode");
    ensure!(
        args.rate > 0 && args.max_in_flight > 0,
        "--rate and --max-in-flight must be at least 1"
    );
    for (flag, binary, package) in [
        (
            "--control-plane",
            &args.control_plane,
            "switchyard-control-plane",
        ),
        ("--data-plane", &args.data_plane, "switchyard-data-plane"),
    ] {
        ensure!(
            binary.is_file(),
            "no binary at {} ({flag}; build it with `cargo build --release -p {package}`)",
            binary.display()
        );
    }
    let plan = Plan {
        control_plane: args.control_plane.clone(),
        data_plane: args.data_plane.clone(),
        etcd: args.etcd.clone(),
        replicas: args.replicas,
        runs: args.runs,
        modes: args.modes.clone(),
        rate: args.rate,
        max_in_flight: args.max_in_flight,
        within: Duration::from_secs(args.timeout_secs),
        poll: Duration::from_millis(args.poll_ms.max(1)),
        warmup: Duration::from_secs(args.warmup_secs),
        settle: Duration::from_secs(args.settle_secs),
        drain_within: Duration::from_secs(args.drain_secs),
    };
    let load_average = host::load_average();
    let dir = tempfile::Builder::new()
        .prefix("switchyard-failover-")
        .tempdir()
        .context("creating a temporary directory")?;
    let database = tokio::select! {
        result = Database::create(&args.database_url) => result?,
        () = interrupts.recv() => bail!("interrupted while creating the database"),
    };
    eprintln!(
        "database {} created; logs in {}",
        database.name(),
        dir.path().display()
    );

    // From here on everything started is in `deployment`; an interrupt or an
    // error drops the measurement, then everything is stopped in order.
    let mut deployment = Deployment::default();
    let measured = tokio::select! {
        result = failover::measure(&mut deployment, dir.path(), &database.url, &plan) => result,
        () = interrupts.recv() => Err(anyhow!("interrupted")),
    };
    let control_plane_logs = deployment.control_plane_logs();
    let data_plane_log = deployment.data_plane_log();
    let stopped = deployment.stop().await;
    let removed = database.remove().await;
    let keep = args.keep_logs || measured.is_err();
    let logs_dir = if keep {
        let kept = dir.keep();
        eprintln!("logs kept in {}", kept.display());
        kept
    } else {
        dir.path().to_owned()
    };
    let measured = measured.with_context(|| {
        format!(
            "the failover benchmark failed; everything it started was stopped. Logs: {}",
            logs_dir.display()
        )
    })?;
    removed?;

    let mut stopped_lines = Vec::with_capacity(stopped.len());
    for (name, result) in stopped {
        let stopped = result?;
        stopped_lines.push(format!(
            "{name} {} {:.2} s after SIGTERM ({})",
            if stopped.killed {
                "was killed"
            } else {
                "exited"
            },
            stopped.took.as_secs_f64(),
            stopped.status,
        ));
    }
    let report = Report {
        date: host::today(),
        machine: host::machine(),
        load_average,
        load_average_after: host::load_average(),
        replicas: args.replicas,
        rate: args.rate,
        max_in_flight: args.max_in_flight,
        poll: plan.poll,
        measured,
        control_plane_log: logs::summarize_files(&control_plane_logs)?,
        data_plane_log: logs::summarize_files(data_plane_log.as_slice())?,
        stopped: stopped_lines,
    };
    readme::publish(
        &report.markdown(),
        args.write.then_some(args.readme.as_path()),
        &report::README_SECTION,
    )?;
    let failures = report.failures();
    if !failures.is_empty() {
        bail!(
            "traces went missing or were doubled: {}",
            failures.join("; ")
        );
    }
    Ok(())
}

//! `switchyard-propagation`: how fast a registry change reaches every data
//! plane, and how many trace records a second fleet-health aggregation keeps
//! up with.
//!
//! Propagation: it starts the real control plane (`switchyard-control-plane`)
//! as its own process on a free loopback port, with a fresh SQLite database
//! and a registry of one simulated provider and a few models, and opens 20
//! snapshot streams to it (`SnapshotService/Sync`), each on a connection of
//! its own and acting as a data plane: hello, then validate and ACK every
//! snapshot, nonce echoed, noting when. Then it changes one model's price
//! through `RegistryService/UpdateModel`, 200 times one at a time, and times
//! each change from the start of the call to the last subscriber's ACK of the
//! first snapshot that carries the new price. `ClusterService/Status`
//! cross-checks the control plane's view at the end.
//!
//! Aggregation: in process, no server. Simulated traffic of 20,000 trace
//! records a second from 20 data planes over 50 targets goes through the data
//! planes' pre-aggregation into windows and the control plane's
//! `Aggregator` (ingest, and an evaluation of every target once a simulated
//! second), each stage timed on one core.
//!
//! It prints a markdown report and, with `--write`, puts it into the
//! "Snapshot propagation" section of the bench README. Loopback only; the
//! control plane is stopped by its PID at the end, after an error and on
//! Ctrl-C or SIGTERM, and killed if anything returns before that.

#![expect(
    clippy::print_stdout,
    reason = "the report is this binary's output and goes to stdout"
)]

// Shared with `switchyard-bench` (src/main.rs) without a library crate.
// Its unit tests use the rest.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "shared with switchyard-bench; this binary calls no data plane"
    )
)]
#[path = "../credentials.rs"]
mod credentials;
#[path = "../host.rs"]
mod host;
#[path = "../interrupts.rs"]
mod interrupts;
#[path = "../logs.rs"]
mod logs;
#[path = "../process.rs"]
mod process;
#[expect(
    dead_code,
    reason = "shared with switchyard-bench; this binary reads only CPU times"
)]
#[path = "../procfs.rs"]
mod procfs;
#[path = "../propagation/mod.rs"]
mod propagation;
#[path = "../readme.rs"]
mod readme;
#[path = "../stats.rs"]
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow, ensure};
use clap::Parser;

use crate::interrupts::Interrupts;
use crate::propagation::aggregation;
use crate::propagation::changes::Plan;
use crate::propagation::control_plane::{self, ControlPlane};
use crate::propagation::report::{self, Report};

/// How long the control plane gets to listen, and the subscribers to get
/// their first snapshot.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Time snapshot propagation to simulated data planes, and aggregation throughput.
#[derive(Debug, Parser)]
#[command(name = "switchyard-propagation", version, args_override_self = true)]
struct Args {
    /// The control-plane binary (build it with --release).
    #[arg(long, default_value = "target/release/switchyard-control-plane")]
    control_plane: PathBuf,
    /// Simulated data planes holding a snapshot stream.
    #[arg(long, default_value_t = 20)]
    subscribers: usize,
    /// Measured registry changes.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Unmeasured registry changes first.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Pause after every subscriber has acknowledged a change, before the next one.
    #[arg(long, default_value_t = 50)]
    pause_ms: u64,
    /// Longest wait for every subscriber to acknowledge one change.
    #[arg(long, default_value_t = 10)]
    ack_timeout_secs: u64,
    /// Aggregation: trace records a second over the whole fleet.
    #[arg(long, default_value_t = 20_000)]
    records_per_second: usize,
    /// Aggregation: data-plane nodes the records come from.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Aggregation: targets the records spread over.
    #[arg(long, default_value_t = 50)]
    targets: usize,
    /// Aggregation: simulated seconds timed.
    #[arg(long, default_value_t = 60)]
    seconds: usize,
    /// Aggregation: simulated seconds fed untimed before them (240 fills
    /// the five-minute window with the timed 60).
    #[arg(long, default_value_t = 240)]
    history: usize,
    /// Also put the report into the "Snapshot propagation" section of the README.
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
    run(args, &mut interrupts).await
}

async fn run(args: Args, interrupts: &mut Interrupts) -> anyhow::Result<()> {
    ensure!(args.subscribers > 0, "--subscribers must be at least 1");
    ensure!(args.changes > 0, "--changes must be at least 1");
    ensure!(
        args.records_per_second > 0 && args.nodes > 0 && args.targets > 0 && args.seconds > 0,
        "--records-per-second, --nodes, --targets and --seconds must be at least 1"
    );
    ensure!(
        args.control_plane.is_file(),
        "no binary at {} (--control-plane; build it with `cargo build --release -p switchyard-control-plane`)",
        args.control_plane.display()
    );
    let load_average = host::load_average();
    let dir = tempfile::Builder::new()
        .prefix("switchyard-propagation-")
        .tempdir()
        .context("creating a temporary directory")?;

    // From here until `stop`, returning early drops the handle, which kills it.
    let control_plane = tokio::select! {
        result = ControlPlane::start(&args.control_plane, dir.path(), READY_WITHIN) => result?,
        () = interrupts.recv() => return Err(anyhow!("interrupted while starting the control plane")),
    };
    let plan = Plan {
        pause: Duration::from_millis(args.pause_ms),
        ack_timeout: Duration::from_secs(args.ack_timeout_secs),
    };
    let measured = tokio::select! {
        result = propagation::measure(
            &control_plane,
            args.subscribers,
            args.warmup,
            args.changes,
            plan,
            READY_WITHIN,
        ) => result,
        () = interrupts.recv() => Err(anyhow!("interrupted")),
    };
    let log_tail = control_plane.log_tail();
    let log_path = control_plane.log_path().to_owned();
    let stopped = control_plane.stop().await;
    let measured = measured.with_context(|| {
        format!(
            "propagation benchmark aborted; the control plane was stopped. Its log:\n{log_tail}"
        )
    })?;
    let stopped = stopped?;
    let control_plane_log = logs::summarize_files(&[&log_path])?;
    eprintln!("propagation measured; timing aggregation");

    let cancel = Arc::new(AtomicBool::new(false));
    let agg_plan = aggregation::Plan {
        rate: args.records_per_second,
        nodes: args.nodes,
        targets: args.targets,
        history: args.history,
        seconds: args.seconds,
    };
    let task = tokio::task::spawn_blocking({
        let cancel = cancel.clone();
        move || aggregation::run(agg_plan, &cancel)
    });
    let aggregated = tokio::select! {
        joined = task => joined.context("the aggregation task failed")??,
        () = interrupts.recv() => {
            cancel.store(true, Ordering::Relaxed);
            return Err(anyhow!("interrupted while timing aggregation"));
        }
    };

    let report = Report {
        date: host::today(),
        machine: host::machine(),
        load_average,
        load_average_after: host::load_average(),
        subscribers: args.subscribers,
        warmup: args.warmup,
        pause: plan.pause,
        models: control_plane::MODELS,
        snapshot_bytes: measured.snapshot_bytes,
        propagated: measured.propagated,
        versions_seen: measured.versions_seen,
        control_plane_cpu: measured.control_plane_cpu,
        bench_cpu: measured.bench_cpu,
        measured_wall: measured.measured_wall,
        cross_check: measured.cross_check,
        stopped,
        control_plane_log,
        aggregation: aggregated,
    };
    readme::publish(
        &report.markdown(),
        args.write.then_some(args.readme.as_path()),
        &report::README_SECTION,
    )?;
    Ok(())
}

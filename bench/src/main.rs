//! `switchyard-bench`: measures what the gateway itself adds to a request.
//!
//! It starts the test kit's mock OpenAI provider in this process (it answers
//! at once), then the gateway as it is deployed: the control plane
//! (`switchyard-control-plane`, with a registry whose only provider is that
//! mock) and the data plane (`switchyard-data-plane`) as two processes. It
//! sends the same chat completion request, a fixed number of times at a fixed
//! concurrency, straight to the mock and through the data plane, with and
//! without `"stream": true`. The difference between the two is the gateway's
//! overhead: parsing, routing, the upstream call, the response and the trace.
//! The data plane is "the gateway" for CPU and memory; the control plane,
//! which stores the traces, is reported beside it.
//!
//! Then it repeats the JSON pair at further concurrencies, closed loop (1 and
//! 64 by default); runs it again with 64 connections paced to offer half of
//! the saturation throughput just measured; opens 1,000 streams at once
//! through the gateway against a long reply to sample the data plane's
//! resident memory while they are all open; and sets the results against the
//! gateway's latency and memory goals.
//!
//! It prints a markdown report (latency percentiles, throughput, errors, the
//! processes' CPU and memory) and, with `--write`, puts it into the results
//! section of the bench README. Everything runs on loopback. Both processes
//! are stopped by their PIDs at the end, after a failure and on Ctrl-C or
//! SIGTERM, and killed if anything returns before that.
//!
//! With `--callgrind DIR` the data plane runs under valgrind's callgrind
//! instead, only the four main scenarios run, the counters are dumped once
//! per scenario through the gateway, and the report ends with the
//! instructions per request by function.

#![expect(
    clippy::print_stdout,
    reason = "the report is this binary's output and goes to stdout"
)]

mod callgrind;
// Its unit tests use the rest.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "shared with the other benchmarks; this one calls no control-plane RPC"
    )
)]
mod credentials;
mod gateway;
mod host;
mod interrupts;
mod load;
mod logs;
mod measure;
mod metrics;
mod process;
mod procfs;
mod readme;
mod registry;
mod reply;
mod report;
mod stats;
mod streams;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, ensure};
use clap::Parser;
use switchyard_testkit::{Behavior, MockProvider};

use crate::credentials::Credentials;
use crate::gateway::{Binaries, Gateway};
use crate::interrupts::Interrupts;
use crate::load::Load;
use crate::measure::{Measured, Paced, Plan};
use crate::procfs::{Memory, Settled};
use crate::report::{OpenFiles, Report};

/// Longest a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the control plane and the data plane get to become ready.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// The same when the data plane runs under callgrind, many times slower.
const READY_WITHIN_CALLGRIND: Duration = Duration::from_secs(300);
/// Longest wait for the ready data plane's memory to stop growing.
const SETTLE_WITHIN: Duration = Duration::from_secs(15);

/// Measure the gateway's overhead over a zero-latency OpenAI-compatible provider.
#[derive(Debug, Parser)]
// A flag given twice takes its last value, so scripts can set defaults that
// their callers override.
#[command(name = "switchyard-bench", version, args_override_self = true)]
struct Args {
    /// Measured requests per scenario.
    #[arg(long, default_value_t = 5000)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Unmeasured requests sent before each scenario.
    #[arg(long, default_value_t = 500)]
    warmup: usize,
    /// The data-plane binary: the gateway under test (build it with --release).
    #[arg(long, default_value = "target/release/switchyard-data-plane")]
    data_plane: PathBuf,
    /// The control-plane binary the data plane gets its registry from and
    /// reports its traces to.
    #[arg(long, default_value = "target/release/switchyard-control-plane")]
    control_plane: PathBuf,
    /// Requests of a scenario not started within this many seconds are skipped.
    #[arg(long, default_value_t = 120)]
    deadline_secs: u64,
    /// Further concurrencies to run JSON requests at, direct and through the
    /// gateway, after the main scenarios (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    sweep: Vec<usize>,
    /// Connections of the paced JSON measurement, each sending on a fixed
    /// schedule.
    #[arg(long, default_value_t = 64)]
    paced_concurrency: usize,
    /// Load the paced measurement offers, as a fraction of the highest
    /// closed-loop JSON throughput through the gateway in the same run
    /// (0 skips it).
    #[arg(long, default_value_t = 0.5)]
    paced_fraction: f64,
    /// Streams opened at once through the gateway to measure its memory (0 skips it).
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Words in the mock's reply to those streams (one event each, about 5 ms apart).
    #[arg(long, default_value_t = 300)]
    stream_words: usize,
    /// Also replace the results section of the README with the report.
    #[arg(long)]
    write: bool,
    /// The README whose results section `--write` replaces.
    #[arg(long, default_value = "bench/README.md")]
    readme: PathBuf,
    /// Run the data plane under `valgrind --tool=callgrind`, writing its
    /// profiles into this directory: only the four main scenarios run, and
    /// the counters are zeroed before and dumped after each measured scenario
    /// through the gateway (its traces stored). Timings are then meaningless.
    #[arg(long, conflicts_with = "write")]
    callgrind: Option<PathBuf>,
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
    ensure!(args.requests > 0, "--requests must be at least 1");
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    ensure!(
        args.sweep.iter().all(|&c| c > 0),
        "--sweep concurrencies must be at least 1"
    );
    ensure!(
        args.paced_concurrency > 0,
        "--paced-concurrency must be at least 1"
    );
    ensure!(
        (0.0..=1.0).contains(&args.paced_fraction),
        "--paced-fraction must be between 0 and 1"
    );
    for (flag, binary, package) in [
        ("--data-plane", &args.data_plane, "switchyard-data-plane"),
        (
            "--control-plane",
            &args.control_plane,
            "switchyard-control-plane",
        ),
    ] {
        ensure!(
            binary.is_file(),
            "no binary at {} ({flag}; build it with `cargo build --release -p {package}`)",
            binary.display()
        );
    }
    let load = Load {
        requests: args.requests,
        concurrency: args.concurrency,
        deadline: Duration::from_secs(args.deadline_secs),
        pace: None,
    };
    let warmup = Load {
        requests: args.warmup,
        ..load
    };

    let load_average = host::load_average();
    let mock = MockProvider::start().await?;
    mock.set_default(Behavior::Reply {
        text: measure::REPLY.to_owned(),
    });
    let dir = tempfile::Builder::new()
        .prefix("switchyard-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let config = registry::write(dir.path(), &mock.base_url())?;
    let credentials = Credentials::generate();
    // The key goes to the mock too, as a client calling a provider sends its
    // own: both paths carry the same request.
    let client = credentials
        .with_api_key(reqwest::Client::builder())?
        .pool_max_idle_per_host(
            args.sweep
                .iter()
                .copied()
                .fold(args.concurrency.max(args.paced_concurrency), usize::max),
        )
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")?;

    let (launcher, callgrind_dir) = match &args.callgrind {
        Some(out) => {
            let (launcher, dir) = callgrind_launcher(out)?;
            (launcher, Some(dir))
        }
        None => (Vec::new(), None),
    };
    let binaries = Binaries {
        control_plane: &args.control_plane,
        data_plane: &args.data_plane,
        data_plane_launcher: &launcher,
    };
    let ready_within = if args.callgrind.is_some() {
        READY_WITHIN_CALLGRIND
    } else {
        READY_WITHIN
    };
    // From here until `stop`, returning early drops the handles, which kills
    // both processes.
    let mut gateway = tokio::select! {
        result = Gateway::start(&binaries, &config, dir.path(), &client, &credentials, ready_within) => result?,
        () = interrupts.recv() => return Err(anyhow!("interrupted while starting the gateway")),
    };
    let measured = tokio::select! {
        result = measure_gateway(&mut gateway, &client, &credentials, &mock, &args, load, warmup) => result,
        () = interrupts.recv() => Err(anyhow!("interrupted")),
    };
    let dp_pid = gateway.pid();
    let dp_log = gateway.data_plane_log().to_owned();
    let cp_log = gateway.control_plane_log().to_owned();
    let stopped = gateway.stop().await;
    let (ready, open_files, measured) =
        measured.context("benchmark aborted; the gateway was stopped")?;
    let stopped = stopped?;

    let profiles = match &callgrind_dir {
        Some(dir) => profiles(dir, dp_pid, &measured.scenarios)?,
        None => Vec::new(),
    };
    let paced_pairs = usize::from(measured.paced.is_some());
    let report = Report {
        date: host::today(),
        machine: host::machine(),
        load_average,
        load_average_after: host::load_average(),
        load,
        warmup: args.warmup,
        sent: (measured.scenarios.len() + 2 * (measured.sweep.len() + paced_pairs))
            * (args.warmup + args.requests)
            + measured.streams.as_ref().map_or(0, |s| s.started),
        scenarios: measured.scenarios,
        sweep: measured.sweep,
        paced: measured.paced,
        streams: measured.streams,
        streams_trace_drain: measured.streams_trace_drain,
        open_files,
        rss_ready: ready.data_plane,
        rss_idle: ready.idle,
        control_plane_ready: ready.control_plane,
        memory_end: measured.memory_end,
        control_plane_memory_end: measured.control_plane_memory_end,
        mock_received: mock.request_count(),
        metrics: metrics::reported(&measured.metrics),
        log: logs::summarize_files(&[&dp_log])?,
        control_plane_log: logs::summarize_files(&[&cp_log])?,
        stopped,
        callgrind: args.callgrind.is_some(),
        profiles,
    };
    readme::publish(
        &report.markdown(),
        args.write.then_some(args.readme.as_path()),
        &report::README_SECTION,
    )?;
    if let Some(dir) = &callgrind_dir {
        eprintln!(
            "callgrind profiles in {} (one file per measured gateway scenario); \
             e.g. callgrind_annotate --inclusive=yes <file>",
            dir.display()
        );
    }
    Ok(())
}

/// Reads the callgrind profile of every scenario that has one.
fn profiles(
    dir: &std::path::Path,
    pid: u32,
    scenarios: &[report::ScenarioResult],
) -> anyhow::Result<Vec<report::Profiled>> {
    scenarios
        .iter()
        .filter_map(|s| Some((s, s.callgrind_dump?)))
        .map(|(s, dump)| {
            let file = dir.join(format!("callgrind.out.{pid}.{dump}"));
            Ok(report::Profiled {
                scenario: s.name.clone(),
                requests: s.outcome.samples.len() + s.outcome.error_count(),
                profile: callgrind::read(&file)?,
                file,
            })
        })
        .collect()
}

/// `valgrind --tool=callgrind` writing into `out`, one file per dump, and
/// `out` as an absolute path.
fn callgrind_launcher(out: &std::path::Path) -> anyhow::Result<(Vec<OsString>, PathBuf)> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let out = out
        .canonicalize()
        .with_context(|| format!("resolving {}", out.display()))?;
    let mut file = OsString::from("--callgrind-out-file=");
    file.push(out.join("callgrind.out.%p"));
    let launcher = vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        file,
        // The counters are zeroed before each measured scenario anyway;
        // collecting from the start keeps the call graph whole.
        "--collect-atstart=yes".into(),
    ];
    Ok((launcher, out))
}

/// Resident memory of both processes when the data plane became ready and
/// once it had settled.
struct Ready {
    data_plane: Memory,
    idle: Settled,
    control_plane: Memory,
}

/// Runs every scenario against the ready gateway. Returns both processes'
/// memory when it became ready, the open-file limits of the benchmark and
/// the data plane, and the measurements.
async fn measure_gateway(
    gateway: &mut Gateway,
    client: &reqwest::Client,
    credentials: &Credentials,
    mock: &MockProvider,
    args: &Args,
    load: Load,
    warmup: Load,
) -> anyhow::Result<(Ready, OpenFiles, Measured)> {
    let gateway_pid = gateway.pid();
    let control_plane_pid = gateway.control_plane_pid();
    let gateway_url = gateway.http_url();
    let data_plane = procfs::memory(gateway_pid)?;
    // The data plane answers /readyz before its background warm-up (the
    // tokenizer) is done: its idle memory is read once that has settled.
    let idle = procfs::settled_memory(gateway_pid, SETTLE_WITHIN).await?;
    let ready = Ready {
        data_plane,
        idle,
        control_plane: procfs::memory(control_plane_pid)?,
    };
    let open_files = OpenFiles {
        bench: procfs::open_files_limit(std::process::id()),
        gateway: procfs::open_files_limit(gateway_pid),
    };
    eprintln!(
        "data plane ready (pid {gateway_pid}, {gateway_url}), control plane pid {control_plane_pid}; \
         mock provider at {}",
        mock.base_url()
    );
    let callgrind = args.callgrind.is_some();
    let plan = Plan {
        client,
        credentials,
        mock_v1: mock.base_url(),
        gateway_v1: format!("{gateway_url}/v1"),
        gateway_url,
        gateway_pid,
        control_plane_pid,
        load,
        warmup,
        // Under callgrind only the four main scenarios run.
        sweep: if callgrind {
            Vec::new()
        } else {
            args.sweep.clone()
        },
        paced: (!callgrind && args.paced_fraction > 0.0).then_some(Paced {
            concurrency: args.paced_concurrency,
            fraction: args.paced_fraction,
        }),
        streams: if callgrind { 0 } else { args.streams },
        stream_words: args.stream_words,
        mock,
        callgrind,
        dumps: std::sync::atomic::AtomicUsize::new(0),
    };
    Ok((ready, open_files, measure::run(&plan).await?))
}

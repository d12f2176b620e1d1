//! `switchyard-bench`: measures what the gateway itself adds to a request.
//!
//! It starts the test kit's mock OpenAI provider in this process (it answers
//! at once), starts `switchyard dev` with a registry whose only provider is
//! that mock, and sends the same chat completion request, a fixed number of
//! times at a fixed concurrency, straight to the mock and through the
//! gateway, with and without `"stream": true`. The difference between the
//! two is the gateway's overhead: parsing, routing, the upstream call, the
//! response and the trace.
//!
//! Then it repeats the JSON pair at further concurrencies (1 and 64 by
//! default), and opens 1,000 streams at once through the gateway against a
//! long reply to sample the gateway's resident memory while they are all
//! open, and sets the results against the gateway's latency and memory goals.
//!
//! It prints a markdown report (latency percentiles, throughput, errors, the
//! gateway's CPU and peak memory) and, with `--write`, puts it into the
//! results section of the bench README. Everything runs on loopback. The
//! gateway is stopped by its PID at the end, after a failure and on Ctrl-C or
//! SIGTERM, and killed if anything returns before that.

#![expect(
    clippy::print_stdout,
    reason = "the report is this binary's output and goes to stdout"
)]

mod gateway;
mod host;
mod load;
mod logs;
mod measure;
mod metrics;
mod procfs;
mod registry;
mod reply;
mod report;
mod stats;
mod streams;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, ensure};
use clap::Parser;
use switchyard_testkit::{Behavior, MockProvider};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::gateway::Gateway;
use crate::load::Load;
use crate::measure::{Measured, Plan};
use crate::procfs::Memory;
use crate::report::{OpenFiles, Report};
/// Longest a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the gateway gets to become ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Measure the gateway's overhead over a zero-latency OpenAI-compatible provider.
#[derive(Debug, Parser)]
#[command(name = "switchyard-bench", version)]
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
    /// The `switchyard` binary to benchmark (build it with --release).
    #[arg(long, default_value = "target/release/switchyard")]
    gateway: PathBuf,
    /// Requests of a scenario not started within this many seconds are skipped.
    #[arg(long, default_value_t = 120)]
    deadline_secs: u64,
    /// Further concurrencies to run JSON requests at, direct and through the
    /// gateway, after the main scenarios (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    sweep: Vec<usize>,
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
        args.gateway.is_file(),
        "no gateway binary at {} (build it with `cargo build --release -p switchyard-cli`)",
        args.gateway.display()
    );
    let load = Load {
        requests: args.requests,
        concurrency: args.concurrency,
        deadline: Duration::from_secs(args.deadline_secs),
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
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(
            args.sweep
                .iter()
                .copied()
                .fold(args.concurrency, usize::max),
        )
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")?;

    // From here until `stop`, returning early drops the handle, which kills it.
    let mut gateway = Gateway::start(&args.gateway, &config, dir.path())?;
    let measured = tokio::select! {
        result = measure_gateway(&mut gateway, &client, &mock, &args, load, warmup) => result,
        () = interrupts.recv() => Err(anyhow!("interrupted")),
    };
    let log_path = gateway.log_path().to_owned();
    let stopped = gateway.stop().await;
    let (rss_ready, open_files, measured) =
        measured.context("benchmark aborted; the gateway was stopped")?;
    let stopped = stopped?;

    let report = Report {
        date: host::today(),
        machine: host::machine(),
        load_average,
        load,
        warmup: args.warmup,
        sent: (measured.scenarios.len() + 2 * measured.sweep.len()) * (args.warmup + args.requests)
            + measured.streams.as_ref().map_or(0, |s| s.started),
        scenarios: measured.scenarios,
        sweep: measured.sweep,
        streams: measured.streams,
        streams_trace_drain: measured.streams_trace_drain,
        open_files,
        rss_ready,
        memory_end: measured.memory_end,
        mock_received: mock.request_count(),
        metrics: metrics::reported(&measured.metrics),
        log: logs::summarize(&log_path)?,
        stopped,
    };
    let markdown = report.markdown();
    println!("{markdown}");
    if args.write {
        report::write_readme(&args.readme, &markdown)?;
        eprintln!("updated {}", args.readme.display());
    }
    Ok(())
}

/// Waits for the gateway to be ready and runs every scenario against it.
/// Returns its memory when it became ready, the open-file limits of the
/// benchmark and the gateway, and the measurements.
async fn measure_gateway(
    gateway: &mut Gateway,
    client: &reqwest::Client,
    mock: &MockProvider,
    args: &Args,
    load: Load,
    warmup: Load,
) -> anyhow::Result<(Memory, OpenFiles, Measured)> {
    gateway.wait_ready(client, READY_WITHIN).await?;
    let gateway_pid = gateway.pid();
    let gateway_url = gateway.http_url();
    let rss_ready = procfs::memory(gateway_pid)?;
    let open_files = OpenFiles {
        bench: procfs::open_files_limit(std::process::id()),
        gateway: procfs::open_files_limit(gateway_pid),
    };
    eprintln!(
        "gateway ready (pid {gateway_pid}, {gateway_url}); mock provider at {}",
        mock.base_url()
    );
    let plan = Plan {
        client,
        mock_v1: mock.base_url(),
        gateway_v1: format!("{gateway_url}/v1"),
        gateway_url,
        gateway_pid,
        load,
        warmup,
        sweep: args.sweep.clone(),
        streams: args.streams,
        stream_words: args.stream_words,
        mock,
    };
    Ok((rss_ready, open_files, measure::run(&plan).await?))
}

/// Ctrl-C and SIGTERM, listened for from the start of the run.
struct Interrupts {
    interrupt: Signal,
    terminate: Signal,
}

impl Interrupts {
    fn listen() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("listening for Ctrl-C")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

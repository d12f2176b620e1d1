//! The measurement itself: the four scenarios, run back to back against a
//! ready gateway, each with a warm-up, its measured requests, and a wait until
//! the control plane has stored the traces they produced; then JSON direct
//! and through the gateway at other concurrencies, closed loop; then JSON at
//! a paced load, a fraction of the saturation throughput just measured; then
//! many streams open at once through the gateway, for its memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::json;
use switchyard_testkit::{Behavior, MockProvider};

use crate::credentials::Credentials;
use crate::load::{self, Load, Scenario};
use crate::metrics;
use crate::procfs::{self, Memory};
use crate::registry;
use crate::report::{PacedResult, ScenarioResult, SweepResult, Usage};
use crate::streams::{self, StreamsResult};

/// What the mock answers; four words, so a stream carries four content chunks.
pub const REPLY: &str = "Hello from the mock.";
/// How long to wait for the control plane to ack every trace after a scenario.
const SPOOL_DRAIN_WITHIN: Duration = Duration::from_secs(10);

/// Where to send requests and how much load to apply.
#[derive(Debug)]
pub struct Plan<'a> {
    /// Sends the API key with every request.
    pub client: &'a reqwest::Client,
    /// The key, for the clients of the memory test.
    pub credentials: &'a Credentials,
    /// Base URLs ending in `/v1`.
    pub mock_v1: String,
    pub gateway_v1: String,
    /// The gateway's HTTP base URL, for `/metrics`.
    pub gateway_url: String,
    /// The data plane, the gateway under test.
    pub gateway_pid: u32,
    pub control_plane_pid: u32,
    pub load: Load,
    pub warmup: Load,
    /// Further concurrencies to run JSON direct and through the gateway at.
    pub sweep: Vec<usize>,
    /// The paced measurement, if any.
    pub paced: Option<Paced>,
    /// Streams to open at once for the memory test (0 skips it).
    pub streams: usize,
    /// Words in the mock's reply during the memory test.
    pub stream_words: usize,
    /// The mock, whose reply the memory test makes longer.
    pub mock: &'a MockProvider,
    /// The data plane runs under callgrind: zero its counters before each
    /// measured gateway scenario and dump them once its traces are stored.
    pub callgrind: bool,
    /// Dumps requested so far; callgrind numbers its files from 1.
    pub dumps: AtomicUsize,
}

/// JSON at a fixed offered load.
#[derive(Debug, Clone, Copy)]
pub struct Paced {
    pub concurrency: usize,
    /// Of the gateway's saturation throughput measured earlier in the run.
    pub fraction: f64,
}

/// Everything measured while the gateway ran.
#[derive(Debug)]
pub struct Measured {
    pub scenarios: Vec<ScenarioResult>,
    /// JSON direct and through the gateway, one pair per extra concurrency.
    pub sweep: Vec<SweepResult>,
    pub paced: Option<PacedResult>,
    /// The memory test, if it ran.
    pub streams: Option<StreamsResult>,
    /// Traces of the memory test not acked 10 s after its streams ended
    /// (`None` when all were, or it did not run).
    pub streams_trace_drain: Option<Option<Duration>>,
    /// The gateway's `/metrics` text after the last scenario.
    pub metrics: String,
    pub memory_end: Memory,
    pub control_plane_memory_end: Memory,
}

pub async fn run(plan: &Plan<'_>) -> anyhow::Result<Measured> {
    let mut results = Vec::new();
    for scenario in scenarios(&plan.mock_v1, &plan.gateway_v1) {
        results.push(one_scenario(plan, Arc::new(scenario)).await?);
    }
    let mut sweep = Vec::new();
    for &concurrency in &plan.sweep {
        let load = Load {
            concurrency,
            ..plan.load
        };
        let warmup = Load {
            concurrency,
            ..plan.warmup
        };
        let [direct, gateway] = json_pair(
            &plan.mock_v1,
            &plan.gateway_v1,
            &format!("closed loop, concurrency {concurrency}"),
        );
        sweep.push(SweepResult {
            concurrency,
            direct: one_scenario_at(plan, Arc::new(direct), load, warmup).await?,
            gateway: one_scenario_at(plan, Arc::new(gateway), load, warmup).await?,
        });
    }
    let paced = match plan.paced {
        Some(paced) => Some(run_paced(plan, paced, &results, &sweep).await?),
        None => None,
    };
    let (streams, streams_trace_drain) = if plan.streams > 0 {
        let text = streams::reply(plan.stream_words);
        plan.mock
            .set_default(Behavior::Reply { text: text.clone() });
        eprintln!(
            "memory: {} streams of {} words at once through the gateway",
            plan.streams, plan.stream_words
        );
        let result = streams::run(
            &plan.gateway_v1,
            plan.credentials,
            plan.gateway_pid,
            plan.streams,
            &text,
        )
        .await?;
        plan.mock.set_default(Behavior::Reply {
            text: REPLY.to_owned(),
        });
        let drain =
            metrics::wait_for_spool_drain(plan.client, &plan.gateway_url, SPOOL_DRAIN_WITHIN)
                .await?;
        (Some(result), Some(drain))
    } else {
        (None, None)
    };
    Ok(Measured {
        scenarios: results,
        sweep,
        paced,
        streams,
        streams_trace_drain,
        metrics: metrics::fetch(plan.client, &plan.gateway_url).await?,
        memory_end: procfs::memory(plan.gateway_pid)?,
        control_plane_memory_end: procfs::memory(plan.control_plane_pid)?,
    })
}

/// JSON direct and through the gateway with `paced.concurrency` connections,
/// each sending on a fixed schedule, so that together they offer
/// `paced.fraction` of the highest closed-loop throughput the gateway reached
/// so far in this run.
async fn run_paced(
    plan: &Plan<'_>,
    paced: Paced,
    scenarios: &[ScenarioResult],
    sweep: &[SweepResult],
) -> anyhow::Result<PacedResult> {
    let closed_loop = scenarios
        .iter()
        .filter(|s| s.via_gateway && !s.stream)
        .map(|s| (plan.load.concurrency, s))
        .chain(sweep.iter().map(|p| (p.concurrency, &p.gateway)));
    let (saturation_concurrency, saturation) = closed_loop
        .map(|(c, s)| (c, s.throughput()))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .context("the paced measurement needs a closed-loop JSON run through the gateway first")?;
    ensure!(
        saturation > 0.0,
        "no successful JSON request through the gateway to pace against"
    );
    let rate = paced.fraction * saturation;
    let pace = Duration::from_secs_f64(paced.concurrency as f64 / rate);
    let load = Load {
        concurrency: paced.concurrency,
        pace: Some(pace),
        ..plan.load
    };
    let warmup = Load {
        concurrency: paced.concurrency,
        pace: Some(pace),
        ..plan.warmup
    };
    eprintln!(
        "paced: {} connections, one request every {:.2} ms each: {rate:.0} req/s, {:.0}% of {saturation:.0} req/s",
        paced.concurrency,
        pace.as_secs_f64() * 1000.0,
        paced.fraction * 100.0
    );
    let [direct, gateway] = json_pair(
        &plan.mock_v1,
        &plan.gateway_v1,
        &format!("paced, concurrency {}", paced.concurrency),
    );
    Ok(PacedResult {
        fraction: paced.fraction,
        saturation,
        saturation_concurrency,
        load,
        direct: one_scenario_at(plan, Arc::new(direct), load, warmup).await?,
        gateway: one_scenario_at(plan, Arc::new(gateway), load, warmup).await?,
    })
}

async fn one_scenario(plan: &Plan<'_>, scenario: Arc<Scenario>) -> anyhow::Result<ScenarioResult> {
    one_scenario_at(plan, scenario, plan.load, plan.warmup).await
}

async fn one_scenario_at(
    plan: &Plan<'_>,
    scenario: Arc<Scenario>,
    load: Load,
    warmup: Load,
) -> anyhow::Result<ScenarioResult> {
    let client = plan.client;
    eprintln!(
        "{}: {} warm-up requests at concurrency {}",
        scenario.name, warmup.requests, warmup.concurrency
    );
    load::run(client, &scenario, warmup).await?;
    // Warm-up traces are stored before the measured requests start.
    metrics::wait_for_spool_drain(client, &plan.gateway_url, SPOOL_DRAIN_WITHIN).await?;

    eprintln!(
        "{}: {} measured requests at concurrency {}",
        scenario.name, load.requests, load.concurrency
    );
    let profiled = plan.callgrind && scenario.via_gateway;
    if profiled {
        callgrind_control(plan.gateway_pid, "--zero").await?;
    }
    let gateway = Reading::take(plan.gateway_pid)?;
    let control_plane = Reading::take(plan.control_plane_pid)?;
    let outcome = load::run(client, &scenario, load).await?;
    let gateway_serving = Reading::cpu(plan.gateway_pid)?;
    let control_plane_serving = Reading::cpu(plan.control_plane_pid)?;
    let spool_after_load = metrics::value(
        &metrics::fetch(client, &plan.gateway_url).await?,
        metrics::SPOOL_DEPTH,
    );
    // Storing the traces is part of what a request costs: wait until the
    // control plane has acked them before reading CPU again.
    let trace_drain =
        metrics::wait_for_spool_drain(client, &plan.gateway_url, SPOOL_DRAIN_WITHIN).await?;
    let callgrind_dump = if profiled {
        let dump = format!("--dump={}", scenario.name.replace([' ', ','], "_"));
        callgrind_control(plan.gateway_pid, &dump).await?;
        let number = plan.dumps.fetch_add(1, Ordering::SeqCst) + 1;
        eprintln!(
            "{}: callgrind counters dumped (part {number}) for {} requests",
            scenario.name,
            outcome.samples.len() + outcome.error_count()
        );
        Some(number)
    } else {
        None
    };
    Ok(ScenarioResult {
        name: scenario.name.clone(),
        stream: scenario.stream,
        via_gateway: scenario.via_gateway,
        outcome,
        gateway: gateway.usage(plan.gateway_pid, gateway_serving)?,
        control_plane: control_plane.usage(plan.control_plane_pid, control_plane_serving)?,
        spool_after_load,
        trace_drain,
        callgrind_dump,
    })
}

/// CPU of one process before a scenario, overall, in the kernel, and by
/// thread.
struct Reading {
    cpu: Duration,
    system: Duration,
    threads: BTreeMap<String, Duration>,
}

impl Reading {
    fn take(pid: u32) -> anyhow::Result<Reading> {
        let (user, system) = procfs::cpu_times(pid)?;
        Ok(Reading {
            cpu: user + system,
            system,
            threads: procfs::cpu_by_thread(pid)?,
        })
    }

    fn cpu(pid: u32) -> anyhow::Result<Duration> {
        procfs::cpu_time(pid)
    }

    /// What the process used since this reading; `serving` is its CPU time
    /// when the scenario's last response had ended.
    fn usage(&self, pid: u32, serving: Duration) -> anyhow::Result<Usage> {
        let (user, system) = procfs::cpu_times(pid)?;
        Ok(Usage {
            cpu_serving: serving.saturating_sub(self.cpu),
            cpu: (user + system).saturating_sub(self.cpu),
            cpu_system: system.saturating_sub(self.system),
            threads: thread_cpu_delta(&self.threads, &procfs::cpu_by_thread(pid)?),
            rss_after: procfs::memory(pid)?,
        })
    }
}

async fn callgrind_control(pid: u32, action: &str) -> anyhow::Result<()> {
    let output = tokio::process::Command::new("callgrind_control")
        .arg(action)
        .arg(pid.to_string())
        .output()
        .await
        .context("running callgrind_control")?;
    ensure!(
        output.status.success(),
        "callgrind_control {action} {pid} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The JSON request straight to the mock and through the gateway, named for
/// how it is run.
fn json_pair(mock_v1: &str, gateway_v1: &str, how: &str) -> [Scenario; 2] {
    [(mock_v1, false), (gateway_v1, true)].map(|(base, via_gateway)| Scenario {
        name: format!("{}, {how}", if via_gateway { "gateway" } else { "direct" }),
        url: format!("{base}/chat/completions"),
        body: request_body(false),
        stream: false,
        via_gateway,
        expected: REPLY.to_owned(),
    })
}

fn request_body(stream: bool) -> Vec<u8> {
    let mut body = json!({
        "model": registry::MODEL,
        "messages": [{ "role": "user", "content": "Say hello to the benchmark." }],
        "stream": stream,
    });
    if stream {
        // The gateway always asks its provider for usage when streaming;
        // ask the mock directly for the same, so both streams match.
        body["stream_options"] = json!({ "include_usage": true });
    }
    body.to_string().into_bytes()
}

/// The same request straight to the mock and through the gateway, as JSON
/// and as a stream, in that order.
fn scenarios(mock_v1: &str, gateway_v1: &str) -> Vec<Scenario> {
    let scenario = |name: &str, base: &str, stream, via_gateway| Scenario {
        name: name.to_owned(),
        url: format!("{base}/chat/completions"),
        body: request_body(stream),
        stream,
        via_gateway,
        expected: REPLY.to_owned(),
    };
    vec![
        scenario("direct", mock_v1, false, false),
        scenario("gateway", gateway_v1, false, true),
        scenario("direct, stream", mock_v1, true, false),
        scenario("gateway, stream", gateway_v1, true, true),
    ]
}

/// CPU used per thread name between two readings, busiest first, idle names
/// left out.
fn thread_cpu_delta(
    before: &BTreeMap<String, Duration>,
    after: &BTreeMap<String, Duration>,
) -> Vec<(String, Duration)> {
    let mut delta: Vec<(String, Duration)> = after
        .iter()
        .map(|(name, &used)| {
            let earlier = before.get(name).copied().unwrap_or_default();
            (name.clone(), used.saturating_sub(earlier))
        })
        .filter(|(_, used)| !used.is_zero())
        .collect();
    delta.sort_by_key(|(_, used)| std::cmp::Reverse(*used));
    delta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_delta_is_busiest_first_and_skips_idle_threads() {
        let ms = Duration::from_millis;
        let before = BTreeMap::from([("a".to_owned(), ms(100)), ("b".to_owned(), ms(50))]);
        let after = BTreeMap::from([
            ("a".to_owned(), ms(100)),
            ("b".to_owned(), ms(80)),
            ("new".to_owned(), ms(40)),
        ]);
        assert_eq!(
            thread_cpu_delta(&before, &after),
            vec![("new".to_owned(), ms(40)), ("b".to_owned(), ms(30))]
        );
    }

    #[test]
    fn direct_and_gateway_get_the_same_body() {
        let all = scenarios("http://mock/v1", "http://gw/v1");
        assert_eq!(all.len(), 4);
        for pair in [(0, 1), (2, 3)] {
            assert_eq!(all[pair.0].body, all[pair.1].body);
            assert_eq!(all[pair.0].stream, all[pair.1].stream);
            assert!(!all[pair.0].via_gateway && all[pair.1].via_gateway);
        }
        assert_eq!(all[3].url, "http://gw/v1/chat/completions");
        let [direct, gateway] = json_pair("http://mock/v1", "http://gw/v1", "paced");
        assert_eq!(direct.body, gateway.body);
        assert_eq!(gateway.name, "gateway, paced");
        assert!(gateway.via_gateway && !direct.via_gateway);
    }
}

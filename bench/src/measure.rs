//! The measurement itself: the four scenarios, run back to back against a
//! ready gateway, each with a warm-up, its measured requests, and a wait until
//! the control plane has stored the traces they produced; then JSON direct
//! and through the gateway at other concurrencies; then many streams open at
//! once through the gateway, for its memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchyard_testkit::{Behavior, MockProvider};

use crate::load::{self, Load, Scenario};
use crate::metrics;
use crate::procfs::{self, Memory};
use crate::registry;
use crate::report::{ScenarioResult, SweepResult};
use crate::streams::{self, StreamsResult};

/// What the mock answers; four words, so a stream carries four content chunks.
pub const REPLY: &str = "Hello from the mock.";
/// How long to wait for the control plane to ack every trace after a scenario.
const SPOOL_DRAIN_WITHIN: Duration = Duration::from_secs(10);

/// Where to send requests and how much load to apply.
#[derive(Debug)]
pub struct Plan<'a> {
    pub client: &'a reqwest::Client,
    /// Base URLs ending in `/v1`.
    pub mock_v1: String,
    pub gateway_v1: String,
    /// The gateway's HTTP base URL, for `/metrics`.
    pub gateway_url: String,
    pub gateway_pid: u32,
    pub load: Load,
    pub warmup: Load,
    /// Further concurrencies to run JSON direct and through the gateway at.
    pub sweep: Vec<usize>,
    /// Streams to open at once for the memory test (0 skips it).
    pub streams: usize,
    /// Words in the mock's reply during the memory test.
    pub stream_words: usize,
    /// The mock, whose reply the memory test makes longer.
    pub mock: &'a MockProvider,
}

/// Everything measured while the gateway ran.
#[derive(Debug)]
pub struct Measured {
    pub scenarios: Vec<ScenarioResult>,
    /// JSON direct and through the gateway, one pair per extra concurrency.
    pub sweep: Vec<SweepResult>,
    /// The memory test, if it ran.
    pub streams: Option<StreamsResult>,
    /// Traces of the memory test not acked 10 s after its streams ended
    /// (`None` when all were, or it did not run).
    pub streams_trace_drain: Option<Option<Duration>>,
    /// The gateway's `/metrics` text after the last scenario.
    pub metrics: String,
    pub memory_end: Memory,
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
        let [direct, gateway] = json_pair(&plan.mock_v1, &plan.gateway_v1, concurrency);
        sweep.push(SweepResult {
            concurrency,
            direct: one_scenario_at(plan, Arc::new(direct), load, warmup).await?,
            gateway: one_scenario_at(plan, Arc::new(gateway), load, warmup).await?,
        });
    }
    let (streams, streams_trace_drain) = if plan.streams > 0 {
        let text = streams::reply(plan.stream_words);
        plan.mock
            .set_default(Behavior::Reply { text: text.clone() });
        eprintln!(
            "memory: {} streams of {} words at once through the gateway",
            plan.streams, plan.stream_words
        );
        let result = streams::run(&plan.gateway_v1, plan.gateway_pid, plan.streams, &text).await?;
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
        streams,
        streams_trace_drain,
        metrics: metrics::fetch(plan.client, &plan.gateway_url).await?,
        memory_end: procfs::memory(plan.gateway_pid)?,
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
    let (client, pid) = (plan.client, plan.gateway_pid);
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
    let cpu_before = procfs::cpu_time(pid)?;
    let threads_before = procfs::cpu_by_thread(pid)?;
    let outcome = load::run(client, &scenario, load).await?;
    let gateway_cpu_serving = procfs::cpu_time(pid)?.saturating_sub(cpu_before);
    let spool_after_load = metrics::value(
        &metrics::fetch(client, &plan.gateway_url).await?,
        metrics::SPOOL_DEPTH,
    );
    // Storing the traces is part of what a request costs the gateway: wait
    // until the control plane has acked them before reading its CPU again.
    let trace_drain =
        metrics::wait_for_spool_drain(client, &plan.gateway_url, SPOOL_DRAIN_WITHIN).await?;
    let gateway_cpu = procfs::cpu_time(pid)?.saturating_sub(cpu_before);
    let gateway_threads = thread_cpu_delta(&threads_before, &procfs::cpu_by_thread(pid)?);
    Ok(ScenarioResult {
        name: scenario.name.clone(),
        stream: scenario.stream,
        outcome,
        gateway_cpu_serving,
        gateway_cpu,
        gateway_threads,
        gateway_rss_after: procfs::memory(pid)?,
        spool_after_load,
        trace_drain,
    })
}

/// The JSON request straight to the mock and through the gateway, named for
/// the concurrency it runs at.
fn json_pair(mock_v1: &str, gateway_v1: &str, concurrency: usize) -> [Scenario; 2] {
    let [direct, gateway] =
        [(mock_v1, "direct"), (gateway_v1, "gateway")].map(|(base, to)| Scenario {
            name: format!("{to}, concurrency {concurrency}"),
            url: format!("{base}/chat/completions"),
            body: request_body(false),
            stream: false,
            expected: REPLY.to_owned(),
        });
    [direct, gateway]
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
    let scenario = |name: &str, base: &str, stream| Scenario {
        name: name.to_owned(),
        url: format!("{base}/chat/completions"),
        body: request_body(stream),
        stream,
        expected: REPLY.to_owned(),
    };
    vec![
        scenario("direct", mock_v1, false),
        scenario("gateway", gateway_v1, false),
        scenario("direct, stream", mock_v1, true),
        scenario("gateway, stream", gateway_v1, true),
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
        }
        assert_eq!(all[3].url, "http://gw/v1/chat/completions");
    }
}

//! The measurement itself: the four scenarios, run back to back against a
//! ready gateway, each with a warm-up, its measured requests, and a wait until
//! the control plane has stored the traces they produced.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::load::{self, Load, Scenario};
use crate::metrics;
use crate::procfs::{self, Memory};
use crate::registry;
use crate::report::ScenarioResult;

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
}

/// Everything measured while the gateway ran.
#[derive(Debug)]
pub struct Measured {
    pub scenarios: Vec<ScenarioResult>,
    /// The gateway's `/metrics` text after the last scenario.
    pub metrics: String,
    pub memory_end: Memory,
}

pub async fn run(plan: &Plan<'_>) -> anyhow::Result<Measured> {
    let mut results = Vec::new();
    for scenario in scenarios(&plan.mock_v1, &plan.gateway_v1) {
        results.push(one_scenario(plan, Arc::new(scenario)).await?);
    }
    Ok(Measured {
        scenarios: results,
        metrics: metrics::fetch(plan.client, &plan.gateway_url).await?,
        memory_end: procfs::memory(plan.gateway_pid)?,
    })
}

async fn one_scenario(plan: &Plan<'_>, scenario: Arc<Scenario>) -> anyhow::Result<ScenarioResult> {
    let (client, pid) = (plan.client, plan.gateway_pid);
    eprintln!(
        "{}: {} warm-up requests",
        scenario.name, plan.warmup.requests
    );
    load::run(client, &scenario, plan.warmup).await?;
    // Warm-up traces are stored before the measured requests start.
    metrics::wait_for_spool_drain(client, &plan.gateway_url, SPOOL_DRAIN_WITHIN).await?;

    eprintln!(
        "{}: {} measured requests",
        scenario.name, plan.load.requests
    );
    let cpu_before = procfs::cpu_time(pid)?;
    let threads_before = procfs::cpu_by_thread(pid)?;
    let outcome = load::run(client, &scenario, plan.load).await?;
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
        name: scenario.name,
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

/// The same request straight to the mock and through the gateway, as JSON
/// and as a stream, in that order.
fn scenarios(mock_v1: &str, gateway_v1: &str) -> Vec<Scenario> {
    let body = |stream: bool| {
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
    };
    let scenario = |name, base: &str, stream| Scenario {
        name,
        url: format!("{base}/chat/completions"),
        body: body(stream),
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

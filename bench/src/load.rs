//! The load generator: a fixed number of identical requests at a fixed
//! concurrency, each timed from the moment it is sent to the end of its body.
//!
//! Closed loop (the default): each worker sends its next request as soon as
//! the previous one has ended, so the load is as high as the system allows.
//! Paced: each worker sends on a fixed schedule instead, one request every
//! `pace`, the workers' schedules spread evenly over one interval, so the
//! offered load is `concurrency / pace` requests a second whatever the
//! latency; a request whose time comes while its worker still waits for the
//! previous response is sent as soon as that one ends, and counted as late.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::reply::{StreamScan, check_completion};

/// Distinct error kinds kept per run; the rest are counted together.
const MAX_ERROR_KINDS: usize = 20;

/// One kind of request, sent over and over.
#[derive(Debug)]
pub struct Scenario {
    pub name: String,
    pub url: String,
    pub body: Vec<u8>,
    pub stream: bool,
    /// Sent to the gateway (else straight to the mock).
    pub via_gateway: bool,
    /// The completion text every reply must carry.
    pub expected: String,
}

/// How much load to apply.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub requests: usize,
    pub concurrency: usize,
    /// Requests not started by then are not sent, so a stuck run still ends.
    pub deadline: Duration,
    /// Paced: each worker sends one request every `pace` on a fixed
    /// schedule. `None`: closed loop.
    pub pace: Option<Duration>,
}

impl Load {
    /// The requests a second a paced load offers.
    pub fn offered_rate(&self) -> Option<f64> {
        let pace = self.pace?.as_secs_f64();
        (pace > 0.0).then(|| self.concurrency.max(1) as f64 / pace)
    }
}

/// Timings of one successful request, from the moment it was sent.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub total: Duration,
    pub first_byte: Duration,
    /// When the first event carrying content was complete (streams only).
    pub first_token: Option<Duration>,
}

/// Everything one run of a scenario produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub samples: Vec<Sample>,
    /// Failed requests by kind.
    pub errors: BTreeMap<String, usize>,
    pub elapsed: Duration,
    /// Requests never sent because the deadline passed.
    pub not_sent: usize,
    /// Paced loads only: how long after its scheduled time each request was
    /// sent (the timer's granularity is about a millisecond).
    pub send_lags: Vec<Duration>,
    /// Paced loads only: requests whose time came while their connection
    /// still waited for the previous response.
    pub late: usize,
}

impl Outcome {
    pub fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    fn merge(&mut self, other: Outcome) {
        self.samples.extend(other.samples);
        self.send_lags.extend(other.send_lags);
        self.late += other.late;
        for (kind, n) in other.errors {
            self.record_error(kind, n);
        }
    }

    fn record_error(&mut self, kind: String, n: usize) {
        let kind = if self.errors.len() >= MAX_ERROR_KINDS && !self.errors.contains_key(&kind) {
            "other errors".to_owned()
        } else {
            kind
        };
        *self.errors.entry(kind).or_default() += n;
    }
}

/// Sends `load.requests` requests of `scenario` from `load.concurrency` workers.
pub async fn run(
    client: &reqwest::Client,
    scenario: &Arc<Scenario>,
    load: Load,
) -> anyhow::Result<Outcome> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = JoinSet::new();
    let workers_count = load.concurrency.max(1);
    for worker in 0..workers_count {
        let (client, scenario, next) = (client.clone(), Arc::clone(scenario), Arc::clone(&next));
        // Worker i's first request is due i/n of an interval after the start.
        let mut due = load
            .pace
            .map(|pace| start + pace.mul_f64(worker as f64 / workers_count as f64));
        workers.spawn(async move {
            let mut outcome = Outcome::default();
            while start.elapsed() < load.deadline
                && next.fetch_add(1, Ordering::Relaxed) < load.requests
            {
                if let (Some(at), Some(pace)) = (due, load.pace) {
                    if Instant::now() > at {
                        outcome.late += 1;
                    }
                    tokio::time::sleep_until(at).await;
                    outcome.send_lags.push(at.elapsed());
                    // The schedule holds whatever the latency: a late request
                    // does not push back the ones after it.
                    due = Some(at + pace);
                }
                match one(&client, &scenario).await {
                    Ok(sample) => outcome.samples.push(sample),
                    Err(kind) => outcome.record_error(kind, 1),
                }
            }
            outcome
        });
    }
    let mut total = Outcome::default();
    while let Some(worker) = workers.join_next().await {
        total.merge(worker.context("a load worker failed")?);
    }
    total.elapsed = start.elapsed();
    let finished = total.samples.len() + total.error_count();
    total.not_sent = load.requests.saturating_sub(finished);
    Ok(total)
}

/// Sends one request and reads its whole body; errors are short kinds.
async fn one(client: &reqwest::Client, scenario: &Scenario) -> Result<Sample, String> {
    let start = Instant::now();
    let mut response = client
        .post(&scenario.url)
        .header(CONTENT_TYPE, "application/json")
        .body(scenario.body.clone())
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    let status = response.status();
    let checked_as_stream = scenario.stream && status.is_success();
    let mut scan = StreamScan::default();
    let mut body = Vec::new();
    let mut first_byte = None;
    let mut first_token = None;
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(&e))? {
        let now = start.elapsed();
        first_byte.get_or_insert(now);
        if checked_as_stream {
            if scan.push(&chunk)? {
                first_token = Some(now);
            }
        } else {
            body.extend_from_slice(&chunk);
        }
    }
    let total = start.elapsed();
    if !status.is_success() {
        return Err(format!(
            "HTTP {}: {}",
            status.as_u16(),
            error_summary(&body)
        ));
    }
    if scenario.stream {
        scan.finish(&scenario.expected)?;
    } else {
        check_completion(&body, &scenario.expected)?;
    }
    Ok(Sample {
        total,
        first_byte: first_byte.unwrap_or(total),
        first_token,
    })
}

pub fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect failed"
    } else if e.is_body() || e.is_decode() {
        "body read failed"
    } else {
        "request failed"
    };
    // The innermost cause ("connection reset by peer", ...) says the most.
    let mut cause: &dyn std::error::Error = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    format!("{kind}: {cause}")
}

/// The OpenAI error type and message of an error body, else its first bytes.
fn error_summary(body: &[u8]) -> String {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.pointer(&format!("/error/{name}")))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let text = match (field("type"), field("message")) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    text.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_load_offers_connections_over_pace() {
        let load = Load {
            requests: 100,
            concurrency: 64,
            deadline: Duration::from_secs(1),
            pace: Some(Duration::from_millis(16)),
        };
        assert_eq!(load.offered_rate(), Some(4000.0));
        let closed = Load { pace: None, ..load };
        assert_eq!(closed.offered_rate(), None);
    }
}

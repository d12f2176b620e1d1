//! The steady client load on the data plane: one chat completion every
//! 1/rate seconds, each on its own task, with a bound on the requests in
//! flight (a tick that finds it reached sends nothing and is counted). It
//! keeps the trace id (`x-switchyard-trace-id`) of every request served, to
//! look for its trace row at the end.

use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::cluster::MODEL;

/// Longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Failure descriptions kept for the report.
const FAILURES_KEPT: usize = 5;

/// What the load came to.
#[derive(Debug, Default)]
pub struct Tally {
    /// Trace ids of the requests served (2xx, body read whole), in completion order.
    pub served: Vec<String>,
    pub failed: usize,
    /// Ticks that sent nothing because the bound on requests in flight was reached.
    pub skipped: usize,
    /// The first few failures, described.
    pub failures: Vec<String>,
    /// From the first request to the stop.
    pub duration: Duration,
}

/// A running load; its task stops when it is dropped.
#[derive(Debug)]
pub struct Traffic {
    stop: watch::Sender<bool>,
    task: JoinHandle<Tally>,
}

impl Traffic {
    pub fn start(client: reqwest::Client, url: String, rate: u32, max_in_flight: usize) -> Self {
        let (stop, stopped) = watch::channel(false);
        let every = Duration::from_secs(1) / rate.max(1);
        let task = tokio::spawn(run(client, url, every, max_in_flight, stopped));
        Self { stop, task }
    }

    /// Stops sending, waits for the requests in flight, and returns the tally.
    pub async fn stop(mut self) -> anyhow::Result<Tally> {
        self.stop.send_replace(true);
        // Every request has its own timeout, so this ends.
        (&mut self.task).await.context("the load task failed")
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    client: reqwest::Client,
    url: String,
    every: Duration,
    max_in_flight: usize,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::default();
    let mut in_flight = JoinSet::new();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            Some(done) = in_flight.join_next() => record(&mut tally, done),
            _ = ticks.tick() => {
                if in_flight.len() >= max_in_flight {
                    tally.skipped += 1;
                } else {
                    in_flight.spawn(complete(client.clone(), url.clone()));
                }
            }
        }
    }
    tally.duration = start.elapsed();
    while let Some(done) = in_flight.join_next().await {
        record(&mut tally, done);
    }
    tally
}

fn record(tally: &mut Tally, done: Result<Result<String, String>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(trace_id)) => tally.served.push(trace_id),
        Ok(Err(why)) => {
            tally.failed += 1;
            if tally.failures.len() < FAILURES_KEPT {
                tally.failures.push(why);
            }
        }
        Err(e) => {
            tally.failed += 1;
            if tally.failures.len() < FAILURES_KEPT {
                tally.failures.push(format!("request task failed: {e}"));
            }
        }
    }
}

/// One chat completion; its trace id, or why it was not served.
async fn complete(client: reqwest::Client, url: String) -> Result<String, String> {
    let response = client
        .post(&url)
        .json(&serde_json::json!({
            "model": MODEL,
            "messages": [{"role": "user", "content": "hello"}],
        }))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = response.status();
    let trace_id = response
        .headers()
        .get("x-switchyard-trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    trace_id.ok_or_else(|| "no x-switchyard-trace-id header".to_owned())
}

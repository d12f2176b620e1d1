//! The gateway's memory with many streams open at once: `count` streaming
//! requests started together through the gateway against a long reply, the
//! gateway's VmRSS sampled from /proc while they are open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::credentials::Credentials;
use crate::procfs;
use crate::registry;
use crate::reply::StreamScan;

/// How often the gateway's memory is read while the streams run.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// Longest one of the streams may take before it counts as an error.
const STREAM_TIMEOUT: Duration = Duration::from_secs(120);
/// Distinct error kinds kept; the rest are counted together.
const MAX_ERROR_KINDS: usize = 20;

/// What one run of the many-streams test found.
#[derive(Debug, Default)]
pub struct StreamsResult {
    /// Streams started at once.
    pub started: usize,
    /// Streams that ended with `[DONE]` and the whole expected text.
    pub completed: usize,
    pub errors: BTreeMap<String, usize>,
    /// Words in the reply, one content event each.
    pub words: usize,
    /// The most streams that had received their first bytes and not yet
    /// ended, at any one moment.
    pub peak_open: usize,
    /// From starting the first request to every stream being open at once;
    /// `None` if they never all were.
    pub all_open_after: Option<Duration>,
    /// How long all of them were open together.
    pub all_open_for: Duration,
    /// The gateway's VmRSS before the streams started, KiB.
    pub rss_before_kib: u64,
    /// The highest VmRSS sampled while every stream was open, KiB.
    pub peak_rss_all_open_kib: Option<u64>,
    /// The highest VmRSS sampled at any time during the test, KiB.
    pub peak_rss_kib: u64,
    /// VmRSS samples taken.
    pub samples: usize,
    /// From the first request to the last stream ending.
    pub elapsed: Duration,
    /// The gateway's VmRSS once every stream had ended, KiB.
    pub rss_after_kib: u64,
}

/// A reply of `words` distinct-enough words.
pub fn reply(words: usize) -> String {
    (0..words)
        .map(|i| format!("word{}", i % 100))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts `count` streams through `gateway_v1` at once and samples the
/// gateway's memory until they have all ended.
pub async fn run(
    gateway_v1: &str,
    credentials: &Credentials,
    gateway_pid: u32,
    count: usize,
    expected: &str,
) -> anyhow::Result<StreamsResult> {
    let client = credentials
        .with_api_key(reqwest::Client::builder())?
        .pool_max_idle_per_host(count)
        .timeout(STREAM_TIMEOUT)
        .build()
        .context("building the HTTP client for the streams")?;
    let body = json!({
        "model": registry::MODEL,
        "messages": [{ "role": "user", "content": "Say a lot to the benchmark." }],
        "stream": true,
    })
    .to_string()
    .into_bytes();
    let url = format!("{gateway_v1}/chat/completions");
    let expected: Arc<str> = Arc::from(expected);
    let open = Arc::new(AtomicUsize::new(0));
    let peak_open = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));

    let mut result = StreamsResult {
        started: count,
        words: expected.split_whitespace().count(),
        rss_before_kib: procfs::memory(gateway_pid)?.rss_kib,
        ..StreamsResult::default()
    };

    let start = Instant::now();
    let sampler = {
        let (open, done) = (Arc::clone(&open), Arc::clone(&done));
        tokio::spawn(async move { sample(gateway_pid, count, &open, &done, start).await })
    };
    let mut streams = JoinSet::new();
    for _ in 0..count {
        let (client, url, body, expected) = (
            client.clone(),
            url.clone(),
            body.clone(),
            Arc::clone(&expected),
        );
        let (open, peak_open) = (Arc::clone(&open), Arc::clone(&peak_open));
        streams.spawn(async move { one(&client, &url, body, &expected, &open, &peak_open).await });
    }
    while let Some(stream) = streams.join_next().await {
        match stream.context("a stream task failed")? {
            Ok(()) => result.completed += 1,
            Err(kind) => {
                let kind = if result.errors.len() >= MAX_ERROR_KINDS
                    && !result.errors.contains_key(&kind)
                {
                    "other errors".to_owned()
                } else {
                    kind
                };
                *result.errors.entry(kind).or_default() += 1;
            }
        }
    }
    result.elapsed = start.elapsed();
    done.store(true, Ordering::SeqCst);
    let sampled = sampler.await.context("the memory sampler failed")??;
    result.peak_open = peak_open.load(Ordering::SeqCst);
    result.all_open_after = sampled.all_open_after;
    result.all_open_for = sampled.all_open_for;
    result.peak_rss_all_open_kib = sampled.peak_all_open_kib;
    result.peak_rss_kib = sampled.peak_kib;
    result.samples = sampled.samples;
    result.rss_after_kib = procfs::memory(gateway_pid)?.rss_kib;
    Ok(result)
}

#[derive(Debug, Default)]
struct Sampled {
    samples: usize,
    peak_kib: u64,
    peak_all_open_kib: Option<u64>,
    all_open_after: Option<Duration>,
    all_open_for: Duration,
}

/// Reads the gateway's VmRSS every [`SAMPLE_EVERY`] until `done`, noting
/// which samples were taken while all `count` streams were open.
async fn sample(
    pid: u32,
    count: usize,
    open: &AtomicUsize,
    done: &AtomicBool,
    start: Instant,
) -> anyhow::Result<Sampled> {
    let mut sampled = Sampled::default();
    let mut all_open_since: Option<Instant> = None;
    // Bounded by the streams' own timeout, whatever happens to `done`.
    while !done.load(Ordering::SeqCst) && start.elapsed() < STREAM_TIMEOUT * 2 {
        let all_open = open.load(Ordering::SeqCst) == count;
        let rss = procfs::memory(pid)?.rss_kib;
        // Counted as taken with all open only if they still were after the read.
        let all_open = all_open && open.load(Ordering::SeqCst) == count;
        sampled.samples += 1;
        sampled.peak_kib = sampled.peak_kib.max(rss);
        if all_open {
            let now = Instant::now();
            let since = *all_open_since.get_or_insert(now);
            sampled.all_open_after.get_or_insert(since - start);
            sampled.all_open_for = sampled.all_open_for.max(now - since);
            sampled.peak_all_open_kib = Some(sampled.peak_all_open_kib.unwrap_or(0).max(rss));
        } else {
            all_open_since = None;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    Ok(sampled)
}

/// One stream: open once its first bytes arrive, closed when it ends.
async fn one(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    expected: &str,
    open: &AtomicUsize,
    peak_open: &AtomicUsize,
) -> Result<(), String> {
    let mut response = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| crate::load::transport_error(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let mut scan = StreamScan::default();
    let mut is_open = false;
    let result = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if !is_open {
                    is_open = true;
                    let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                    peak_open.fetch_max(now_open, Ordering::SeqCst);
                }
                if let Err(kind) = scan.push(&chunk) {
                    break Err(kind);
                }
            }
            Ok(None) => break scan.finish(expected),
            Err(e) => break Err(crate::load::transport_error(&e)),
        }
    };
    if is_open {
        open.fetch_sub(1, Ordering::SeqCst);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_has_the_asked_number_of_words() {
        assert_eq!(reply(300).split_whitespace().count(), 300);
        assert_eq!(reply(1), "word0");
    }
}

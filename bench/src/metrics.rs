//! The data plane's own Prometheus counters, read after the load: requests by
//! outcome, provider attempts, and whether traces reached the control plane.

use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

/// Series reported as they are.
const REPORTED: [&str; 4] = [
    "switchyard_dp_requests",
    "switchyard_dp_attempts",
    "switchyard_dp_trace_spool_depth",
    "switchyard_dp_traces_dropped",
];
/// Traces the data plane holds until the control plane acks them.
pub const SPOOL_DEPTH: &str = "switchyard_dp_trace_spool_depth";

/// Fetches the gateway's metrics text.
pub async fn fetch(client: &reqwest::Client, gateway: &str) -> anyhow::Result<String> {
    let response = client
        .get(format!("{gateway}/metrics"))
        .send()
        .await
        .context("fetching the gateway's metrics")?
        .error_for_status()
        .context("fetching the gateway's metrics")?;
    response
        .text()
        .await
        .context("reading the gateway's metrics")
}

/// The sample lines of the reported series.
pub fn reported(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| REPORTED.iter().any(|name| line.starts_with(name)))
        .map(str::to_owned)
        .collect()
}

/// Sum of every sample of `name` (any labels); `None` when it is absent.
pub fn value(text: &str, name: &str) -> Option<f64> {
    let samples: Vec<f64> = text
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// Waits until the trace spool is empty (every trace acked by the control
/// plane) and says how long that took; `None` if it did not drain in time.
pub async fn wait_for_spool_drain(
    client: &reqwest::Client,
    gateway: &str,
    within: Duration,
) -> anyhow::Result<Option<Duration>> {
    let start = Instant::now();
    loop {
        let text = fetch(client, gateway).await?;
        if value(&text, SPOOL_DEPTH) == Some(0.0) {
            return Ok(Some(start.elapsed()));
        }
        if start.elapsed() >= within {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP switchyard_dp_trace_spool_depth Traces waiting.\n\
        # TYPE switchyard_dp_trace_spool_depth gauge\n\
        switchyard_dp_trace_spool_depth 3\n\
        switchyard_dp_requests_total{outcome=\"ok\",target=\"mock/m\"} 10\n\
        switchyard_dp_requests_total{outcome=\"error\",target=\"mock/m\"} 2\n\
        switchyard_dp_request_duration_seconds_sum 1.5\n";

    #[test]
    fn sums_samples_of_one_series() {
        assert_eq!(value(TEXT, "switchyard_dp_trace_spool_depth"), Some(3.0));
        assert_eq!(value(TEXT, "switchyard_dp_requests_total"), Some(12.0));
        assert_eq!(value(TEXT, "switchyard_dp_requests"), None);
    }

    #[test]
    fn reports_only_the_chosen_series() {
        let lines = reported(TEXT);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| !l.starts_with('#')));
    }
}

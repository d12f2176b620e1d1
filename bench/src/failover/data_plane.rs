//! The data plane under test: the real `switchyard-data-plane` binary as its
//! own process on free loopback ports, following every control-plane replica
//! (`--control-plane a,b,c`), with a state directory of its own and its JSON
//! log in a file; and what the benchmark reads from its `/metrics`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::time::Instant;

use super::cluster::free_port;
use crate::metrics;
use crate::process::{Process, Spawn, Stopped};

/// Epoch of the snapshot the data plane serves.
pub const SNAPSHOT_EPOCH: &str = "switchyard_dp_snapshot_epoch";
/// Traces dropped because the spool was full.
pub const TRACES_DROPPED: &str = "switchyard_dp_traces_dropped_total";
/// The node id it reports to the control planes.
pub const NODE_ID: &str = "bench-dp";

/// A running data plane.
#[derive(Debug)]
pub struct DataPlane {
    process: Process,
    http: SocketAddr,
}

impl DataPlane {
    /// Starts it and waits until it is ready (it has a snapshot).
    pub async fn start(
        binary: &Path,
        dir: &Path,
        control_planes: &[String],
        client: &reqwest::Client,
        within: Duration,
    ) -> anyhow::Result<Self> {
        let (http, grpc) = (free_port()?, free_port()?);
        let state = dir.join("data-plane-state");
        std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
        let args = [
            ("--http-listen", http.to_string()),
            ("--grpc-listen", grpc.to_string()),
            ("--control-plane", control_planes.join(",")),
            ("--state-dir", state.display().to_string()),
            ("--node-id", NODE_ID.to_owned()),
            ("--log-format", "json".to_owned()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [OsString::from(flag), OsString::from(value)])
        .collect();
        let mut process = Process::spawn(Spawn {
            name: "data plane",
            launcher: &[],
            binary,
            args,
            env: vec![("RUST_LOG", "info".to_owned())],
            log: dir.join("data-plane.log"),
        })?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = process.exited()? {
                bail!(
                    "the data plane exited before it was ready ({status}); its log:\n{}",
                    process.log_tail()
                );
            }
            if let Ok(r) = client.get(format!("http://{http}/readyz")).send().await
                && r.status().is_success()
            {
                return Ok(Self { process, http });
            }
            if Instant::now() >= deadline {
                bail!(
                    "the data plane was not ready within {within:?}; its log:\n{}",
                    process.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where its HTTP API listens, e.g. `http://127.0.0.1:1234`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.base_url())
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// One read of a series of its metrics; `None` when it is absent.
    pub async fn metric(
        &self,
        client: &reqwest::Client,
        name: &str,
    ) -> anyhow::Result<Option<f64>> {
        let text = metrics::fetch(client, &self.base_url()).await?;
        Ok(metrics::value(&text, name))
    }

    /// Waits until it serves a snapshot of `epoch` exactly.
    pub async fn wait_epoch(
        &self,
        client: &reqwest::Client,
        epoch: u64,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let serving = self.metric(client, SNAPSHOT_EPOCH).await?;
            if serving == Some(epoch as f64) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the data plane did not serve epoch {epoch} within {within:?} (it serves {serving:?})"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until its trace spool is empty: every trace acked by a control plane.
    pub async fn wait_spool_drained(
        &self,
        client: &reqwest::Client,
        within: Duration,
    ) -> anyhow::Result<Option<Duration>> {
        metrics::wait_for_spool_drain(client, &self.base_url(), within).await
    }

    /// The spool's depth now, for errors.
    pub async fn spool_depth(&self, client: &reqwest::Client) -> anyhow::Result<Option<f64>> {
        self.metric(client, metrics::SPOOL_DEPTH).await
    }

    /// SIGTERM by PID (it flushes its traces first), SIGKILL after the grace period.
    pub async fn stop(self) -> anyhow::Result<Stopped> {
        let name = self.process.name();
        self.process
            .stop()
            .await
            .with_context(|| format!("stopping the {name}"))
    }
}

/// Polls the data plane's metrics every `every` until it serves an epoch
/// above `old`; returns when the response that showed it arrived.
pub async fn first_above(
    client: reqwest::Client,
    base_url: String,
    old: u64,
    every: Duration,
    deadline: Instant,
) -> anyhow::Result<Instant> {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        ticks.tick().await;
        // A failed read is retried on the next tick: the data plane serves on.
        if let Ok(text) = metrics::fetch(&client, &base_url).await {
            let epoch = metrics::value(&text, SNAPSHOT_EPOCH);
            if epoch.is_some_and(|e| e > old as f64) {
                return Ok(Instant::now());
            }
            last = epoch;
        }
        if Instant::now() >= deadline {
            bail!("the data plane still served epoch {last:?}, not above {old}");
        }
    }
}

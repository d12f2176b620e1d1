//! The benchmark's own etcd: a single member on free loopback ports with its
//! data in the run's temporary directory, so no other process takes part in
//! the election; stopped by its PID at the end, killed when its handle is
//! dropped on a failure path.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::time::Instant;

use super::cluster::{POLL, flags, free_port};
use crate::process::{Process, Spawn, Stopped};

/// A single-member etcd on free loopback ports with its data in a directory.
#[derive(Debug)]
pub struct Etcd {
    process: Process,
    pub endpoint: String,
}

impl Etcd {
    pub async fn start(binary: &Path, dir: &Path, within: Duration) -> anyhow::Result<Self> {
        let (client, peer) = (free_port()?, free_port()?);
        let endpoint = format!("http://{client}");
        let peer_url = format!("http://{peer}");
        let args = [
            ("--name", "bench".to_owned()),
            ("--data-dir", dir.join("etcd-data").display().to_string()),
            ("--listen-client-urls", endpoint.clone()),
            ("--advertise-client-urls", endpoint.clone()),
            ("--listen-peer-urls", peer_url.clone()),
            ("--initial-advertise-peer-urls", peer_url.clone()),
            ("--initial-cluster", format!("bench={peer_url}")),
            ("--initial-cluster-state", "new".to_owned()),
            ("--logger", "zap".to_owned()),
            ("--log-outputs", "stderr".to_owned()),
        ];
        let mut env = Vec::new();
        // etcd 3.4 refuses architectures it calls unsupported unless named.
        if std::env::consts::ARCH == "aarch64" {
            env.push(("ETCD_UNSUPPORTED_ARCH", "arm64".to_owned()));
        }
        let mut process = Process::spawn(Spawn {
            name: "etcd",
            launcher: &[],
            binary,
            args: flags(&args),
            env,
            log: dir.join("etcd.log"),
        })
        .context("starting etcd (is it on PATH? see --etcd)")?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building an HTTP client")?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = process.exited()? {
                bail!(
                    "etcd exited at start ({status}); its log:\n{}",
                    process.log_tail()
                );
            }
            let healthy = match client.get(format!("{endpoint}/health")).send().await {
                Ok(response) => response.text().await.is_ok_and(|t| t.contains("true")),
                Err(_) => false,
            };
            if healthy {
                return Ok(Self { process, endpoint });
            }
            if Instant::now() >= deadline {
                bail!(
                    "etcd was not healthy within {within:?}; its log:\n{}",
                    process.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn stop(self) -> anyhow::Result<Stopped> {
        self.process.stop().await.context("stopping etcd")
    }
}

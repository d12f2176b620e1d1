//! The gateway under test: `switchyard dev` as a child process on free
//! loopback ports. It is stopped by its PID when the benchmark ends, and
//! killed when its handle is dropped on any failure path.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::registry;

/// How long a stopped gateway gets to drain before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A running `switchyard dev`.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    pid: u32,
    http: SocketAddr,
    log: PathBuf,
}

/// How the gateway ended.
#[derive(Debug)]
pub struct Stopped {
    pub status: ExitStatus,
    /// From SIGTERM to exit.
    pub took: Duration,
    /// Whether it had to be killed after [`STOP_GRACE`].
    pub killed: bool,
}

impl Gateway {
    /// Starts `binary dev` with `config`, keeping its database and log in `dir`.
    pub fn start(binary: &Path, config: &Path, dir: &Path) -> anyhow::Result<Gateway> {
        let [http, grpc, cp] = free_ports()?;
        let log = dir.join("gateway.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .arg("dev")
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--http-listen", &http.to_string()])
            .args(["--grpc-listen", &grpc.to_string()])
            .args(["--cp-listen", &cp.to_string()])
            .args(["--log-format", "json"])
            .env("RUST_LOG", "warn")
            .env(registry::KEY_ENV, "bench-key")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the gateway exited at once")?;
        Ok(Gateway {
            child,
            pid,
            http,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Base URL of the OpenAI-compatible HTTP edge, e.g. `http://127.0.0.1:40123`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The gateway's stderr (its JSON log).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Polls `GET /readyz` until it answers 200.
    pub async fn wait_ready(
        &mut self,
        client: &reqwest::Client,
        within: Duration,
    ) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.http_url());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().context("checking the gateway")? {
                bail!(
                    "the gateway exited before it was ready ({status}); its log:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the gateway was not ready within {}s; its log:\n{}",
                    within.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM by PID, then SIGKILL if it has not exited within the grace period.
    pub async fn stop(mut self) -> anyhow::Result<Stopped> {
        let start = Instant::now();
        // Once reaped, its PID may belong to another process: never signal it.
        if let Some(status) = self.child.try_wait().context("checking the gateway")? {
            return Ok(Stopped {
                status,
                took: start.elapsed(),
                killed: false,
            });
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if sent.is_ok_and(|s| s.success())
            && let Ok(status) = tokio::time::timeout(STOP_GRACE, self.child.wait()).await
        {
            return Ok(Stopped {
                status: status.context("waiting for the gateway")?,
                took: start.elapsed(),
                killed: false,
            });
        }
        self.child.kill().await.context("killing the gateway")?;
        let status = self.child.wait().await.context("waiting for the gateway")?;
        Ok(Stopped {
            status,
            took: start.elapsed(),
            killed: true,
        })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Three distinct free loopback ports: all are bound at once so they differ,
/// then released for the gateway to take.
fn free_ports() -> anyhow::Result<[SocketAddr; 3]> {
    let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port");
    let listeners = [bind()?, bind()?, bind()?];
    let mut addrs = [SocketAddr::from((Ipv4Addr::LOCALHOST, 0)); 3];
    for (addr, listener) in addrs.iter_mut().zip(&listeners) {
        *addr = listener.local_addr().context("reading a free port")?;
    }
    Ok(addrs)
}

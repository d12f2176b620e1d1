//! The gateway under test, deployed as in production: the control plane
//! (`switchyard-control-plane`, registry and trace store on SQLite) and the
//! data plane (`switchyard-data-plane`, the gateway itself) as two processes
//! on free loopback ports, the data plane fed by the control plane over gRPC.
//! Both are stopped by their PIDs when the benchmark ends, the data plane
//! first so that it flushes its traces into a control plane still there to
//! store them, and killed when their handles are dropped on any failure path.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::credentials::{self, Credentials};
use crate::process::{Process, Spawn, Stopped};
use crate::registry;

/// The binaries to run and how.
#[derive(Debug)]
pub struct Binaries<'a> {
    pub control_plane: &'a Path,
    pub data_plane: &'a Path,
    /// Programs and arguments put in front of the data plane (e.g. valgrind).
    pub data_plane_launcher: &'a [OsString],
}

/// A running control plane and data plane.
#[derive(Debug)]
pub struct Gateway {
    control_plane: Process,
    data_plane: Process,
    http: SocketAddr,
}

/// How both processes ended.
#[derive(Debug)]
pub struct BothStopped {
    pub data_plane: Stopped,
    pub control_plane: Stopped,
}

impl Gateway {
    /// Starts the control plane with `registry` as its bootstrap, its
    /// SQLite database in `dir` and `credentials`, waits until it listens,
    /// then starts the data plane against it, waits until `GET /readyz`
    /// answers 200 and checks that it accepts the API key `client` sends.
    pub async fn start(
        binaries: &Binaries<'_>,
        registry_yaml: &Path,
        dir: &Path,
        client: &reqwest::Client,
        credentials: &Credentials,
        within: Duration,
    ) -> anyhow::Result<Gateway> {
        let [http, grpc, cp] = free_ports()?;
        let data_dir = dir.join("control-plane");
        let mut control_plane = Process::spawn(Spawn {
            name: "control plane",
            launcher: &[],
            binary: binaries.control_plane,
            args: args(&[
                ("--listen", cp.to_string()),
                ("--metrics-listen", "127.0.0.1:0".to_owned()),
                ("--data-dir", data_dir.display().to_string()),
                ("--bootstrap", registry_yaml.display().to_string()),
                ("--node-id", "bench-cp".to_owned()),
                ("--log-format", "json".to_owned()),
            ]),
            env: [("RUST_LOG", "warn".to_owned())]
                .into_iter()
                .chain(credentials.control_plane_env())
                .collect(),
            log: dir.join("control-plane.log"),
        })?;
        let deadline = Instant::now() + within;
        wait_listening(&mut control_plane, cp, deadline).await?;

        let mut data_plane = Process::spawn(Spawn {
            name: "data plane",
            launcher: binaries.data_plane_launcher,
            binary: binaries.data_plane,
            args: args(&[
                ("--http-listen", http.to_string()),
                ("--grpc-listen", grpc.to_string()),
                ("--control-plane", format!("http://{cp}")),
                ("--node-id", "bench-dp".to_owned()),
                ("--state-dir", dir.join("data-plane").display().to_string()),
                ("--region", "local".to_owned()),
                ("--log-format", "json".to_owned()),
            ]),
            env: vec![
                ("RUST_LOG", "warn".to_owned()),
                (registry::KEY_ENV, "bench-key".to_owned()),
            ],
            log: dir.join("data-plane.log"),
        })?;
        wait_ready(
            &mut data_plane,
            client,
            &format!("http://{http}/readyz"),
            deadline,
        )
        .await?;
        credentials::check_accepted(client, &format!("http://{http}")).await?;
        Ok(Gateway {
            control_plane,
            data_plane,
            http,
        })
    }

    /// The data plane: the gateway whose overhead is measured.
    pub fn pid(&self) -> u32 {
        self.data_plane.pid()
    }

    pub fn control_plane_pid(&self) -> u32 {
        self.control_plane.pid()
    }

    /// Base URL of the data plane's OpenAI-compatible HTTP edge, e.g.
    /// `http://127.0.0.1:40123`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn data_plane_log(&self) -> &Path {
        self.data_plane.log_path()
    }

    pub fn control_plane_log(&self) -> &Path {
        self.control_plane.log_path()
    }

    /// Stops the data plane, then the control plane.
    pub async fn stop(self) -> anyhow::Result<BothStopped> {
        let data_plane = self.data_plane.stop().await;
        let control_plane = self.control_plane.stop().await;
        Ok(BothStopped {
            data_plane: data_plane?,
            control_plane: control_plane?,
        })
    }
}

fn args(pairs: &[(&str, String)]) -> Vec<OsString> {
    pairs
        .iter()
        .flat_map(|(flag, value)| [OsString::from(flag), OsString::from(value)])
        .collect()
}

/// Waits until `addr` accepts TCP connections: the control plane binds its
/// gRPC port once its database is migrated and its bootstrap applied.
async fn wait_listening(
    process: &mut Process,
    addr: SocketAddr,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        check_running(process)?;
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        check_deadline(process, deadline)?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `url` until it answers 200.
async fn wait_ready(
    process: &mut Process,
    client: &reqwest::Client,
    url: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        check_running(process)?;
        if let Ok(response) = client.get(url).send().await
            && response.status() == reqwest::StatusCode::OK
        {
            return Ok(());
        }
        check_deadline(process, deadline)?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn check_running(process: &mut Process) -> anyhow::Result<()> {
    if let Some(status) = process.exited()? {
        bail!(
            "the {} exited before it was ready ({status}); its log:\n{}",
            process.name(),
            process.log_tail()
        );
    }
    Ok(())
}

fn check_deadline(process: &Process, deadline: Instant) -> anyhow::Result<()> {
    if Instant::now() >= deadline {
        bail!(
            "the {} was not ready in time; its log:\n{}",
            process.name(),
            process.log_tail()
        );
    }
    Ok(())
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

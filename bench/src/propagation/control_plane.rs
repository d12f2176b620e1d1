//! The control plane under test: the real `switchyard-control-plane` binary
//! as its own process on a free loopback port, with a fresh SQLite database,
//! a bootstrap registry of one simulated provider and a few models, and the
//! run's credentials (so its snapshots carry an API key, as deployed), and
//! gRPC clients for it holding the admin token. Stopped by its PID at the end; killed when its handle
//! is dropped on a failure path.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use switchyard_proto::v1::cluster_service_client::ClusterServiceClient;
use switchyard_proto::v1::registry_service_client::RegistryServiceClient;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::credentials::{self, Authorized, Credentials};
use crate::process::{Process, Spawn, Stopped};

/// The simulated provider every model belongs to.
pub const PROVIDER: &str = "sim";
/// The model whose price every registry change sets.
pub const CHANGED_MODEL: &str = "sim-model-0";
/// Models in the registry: a small fleet's worth of targets in each snapshot.
pub const MODELS: usize = 5;
/// Longest a gRPC connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Registry YAML: one simulated provider serving `MODELS` models, and the
/// benchmark's API key.
pub fn yaml() -> String {
    let mut yaml = format!(
        "# Written by switchyard-propagation for one run.\n\
         providers:\n  \
           - name: {PROVIDER}\n    \
             kind: simulated\n    \
             simulated: {{ seed: 1, first_token_latency_ms: 40, tokens_per_second: 400, failure_rate: 0.0, output_tokens: 24 }}\n\
         \n\
         models:\n"
    );
    for i in 0..MODELS {
        yaml.push_str(&format!(
            "  - provider: {PROVIDER}\n    \
               name: sim-model-{i}\n    \
               family: sim-family-{i}\n    \
               capabilities: {{ streaming: true, tools: false, vision: false, json_output: true }}\n    \
               context_window: 32768\n    \
               input_price_per_mtok: 0.{i}5\n    \
               output_price_per_mtok: 0.{i}9\n    \
               region: local\n    \
               tier: economy\n"
        ));
    }
    yaml.push_str(credentials::BOOTSTRAP_YAML);
    yaml
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    process: Process,
    addr: SocketAddr,
    credentials: Credentials,
}

impl ControlPlane {
    /// Writes the bootstrap registry into `dir`, starts the control plane
    /// with its database there and waits until it accepts connections.
    pub async fn start(binary: &Path, dir: &Path, within: Duration) -> anyhow::Result<Self> {
        let registry = dir.join("registry.yaml");
        std::fs::write(&registry, yaml())
            .with_context(|| format!("writing {}", registry.display()))?;
        let addr = free_port()?;
        let credentials = Credentials::generate();
        let database: PathBuf = dir.join("switchyard.db");
        let args = [
            ("--listen", addr.to_string()),
            ("--metrics-listen", "127.0.0.1:0".to_owned()),
            (
                "--database-url",
                format!("sqlite://{}?mode=rwc", database.display()),
            ),
            ("--bootstrap", registry.display().to_string()),
            ("--node-id", "bench-cp".to_owned()),
            ("--log-format", "json".to_owned()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [OsString::from(flag), OsString::from(value)])
        .collect();
        let mut process = Process::spawn(Spawn {
            name: "control plane",
            launcher: &[],
            binary,
            args,
            env: [("RUST_LOG", "warn".to_owned())]
                .into_iter()
                .chain(credentials.control_plane_env())
                .collect(),
            log: dir.join("control-plane.log"),
        })?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = process.exited()? {
                bail!(
                    "the control plane exited before it listened ({status}); its log:\n{}",
                    process.log_tail()
                );
            }
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "the control plane did not listen on {addr} within {within:?}; its log:\n{}",
                    process.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            process,
            addr,
            credentials,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// A new HTTP/2 connection to the control plane, as each data plane has its own.
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .context("the control plane's URL")?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to the control plane at {}", self.addr))
    }

    /// Clients of the registry and cluster services, on one connection of
    /// their own, sending the admin token.
    pub async fn operator(
        &self,
    ) -> anyhow::Result<(
        RegistryServiceClient<Authorized>,
        ClusterServiceClient<Authorized>,
    )> {
        let channel = self.connect().await?;
        let admin = self.credentials.admin()?;
        Ok((
            RegistryServiceClient::with_interceptor(channel.clone(), admin.clone()),
            ClusterServiceClient::with_interceptor(channel, admin),
        ))
    }

    /// SIGTERM by PID, SIGKILL after the grace period.
    pub async fn stop(self) -> anyhow::Result<Stopped> {
        let name = self.process.name();
        self.process
            .stop()
            .await
            .with_context(|| format!("stopping the {name}"))
    }
}

/// A free loopback port, released for the control plane to take.
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    listener.local_addr().context("reading a free port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_valid_bootstrap_yaml() {
        let config = switchyard_domain::BootstrapConfig::from_yaml(&yaml()).unwrap();
        assert_eq!(config.models.len(), MODELS);
        assert!(config.models.iter().any(|m| m.name == CHANGED_MODEL));
        assert_eq!(config.api_keys.len(), 1);
    }
}

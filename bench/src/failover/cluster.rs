//! The control planes under test: replicas of the real
//! `switchyard-control-plane` binary on one database, electing a leader
//! through the benchmark's own etcd, each its own process on a free loopback
//! port with its JSON log in a file. A replica can be signalled and started again with the
//! same flags; everything is stopped by its PID at the end and killed when
//! its handle is dropped on a failure path.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::cluster_service_client::ClusterServiceClient;
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::Instant;
use tonic::transport::Endpoint;

use super::etcd::Etcd;
use crate::credentials::{self, Authorized, Credentials};
use crate::process::{Process, Spawn, Stopped};

/// The model every request asks for.
pub const MODEL: &str = "sim-model";

/// The bootstrap registry: one simulated provider answering at once, so the
/// client load costs the data plane little and never fails on its own; the
/// API key is [`credentials::BOOTSTRAP_YAML`], registered by the first replica.
const REGISTRY: &str = "\
# Written by switchyard-failover for one run.
providers:
  - name: sim
    kind: simulated
    simulated: { seed: 1, first_token_latency_ms: 1, tokens_per_second: 5000, failure_rate: 0.0, output_tokens: 4 }
models:
  - provider: sim
    name: sim-model
    family: sim
    capabilities: { streaming: true }
    context_window: 32768
    input_price_per_mtok: 0.1
    output_price_per_mtok: 0.4
    tier: economy
";

/// How often a wait polls.
pub(super) const POLL: Duration = Duration::from_millis(50);

/// A free loopback port, released for a child process to take.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    listener.local_addr().context("reading a free port")
}

/// One control-plane replica: its flags, and its current process if any.
#[derive(Debug)]
pub struct Replica {
    pub node_id: String,
    pub url: String,
    addr: SocketAddr,
    binary: PathBuf,
    args: Vec<OsString>,
    /// Every replica has the same admin token and bootstrap key.
    credentials: Credentials,
    dir: PathBuf,
    process: Option<Process>,
    /// Processes started so far; each one logs to a file of its own.
    lives: usize,
    /// Every log file, oldest first.
    logs: Vec<PathBuf>,
    /// Reconnects by itself after the replica restarts on the same port.
    cluster: StatusClient,
}

impl Replica {
    fn new(
        binary: &Path,
        dir: &Path,
        node_id: String,
        database_url: &str,
        etcd: &str,
        credentials: &Credentials,
    ) -> anyhow::Result<Self> {
        let addr = free_port()?;
        let registry = dir.join("registry.yaml");
        let args = [
            ("--listen", addr.to_string()),
            // Several replicas on one host: each its own metrics port.
            ("--metrics-listen", "127.0.0.1:0".to_owned()),
            ("--database-url", database_url.to_owned()),
            ("--bootstrap", registry.display().to_string()),
            ("--node-id", node_id.clone()),
            ("--etcd-endpoints", etcd.to_owned()),
            ("--log-format", "json".to_owned()),
        ];
        let url = format!("http://{addr}");
        let channel = Endpoint::from_shared(url.clone())
            .context("a control plane's URL")?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            node_id,
            url,
            addr,
            binary: binary.to_owned(),
            args: flags(&args),
            credentials: credentials.clone(),
            dir: dir.to_owned(),
            process: None,
            lives: 0,
            logs: Vec::new(),
            cluster: StatusClient(ClusterServiceClient::with_interceptor(
                channel,
                credentials.admin()?,
            )),
        })
    }

    /// Starts a new process with the replica's flags and waits until it listens.
    pub async fn start(&mut self, within: Duration) -> anyhow::Result<()> {
        ensure!(
            self.process.is_none(),
            "{} is already running",
            self.node_id
        );
        self.lives += 1;
        let log = self
            .dir
            .join(format!("{}.{}.log", self.node_id, self.lives));
        self.logs.push(log.clone());
        let mut process = Process::spawn(Spawn {
            name: "control plane",
            launcher: &[],
            binary: &self.binary,
            args: self.args.clone(),
            env: [("RUST_LOG", "info".to_owned())]
                .into_iter()
                .chain(self.credentials.control_plane_env())
                .collect(),
            log,
        })?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = process.exited()? {
                bail!(
                    "{} exited before it listened ({status}); its log:\n{}",
                    self.node_id,
                    process.log_tail()
                );
            }
            if TcpStream::connect(self.addr).await.is_ok() {
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not listen on {} within {within:?}; its log:\n{}",
                    self.node_id,
                    self.addr,
                    process.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends a signal by name (KILL, TERM) to the running process.
    pub async fn signal(&self, name: &str) -> anyhow::Result<()> {
        let process = self.running()?;
        let sent = Command::new("kill")
            .args(["-s", name, &process.pid().to_string()])
            .status()
            .await
            .context("running kill(1)")?;
        ensure!(
            sent.success(),
            "kill -s {name} {} ({}) failed",
            process.pid(),
            self.node_id
        );
        Ok(())
    }

    /// Waits until the signalled process has exited; returns when it had.
    pub async fn wait_exit(&mut self, within: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + within;
        let Some(process) = self.process.as_mut() else {
            bail!("{} is not running", self.node_id);
        };
        loop {
            if process.exited()?.is_some() {
                self.process = None;
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} ({}) had not exited {within:?} after the signal; its log:\n{}",
                    self.node_id,
                    process.name(),
                    process.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Its answer to `ClusterService/Status`; `None` while it does not answer.
    pub async fn status(&self) -> Option<pb::StatusResponse> {
        self.cluster.status().await
    }

    /// A client of its `ClusterService`, for a task of its own.
    pub fn status_client(&self) -> StatusClient {
        self.cluster.clone()
    }

    pub fn logs(&self) -> &[PathBuf] {
        &self.logs
    }

    fn running(&self) -> anyhow::Result<&Process> {
        self.process
            .as_ref()
            .with_context(|| format!("{} is not running", self.node_id))
    }

    /// SIGTERM by PID, SIGKILL after the grace period; `None` if it was not running.
    async fn stop(&mut self) -> anyhow::Result<Option<Stopped>> {
        match self.process.take() {
            Some(process) => {
                let stopped = process
                    .stop()
                    .await
                    .with_context(|| format!("stopping {}", self.node_id))?;
                Ok(Some(stopped))
            }
            None => Ok(None),
        }
    }
}

/// `ClusterService/Status` of one replica, on a connection that is opened
/// on first use and again after the replica restarts.
#[derive(Debug, Clone)]
pub struct StatusClient(ClusterServiceClient<Authorized>);

impl StatusClient {
    /// `None` while the replica does not answer.
    pub async fn status(&self) -> Option<pb::StatusResponse> {
        let mut client = self.0.clone();
        client
            .status(pb::StatusRequest {})
            .await
            .ok()
            .map(tonic::Response::into_inner)
    }
}

/// Who leads, as every replica asked agrees.
#[derive(Debug, Clone)]
pub struct Leader {
    pub index: usize,
    pub node_id: String,
    pub epoch: u64,
}

/// etcd and the control-plane replicas.
#[derive(Debug)]
pub struct Cluster {
    etcd: Option<Etcd>,
    pub replicas: Vec<Replica>,
}

impl Cluster {
    /// Starts etcd, then `count` replicas (cp-1 … cp-N) one after another on
    /// one database, all with `credentials`.
    pub async fn start(
        control_plane: &Path,
        etcd: &Path,
        dir: &Path,
        database_url: &str,
        count: usize,
        credentials: &Credentials,
        within: Duration,
    ) -> anyhow::Result<Self> {
        let registry = dir.join("registry.yaml");
        std::fs::write(
            &registry,
            format!("{REGISTRY}{}", credentials::BOOTSTRAP_YAML),
        )
        .with_context(|| format!("writing {}", registry.display()))?;
        let etcd = Etcd::start(etcd, dir, within).await?;
        let mut cluster = Self {
            replicas: Vec::with_capacity(count),
            etcd: None,
        };
        for i in 1..=count {
            let node_id = format!("cp-{i}");
            let mut replica = Replica::new(
                control_plane,
                dir,
                node_id,
                database_url,
                &etcd.endpoint,
                credentials,
            )?;
            replica.start(within).await?;
            cluster.replicas.push(replica);
        }
        cluster.etcd = Some(etcd);
        Ok(cluster)
    }

    /// Every replica's URL, in order.
    pub fn urls(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.url.clone()).collect()
    }

    /// Waits until every replica answers, lists all of them as registered
    /// and agrees on one leader; returns that leader.
    pub async fn wait_until_whole(&self, within: Duration) -> anyhow::Result<Leader> {
        let all: Vec<usize> = (0..self.replicas.len()).collect();
        let deadline = Instant::now() + within;
        loop {
            let statuses = self.statuses(&all).await;
            let listed = statuses.iter().all(|(_, s)| {
                s.as_ref()
                    .is_some_and(|s| s.replicas.len() == self.replicas.len())
            });
            if listed && let Some(leader) = agreed_leader(&statuses, 0)? {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the cluster did not list all {} replicas with one leader within {within:?}: {}",
                    self.replicas.len(),
                    describe(&statuses)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Which replica the data plane `node_id` streams snapshots from, if any says so.
    pub async fn serving(&self, node_id: &str) -> Option<String> {
        for replica in &self.replicas {
            if let Some(status) = replica.status().await
                && status.data_planes.iter().any(|d| d.node_id == node_id)
            {
                return Some(replica.node_id.clone());
            }
        }
        None
    }

    async fn statuses(&self, among: &[usize]) -> Vec<(usize, Option<pb::StatusResponse>)> {
        let mut statuses = Vec::with_capacity(among.len());
        for &i in among {
            let status = match self.replicas.get(i) {
                Some(replica) => replica.status().await,
                None => None,
            };
            statuses.push((i, status));
        }
        statuses
    }

    /// Stops every replica, then etcd; each one's name and how it ended.
    pub async fn stop(mut self) -> Vec<(String, anyhow::Result<Stopped>)> {
        let mut stopped = Vec::new();
        for replica in &mut self.replicas {
            if let Some(result) = replica.stop().await.transpose() {
                stopped.push((replica.node_id.clone(), result));
            }
        }
        if let Some(etcd) = self.etcd.take() {
            stopped.push(("etcd".to_owned(), etcd.stop().await));
        }
        stopped
    }
}

/// The one leader above `above` all answering replicas agree on, if every
/// replica asked answers; an error if two say they lead.
fn agreed_leader(
    statuses: &[(usize, Option<pb::StatusResponse>)],
    above: u64,
) -> anyhow::Result<Option<Leader>> {
    if statuses.iter().any(|(_, s)| s.is_none()) {
        return Ok(None);
    }
    let leading: Vec<(usize, &pb::StatusResponse)> = statuses
        .iter()
        .filter_map(|(i, s)| s.as_ref().map(|s| (*i, s)))
        .filter(|(_, s)| s.role == i32::from(pb::Role::Leader))
        .collect();
    let [(index, status)] = leading[..] else {
        ensure!(
            leading.len() <= 1,
            "two replicas say they lead at once: {}",
            describe(statuses)
        );
        return Ok(None);
    };
    let agreed = statuses
        .iter()
        .filter_map(|(_, s)| s.as_ref())
        .all(|s| s.leader == status.node_id && s.epoch == status.epoch);
    Ok((agreed && status.epoch > above).then(|| Leader {
        index,
        node_id: status.node_id.clone(),
        epoch: status.epoch,
    }))
}

/// Each replica's view, in a line, for errors.
fn describe(statuses: &[(usize, Option<pb::StatusResponse>)]) -> String {
    statuses
        .iter()
        .map(|(i, s)| match s {
            Some(s) => format!(
                "[{}: role {}, leader {:?} at epoch {}, {} replicas listed, snapshot {} at epoch {}{}]",
                s.node_id,
                s.role,
                s.leader,
                s.epoch,
                s.replicas.len(),
                s.snapshot_version,
                s.snapshot_epoch,
                if s.election_error.is_empty() {
                    String::new()
                } else {
                    format!(", election error: {}", s.election_error)
                }
            ),
            None => format!("[replica {}: no answer]", i + 1),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn flags(pairs: &[(&str, String)]) -> Vec<OsString> {
    pairs
        .iter()
        .flat_map(|(flag, value)| [OsString::from(flag), OsString::from(value)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(node: &str, role: pb::Role, leader: &str, epoch: u64) -> pb::StatusResponse {
        pb::StatusResponse {
            node_id: node.to_owned(),
            role: i32::from(role),
            leader: leader.to_owned(),
            epoch,
            ..Default::default()
        }
    }

    #[test]
    fn the_registry_is_valid_bootstrap_yaml() {
        let yaml = format!("{REGISTRY}{}", credentials::BOOTSTRAP_YAML);
        let config = switchyard_domain::BootstrapConfig::from_yaml(&yaml).unwrap();
        assert!(config.models.iter().any(|m| m.name == MODEL));
        assert_eq!(config.api_keys.len(), 1);
    }

    #[test]
    fn a_leader_counts_once_every_replica_agrees() {
        let agreed = [
            (0, Some(status("cp-1", pb::Role::Follower, "cp-2", 7))),
            (1, Some(status("cp-2", pb::Role::Leader, "cp-2", 7))),
        ];
        let leader = agreed_leader(&agreed, 0).unwrap().unwrap();
        assert_eq!(
            (leader.index, leader.node_id.as_str(), leader.epoch),
            (1, "cp-2", 7)
        );
        assert!(agreed_leader(&agreed, 7).unwrap().is_none());

        let behind = [
            (0, Some(status("cp-1", pb::Role::Follower, "cp-3", 5))),
            (1, Some(status("cp-2", pb::Role::Leader, "cp-2", 7))),
        ];
        assert!(agreed_leader(&behind, 0).unwrap().is_none());
        let silent = [
            (0, None),
            (1, Some(status("cp-2", pb::Role::Leader, "cp-2", 7))),
        ];
        assert!(agreed_leader(&silent, 0).unwrap().is_none());
        let two = [
            (0, Some(status("cp-1", pb::Role::Leader, "cp-1", 5))),
            (1, Some(status("cp-2", pb::Role::Leader, "cp-2", 7))),
        ];
        assert!(agreed_leader(&two, 0).is_err());
    }
}

//! The pieces of `switchyard-failover`: the control-plane replicas and their
//! etcd, the data plane and the client load on it, the raw subscribers on
//! every replica, one timed failover, and the report.

pub mod cluster;
pub mod data_plane;
pub mod etcd;
pub mod report;
pub mod runs;
pub mod subscribers;
pub mod traffic;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::time::Instant;

use crate::credentials::{self, Credentials};
use crate::process::Stopped;
use cluster::Cluster;
use data_plane::DataPlane;
use runs::{Mode, Run, Stage};
use subscribers::Subscriber;
use traffic::{Tally, Traffic};

/// What to run and how.
#[derive(Debug)]
pub struct Plan {
    pub control_plane: PathBuf,
    pub data_plane: PathBuf,
    pub etcd: PathBuf,
    pub replicas: usize,
    pub runs: usize,
    pub modes: Vec<Mode>,
    /// Client requests a second on the data plane.
    pub rate: u32,
    pub max_in_flight: usize,
    /// Longest wait for anything.
    pub within: Duration,
    /// How often the data plane's metrics and the survivors' status are read.
    pub poll: Duration,
    /// Load before the first run.
    pub warmup: Duration,
    /// Pause after a run, once the cluster is whole again.
    pub settle: Duration,
    /// Longest wait for the data plane's trace spool to empty at the end.
    pub drain_within: Duration,
}

/// Everything started, so it can be stopped in order however the run ends.
#[derive(Debug, Default)]
pub struct Deployment {
    cluster: Option<Cluster>,
    data_plane: Option<DataPlane>,
}

impl Deployment {
    /// Every control-plane log file, every life of every replica.
    pub fn control_plane_logs(&self) -> Vec<PathBuf> {
        self.cluster
            .iter()
            .flat_map(|c| &c.replicas)
            .flat_map(|r| r.logs().iter().cloned())
            .collect()
    }

    pub fn data_plane_log(&self) -> Option<PathBuf> {
        self.data_plane.as_ref().map(|d| d.log_path().to_owned())
    }

    /// Stops the data plane first (it flushes its traces to a control plane
    /// still there), then the replicas, then etcd.
    pub async fn stop(&mut self) -> Vec<(String, anyhow::Result<Stopped>)> {
        let mut stopped = Vec::new();
        if let Some(data_plane) = self.data_plane.take() {
            stopped.push(("data plane".to_owned(), data_plane.stop().await));
        }
        if let Some(cluster) = self.cluster.take() {
            stopped.extend(cluster.stop().await);
        }
        stopped
    }
}

/// Trace rows of the requests served.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traces {
    pub served: usize,
    /// Served requests with a trace row.
    pub stored: usize,
    /// Rows in the table, whatever request they are for.
    pub rows: usize,
    /// Distinct request ids among them.
    pub requests: usize,
    /// Traces the data plane dropped because its spool was full.
    pub dropped: Option<f64>,
    /// From the end of the load until the data plane's spool was empty.
    pub drained_in: Option<Duration>,
}

impl Traces {
    pub fn lost(&self) -> usize {
        self.served.saturating_sub(self.stored)
    }

    /// Rows beyond one per request.
    pub fn duplicated(&self) -> usize {
        self.rows.saturating_sub(self.requests)
    }
}

/// What a whole benchmark found.
#[derive(Debug)]
pub struct Measured {
    pub runs: Vec<Run>,
    pub tally: Tally,
    pub traces: Traces,
}

/// Starts etcd, the replicas, the data plane, the subscribers and the load,
/// times `plan.runs` failovers of each mode, then stops the load and counts
/// the trace rows of the requests served.
pub async fn measure(
    deployment: &mut Deployment,
    dir: &Path,
    database_url: &str,
    plan: &Plan,
) -> anyhow::Result<Measured> {
    let within = plan.within;
    let credentials = Credentials::generate();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("building the HTTP client")?;
    let cluster = deployment.cluster.insert(
        Cluster::start(
            &plan.control_plane,
            &plan.etcd,
            dir,
            database_url,
            plan.replicas,
            &credentials,
            within,
        )
        .await?,
    );
    let leader = cluster.wait_until_whole(within).await?;
    eprintln!(
        "{} control planes up, {} leads at epoch {}",
        cluster.replicas.len(),
        leader.node_id,
        leader.epoch
    );
    let data_plane = deployment
        .data_plane
        .insert(DataPlane::start(&plan.data_plane, dir, &cluster.urls(), &client, within).await?);
    let mut subscribers = Vec::with_capacity(cluster.replicas.len());
    for replica in &cluster.replicas {
        subscribers.push(
            Subscriber::connect(
                &replica.node_id,
                &replica.url,
                &runs::subscriber_id(replica),
                within,
            )
            .await?,
        );
    }
    let load_client = credentials
        .with_api_key(reqwest::Client::builder())?
        .pool_max_idle_per_host(plan.max_in_flight)
        .build()
        .context("building the load's HTTP client")?;
    credentials::check_accepted(&load_client, &data_plane.base_url()).await?;
    let traffic = Traffic::start(
        load_client,
        data_plane.chat_url(),
        plan.rate,
        plan.max_in_flight,
    );
    eprintln!(
        "data plane ready, {} requests/s on it; {} runs of each of {}",
        plan.rate,
        plan.runs,
        plan.modes
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    tokio::time::sleep(plan.warmup).await;

    let mut stage = Stage {
        cluster,
        subscribers: &mut subscribers,
        data_plane,
        client: &client,
        within,
        poll: plan.poll,
    };
    let mut done = Vec::with_capacity(plan.runs * plan.modes.len());
    for &mode in &plan.modes {
        for i in 1..=plan.runs {
            let run = runs::once(&mut stage, mode)
                .await
                .with_context(|| format!("{} run {i} of {}", mode.name(), plan.runs))?;
            eprintln!(
                "{} {i}/{}: {} -> {} (epoch {} -> {}); first snapshot {} ms, all {} ms, \
                 data plane {} ms, status {} ms",
                mode.name(),
                plan.runs,
                run.old_leader,
                run.new_leader,
                run.old_epoch,
                run.new_epoch,
                run.first_snapshot.as_millis(),
                run.all_snapshots.as_millis(),
                run.data_plane.as_millis(),
                run.status.as_millis(),
            );
            done.push(run);
            tokio::time::sleep(plan.settle).await;
        }
    }

    let tally = traffic.stop().await?;
    eprintln!(
        "load stopped: {} served, {} failed; waiting for the trace spool to empty",
        tally.served.len(),
        tally.failed
    );
    drop(subscribers);
    let drained_in = data_plane
        .wait_spool_drained(&client, plan.drain_within)
        .await?;
    if drained_in.is_none() {
        let depth = data_plane.spool_depth(&client).await.ok().flatten();
        eprintln!(
            "the data plane's trace spool was not empty after {:?} (depth {depth:?})",
            plan.drain_within
        );
    }
    let dropped = data_plane
        .metric(&client, data_plane::TRACES_DROPPED)
        .await?;
    let mut traces = count_traces(database_url, &tally.served, within).await?;
    traces.dropped = dropped;
    traces.drained_in = drained_in;
    Ok(Measured {
        runs: done,
        tally,
        traces,
    })
}

/// Counts the rows of the served trace ids, waiting up to `within` for all
/// of them, and the rows and distinct requests in the whole table.
async fn count_traces(
    database_url: &str,
    served: &[String],
    within: Duration,
) -> anyhow::Result<Traces> {
    let pool = sqlx::PgPool::connect(database_url)
        .await
        .context("connecting to the benchmark's database")?;
    let deadline = Instant::now() + within;
    let stored = loop {
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM traces WHERE trace_id = ANY($1)")
                .bind(served)
                .fetch_one(&pool)
                .await
                .context("counting trace rows")?;
        let stored = usize::try_from(stored).context("a negative count")?;
        if stored >= served.len() || Instant::now() >= deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (rows, requests): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT request_id) FROM traces")
            .fetch_one(&pool)
            .await
            .context("counting trace rows")?;
    pool.close().await;
    if stored > served.len() {
        bail!("{stored} rows for {} trace ids", served.len());
    }
    Ok(Traces {
        served: served.len(),
        stored,
        rows: usize::try_from(rows).context("a negative count")?,
        requests: usize::try_from(requests).context("a negative count")?,
        dropped: None,
        drained_in: None,
    })
}

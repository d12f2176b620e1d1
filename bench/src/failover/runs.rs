//! One failover: the leader is stopped by a signal and four things are timed
//! from that signal, each watched concurrently from before it is sent:
//!
//! - the first snapshot of a higher epoch on a surviving replica's subscriber
//!   (the new leader's first snapshot reaching anyone),
//! - the same on every surviving replica's subscriber,
//! - the data plane's `/metrics` showing the higher epoch (polled),
//! - `ClusterService/Status` on a survivor naming a new leader (polled).
//!
//! Then the stopped replica is started again with the same flags, a
//! subscriber reconnected to it, and the run waits until every replica lists
//! all of them again.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use switchyard_proto::v1 as pb;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cluster::{Cluster, Replica, StatusClient};
use super::data_plane::{self, DataPlane, NODE_ID};
use super::subscribers::Subscriber;

/// How the leader is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// SIGKILL: the leader vanishes without a word; its lease must expire.
    Kill,
    /// SIGTERM: the leader resigns and revokes its lease as it shuts down.
    Term,
}

impl Mode {
    pub fn signal(self) -> &'static str {
        match self {
            Mode::Kill => "KILL",
            Mode::Term => "TERM",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Kill => "kill",
            Mode::Term => "term",
        }
    }
}

/// What one failover took, each time from the signal.
#[derive(Debug, Clone)]
pub struct Run {
    pub mode: Mode,
    pub old_leader: String,
    pub old_epoch: u64,
    pub new_leader: String,
    pub new_epoch: u64,
    /// The replica the data plane streamed snapshots from at the signal.
    pub data_plane_on: Option<String>,
    /// To the first snapshot of a higher epoch on a surviving replica's subscriber.
    pub first_snapshot: Duration,
    /// To the same on every surviving replica's subscriber.
    pub all_snapshots: Duration,
    /// To the data plane's metrics showing the higher epoch.
    pub data_plane: Duration,
    /// To `Status` on a survivor naming the new leader.
    pub status: Duration,
    /// To the old leader's process having exited.
    pub exited: Duration,
}

/// The parts of the deployment a run works on.
#[derive(Debug)]
pub struct Stage<'a> {
    pub cluster: &'a mut Cluster,
    /// One per replica, in replica order.
    pub subscribers: &'a mut [Subscriber],
    pub data_plane: &'a DataPlane,
    pub client: &'a reqwest::Client,
    /// Longest wait for anything.
    pub within: Duration,
    /// How often the data plane's metrics and the survivors' status are read.
    pub poll: Duration,
}

/// The node id of the subscriber on `replica`.
pub fn subscriber_id(replica: &Replica) -> String {
    format!("bench-watch-{}", replica.node_id)
}

/// Stops the leader with `mode`'s signal, times the failover, and brings the
/// stopped replica back.
pub async fn once(stage: &mut Stage<'_>, mode: Mode) -> anyhow::Result<Run> {
    let within = stage.within;
    let leader = stage.cluster.wait_until_whole(within).await?;
    for subscriber in stage.subscribers.iter() {
        subscriber.watch().wait_epoch(leader.epoch, within).await?;
    }
    stage
        .data_plane
        .wait_epoch(stage.client, leader.epoch, within)
        .await?;
    let data_plane_on = stage.cluster.serving(NODE_ID).await;
    let survivors: Vec<usize> = (0..stage.cluster.replicas.len())
        .filter(|&i| i != leader.index)
        .collect();

    // Everything that is timed is watched before the signal.
    let deadline = Instant::now() + within;
    let subscribers: Vec<(String, JoinHandle<anyhow::Result<Instant>>)> = survivors
        .iter()
        .filter_map(|&i| stage.subscribers.get(i))
        .map(|s| {
            let watch = s.watch();
            let replica = watch.replica.clone();
            (
                replica,
                tokio::spawn(watch.first_above(leader.epoch, deadline)),
            )
        })
        .collect();
    let data_plane = tokio::spawn(data_plane::first_above(
        stage.client.clone(),
        stage.data_plane.base_url(),
        leader.epoch,
        stage.poll,
        deadline,
    ));
    let status = tokio::spawn(new_leader_named(
        survivors
            .iter()
            .filter_map(|&i| stage.cluster.replicas.get(i))
            .map(Replica::status_client)
            .collect(),
        leader.node_id.clone(),
        leader.epoch,
        stage.poll,
        deadline,
    ));

    let stopped = stage
        .cluster
        .replicas
        .get_mut(leader.index)
        .context("the leader's replica")?;
    stopped.signal(mode.signal()).await?;
    // kill(1) has exited, so the signal has been sent.
    let t0 = Instant::now();
    let exited = stopped.wait_exit(within).await?;

    let mut received = Vec::with_capacity(subscribers.len());
    for (replica, task) in subscribers {
        let at = joined(task)
            .await
            .with_context(|| format!("waiting for the new leader's first snapshot on {replica}"))?;
        received.push(at);
    }
    let first = received.iter().min().copied().context("no survivor")?;
    let last = received.iter().max().copied().context("no survivor")?;
    let data_plane = joined(data_plane).await.with_context(|| {
        format!(
            "waiting for the data plane to serve the new leader's snapshot; its log:\n{}",
            stage.data_plane.log_tail()
        )
    })?;
    let (status, new_leader, new_epoch) = joined(status)
        .await
        .context("waiting for a survivor's Status to name the new leader")?;

    // Back to three replicas: the same flags, a fresh process.
    let stopped = stage
        .cluster
        .replicas
        .get_mut(leader.index)
        .context("the leader's replica")?;
    stopped.start(within).await?;
    let subscriber = Subscriber::connect(
        &stopped.node_id,
        &stopped.url,
        &subscriber_id(stopped),
        within,
    )
    .await?;
    if let Some(slot) = stage.subscribers.get_mut(leader.index) {
        *slot = subscriber;
    }
    stage.cluster.wait_until_whole(within).await?;

    Ok(Run {
        mode,
        old_leader: leader.node_id,
        old_epoch: leader.epoch,
        new_leader,
        new_epoch,
        data_plane_on,
        first_snapshot: first.saturating_duration_since(t0),
        all_snapshots: last.saturating_duration_since(t0),
        data_plane: data_plane.saturating_duration_since(t0),
        status: status.saturating_duration_since(t0),
        exited: exited.saturating_duration_since(t0),
    })
}

async fn joined<T>(task: JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    task.await.map_err(|e| anyhow!("the task failed: {e}"))?
}

/// Polls the survivors' `Status` every `every` until one names a leader
/// other than `old` at an epoch above `old_epoch`; returns when that answer
/// arrived, the leader and its epoch.
async fn new_leader_named(
    survivors: Vec<StatusClient>,
    old: String,
    old_epoch: u64,
    every: Duration,
    deadline: Instant,
) -> anyhow::Result<(Instant, String, u64)> {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Vec<String> = Vec::new();
    loop {
        ticks.tick().await;
        last.clear();
        for survivor in &survivors {
            match survivor.status().await {
                Some(s) if names_new_leader(&s, &old, old_epoch) => {
                    return Ok((Instant::now(), s.leader, s.epoch));
                }
                Some(s) => last.push(format!(
                    "{} names {:?} at epoch {}",
                    s.node_id, s.leader, s.epoch
                )),
                None => last.push("no answer".to_owned()),
            }
        }
        if Instant::now() >= deadline {
            bail!("no survivor named a new leader: {}", last.join("; "));
        }
    }
}

fn names_new_leader(status: &pb::StatusResponse, old: &str, old_epoch: u64) -> bool {
    !status.leader.is_empty() && status.leader != old && status.epoch > old_epoch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_leader_has_another_name_and_a_higher_epoch() {
        let status = |leader: &str, epoch| pb::StatusResponse {
            leader: leader.to_owned(),
            epoch,
            ..Default::default()
        };
        assert!(names_new_leader(&status("cp-2", 9), "cp-1", 7));
        assert!(!names_new_leader(&status("cp-1", 7), "cp-1", 7));
        assert!(!names_new_leader(&status("", 0), "cp-1", 7));
        assert!(!names_new_leader(&status("cp-2", 7), "cp-1", 7));
    }
}

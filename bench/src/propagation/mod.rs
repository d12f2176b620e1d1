//! The pieces of `switchyard-propagation`: the control plane it runs, the
//! simulated data planes that subscribe to it, the registry changes it times,
//! the in-process aggregation throughput measurement, and the report.

pub mod aggregation;
pub mod changes;
pub mod control_plane;
pub mod report;
pub mod subscribers;

use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

use crate::procfs;
use changes::{CrossCheck, Plan, Propagated};
use control_plane::ControlPlane;
use subscribers::Subscribers;

/// What the propagation measurement found.
#[derive(Debug)]
pub struct Measured {
    pub propagated: Vec<Propagated>,
    pub versions_seen: usize,
    pub snapshot_bytes: usize,
    pub control_plane_cpu: Duration,
    pub bench_cpu: Duration,
    pub measured_wall: Duration,
    pub cross_check: CrossCheck,
}

/// Connects `subscribers` simulated data planes, makes the planned registry
/// changes one at a time and traces each one to the ACK of every subscriber.
pub async fn measure(
    control_plane: &ControlPlane,
    subscribers: usize,
    warmup: usize,
    measured: usize,
    plan: Plan,
    ready_within: Duration,
) -> anyhow::Result<Measured> {
    let mut subs = Subscribers::start(control_plane, subscribers, ready_within).await?;
    let nodes: Vec<String> = subs.all.iter().map(|s| s.node_id.clone()).collect();
    let (mut registry, mut cluster) = control_plane.operator().await?;
    eprintln!(
        "{subscribers} subscribers connected to the control plane (pid {}); making {measured} \
         changes after {warmup} unmeasured ones",
        control_plane.pid(),
    );

    changes::run(plan, 1..=warmup, &mut registry, &mut cluster, &mut subs).await?;
    let cpu_before = (
        procfs::cpu_time(control_plane.pid())?,
        procfs::cpu_time(std::process::id())?,
    );
    let wall = Instant::now();
    let made = changes::run(
        plan,
        warmup + 1..=warmup + measured,
        &mut registry,
        &mut cluster,
        &mut subs,
    )
    .await?;
    let measured_wall = wall.elapsed();
    let cpu_after = (
        procfs::cpu_time(control_plane.pid())?,
        procfs::cpu_time(std::process::id())?,
    );
    let cross_check = changes::cross_check(&mut cluster, &nodes).await?;
    let logs = subs.stop().await?;

    let propagated = made
        .iter()
        .map(|change| changes::propagated(change, &logs))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("tracing the changes to the subscribers' ACKs")?;
    let first = made.first().map(|c| c.start);
    let versions_seen = logs.first().map_or(0, |(_, log)| {
        log.iter()
            .filter(|a| first.is_some_and(|f| a.received >= f))
            .count()
    });
    let snapshot_bytes = logs
        .first()
        .and_then(|(_, log)| log.last())
        .map_or(0, |a| a.bytes);
    Ok(Measured {
        propagated,
        versions_seen,
        snapshot_bytes,
        control_plane_cpu: cpu_after.0.saturating_sub(cpu_before.0),
        bench_cpu: cpu_after.1.saturating_sub(cpu_before.1),
        measured_wall,
        cross_check,
    })
}

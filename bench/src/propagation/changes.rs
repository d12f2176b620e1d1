//! The registry changes whose propagation is timed: one at a time, each the
//! changed model's input price set to a value never used before through
//! `RegistryService.UpdateModel`, then a wait until every subscriber has
//! acknowledged the snapshot the control plane published for it.

use std::time::Duration;

use anyhow::{Context as _, bail};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::cluster_service_client::ClusterServiceClient;
use switchyard_proto::v1::registry_service_client::RegistryServiceClient;
use tokio::time::Instant;

use super::control_plane::{CHANGED_MODEL, PROVIDER};
use super::subscribers::{Acked, REGION, Subscribers};
use crate::credentials::Authorized;

/// Longest a registry or cluster RPC may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the cross-check at the end waits for the cluster status to settle.
const STATUS_SETTLE: Duration = Duration::from_secs(5);

/// How the changes are made.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Quiet time after every subscriber has acknowledged a change, before the next.
    pub pause: Duration,
    /// Longest wait for every subscriber to acknowledge one change.
    pub ack_timeout: Duration,
}

/// One registry change as the operator saw it.
#[derive(Debug, Clone, Copy)]
pub struct Change {
    /// The price it set: the mark of the snapshots that carry it.
    pub price: f64,
    /// Just before the call.
    pub start: Instant,
    /// When the call returned (the control plane had published its snapshot).
    pub returned: Instant,
    /// `ClusterService.Status.snapshot_version` right after the call returned.
    pub status_version: u64,
}

/// The price change `k` (counting from 1) sets: distinct from every other
/// change's and from the bootstrap prices.
fn price(k: usize) -> f64 {
    1.0 + k as f64 / 1000.0
}

/// Makes changes `numbers` (counting from 1 over the whole run, so every one
/// sets a price of its own), each measured alone.
pub async fn run(
    plan: Plan,
    numbers: std::ops::RangeInclusive<usize>,
    registry: &mut RegistryServiceClient<Authorized>,
    cluster: &mut ClusterServiceClient<Authorized>,
    subscribers: &mut Subscribers,
) -> anyhow::Result<Vec<Change>> {
    let mut model = tokio::time::timeout(
        RPC_TIMEOUT,
        registry.get_model(pb::GetModelRequest {
            provider: PROVIDER.to_owned(),
            name: CHANGED_MODEL.to_owned(),
        }),
    )
    .await
    .context("GetModel timed out")?
    .context("GetModel")?
    .into_inner();
    let mut changes = Vec::new();
    for k in numbers {
        model.input_price_per_mtok = price(k);
        let start = Instant::now();
        tokio::time::timeout(
            RPC_TIMEOUT,
            registry.update_model(pb::UpdateModelRequest {
                model: Some(model.clone()),
            }),
        )
        .await
        .with_context(|| format!("UpdateModel (change {k}) timed out after {RPC_TIMEOUT:?}"))?
        .with_context(|| format!("UpdateModel (change {k})"))?;
        let returned = Instant::now();
        let status_version = status(cluster).await?.snapshot_version;
        subscribers
            .wait_all_acked(status_version, plan.ack_timeout)
            .await
            .with_context(|| format!("change {k}"))?;
        changes.push(Change {
            price: price(k),
            start,
            returned,
            status_version,
        });
        tokio::time::sleep(plan.pause).await;
    }
    Ok(changes)
}

async fn status(
    cluster: &mut ClusterServiceClient<Authorized>,
) -> anyhow::Result<pb::StatusResponse> {
    Ok(
        tokio::time::timeout(RPC_TIMEOUT, cluster.status(pb::StatusRequest {}))
            .await
            .context("ClusterService.Status timed out")?
            .context("ClusterService.Status")?
            .into_inner(),
    )
}

/// What one change took to reach every subscriber.
#[derive(Debug, Clone, Copy)]
pub struct Propagated {
    /// The first snapshot version that carried it.
    pub version: u64,
    /// From the call's start until the call returned.
    pub call: Duration,
    /// From the call's start until the first subscriber acknowledged it.
    pub first_ack: Duration,
    /// From the call's start until the last subscriber acknowledged it: the
    /// propagation time.
    pub last_ack: Duration,
    /// Longest time a subscriber took from receiving the snapshot to its ACK.
    pub apply_max: Duration,
}

/// Traces every change to the first snapshot that carried its price on each
/// subscriber. Every subscriber must have acknowledged one, and the same version.
pub fn propagated(change: &Change, logs: &[(String, Vec<Acked>)]) -> anyhow::Result<Propagated> {
    let mut version = None;
    let mut first = None::<Instant>;
    let mut last = None::<Instant>;
    let mut apply_max = Duration::ZERO;
    for (node, log) in logs {
        let Some(acked) = log
            .iter()
            .find(|a| a.price.is_some_and(|p| (p - change.price).abs() < 1e-9))
        else {
            bail!(
                "subscriber {node} never acknowledged a snapshot with price {}",
                change.price
            );
        };
        match version {
            None => version = Some(acked.version),
            Some(v) if v != acked.version => bail!(
                "the change to price {} reached subscribers in different versions ({v} and {} on {node})",
                change.price,
                acked.version
            ),
            Some(_) => {}
        }
        first = Some(first.map_or(acked.acked, |f| f.min(acked.acked)));
        last = Some(last.map_or(acked.acked, |l| l.max(acked.acked)));
        apply_max = apply_max.max(acked.acked.duration_since(acked.received));
    }
    let (Some(version), Some(first), Some(last)) = (version, first, last) else {
        bail!("no subscribers");
    };
    if version > change.status_version {
        bail!(
            "the change to price {} first appeared in version {version}, after the {} \
             the cluster status reported once the call had returned",
            change.price,
            change.status_version
        );
    }
    Ok(Propagated {
        version,
        call: change.returned.duration_since(change.start),
        first_ack: first.duration_since(change.start),
        last_ack: last.duration_since(change.start),
        apply_max,
    })
}

/// The cluster's view at the end: every subscriber connected, each on the
/// newest version with no lag.
#[derive(Debug, Clone)]
pub struct CrossCheck {
    pub snapshot_version: u64,
    pub data_planes: usize,
    /// Data planes of this run whose acked version is the newest snapshot and lag 0.
    pub current: usize,
    /// What was wrong with the others, if any.
    pub problems: Vec<String>,
}

impl CrossCheck {
    pub fn passed(&self, expected: usize) -> bool {
        self.data_planes == expected && self.current == expected && self.problems.is_empty()
    }
}

/// Asks `ClusterService.Status` until every one of `nodes` shows
/// `acked_version == snapshot_version` and `lag_versions == 0`, or
/// `STATUS_SETTLE` has passed (a telemetry republication can land in between).
pub async fn cross_check(
    cluster: &mut ClusterServiceClient<Authorized>,
    nodes: &[String],
) -> anyhow::Result<CrossCheck> {
    let deadline = Instant::now() + STATUS_SETTLE;
    loop {
        let status = status(cluster).await?;
        let ours: Vec<&pb::DataPlaneStatus> = status
            .data_planes
            .iter()
            .filter(|d| nodes.contains(&d.node_id))
            .collect();
        let mut problems = Vec::new();
        let mut current = 0;
        for d in &ours {
            if d.acked_version == status.snapshot_version && d.lag_versions == 0 {
                current += 1;
            } else {
                problems.push(format!(
                    "{}: acked {} of {} (lag {} versions, {} ms), sent {}",
                    d.node_id,
                    d.acked_version,
                    status.snapshot_version,
                    d.lag_versions,
                    d.lag_ms,
                    d.sent_version
                ));
            }
            if d.region != REGION {
                problems.push(format!("{}: region {:?}", d.node_id, d.region));
            }
        }
        let check = CrossCheck {
            snapshot_version: status.snapshot_version,
            data_planes: ours.len(),
            current,
            problems,
        };
        if check.passed(nodes.len()) || Instant::now() >= deadline {
            return Ok(check);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

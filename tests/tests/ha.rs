//! High availability with real processes: several control-plane replicas
//! electing a leader through a real etcd, data planes following all of them,
//! Postgres underneath. Leaders are killed, frozen and cut off from etcd;
//! every control plane goes away while data planes serve; a data plane
//! restarts while no control plane is there. Nothing may go back to an old
//! epoch and no trace may be lost or stored twice.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{ControlPlane, DataPlane, Etcd, http_client};
use switchyard_proto::v1 as pb;
use tokio::sync::Mutex;

const REGISTRY: &str = r"
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

/// Data planes log JSON here, so the tests can read every snapshot they applied.
fn json_logs() -> Vec<(&'static str, String)> {
    vec![("SWITCHYARD_LOG_FORMAT", "json".to_owned())]
}

async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until one of `replicas` leads at an epoch above `above`, agreed by
/// every replica that answers; returns its index and epoch.
async fn wait_for_leader(replicas: &[&ControlPlane], above: u64) -> (usize, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut statuses = Vec::new();
        for cp in replicas {
            statuses.push(cp.status().await);
        }
        let leaders: Vec<(usize, u64)> = statuses
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s.as_ref()?;
                (s.role == i32::from(pb::Role::Leader) && s.epoch > above).then_some((i, s.epoch))
            })
            .collect();
        if let [(index, epoch)] = leaders[..] {
            let node = statuses[index].as_ref().unwrap().node_id.clone();
            let agreed = statuses
                .iter()
                .flatten()
                .all(|s| s.leader == node && s.epoch == epoch);
            if agreed {
                return (index, epoch);
            }
        }
        assert!(
            leaders.len() <= 1,
            "two replicas lead at once: {statuses:?}"
        );
        assert!(
            Instant::now() < deadline,
            "no leader above epoch {above}: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every snapshot a data plane applied, in order: (version, epoch).
fn applied(dp: &DataPlane) -> Vec<(u64, u64)> {
    dp.process
        .log_text()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event["message"].as_str().is_some_and(|m| {
                m == "applied snapshot" || m.starts_with("serving the persisted snapshot")
            })
        })
        .map(|event| {
            (
                event["version"].as_u64().unwrap(),
                event["epoch"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn assert_epochs_never_go_back(applied: &[(u64, u64)], who: &str) {
    for pair in applied.windows(2) {
        assert!(
            pair[1].1 >= pair[0].1,
            "{who} applied {:?} after {:?}: an older epoch",
            pair[1],
            pair[0]
        );
    }
}

/// Snapshots the leaders published, in version order: (version, epoch).
async fn published(database_url: &str) -> Vec<(i64, i64)> {
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    let rows = sqlx::query_as("SELECT version, epoch FROM published_snapshots ORDER BY version")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows
}

fn assert_published_epochs_never_go_back(rows: &[(i64, i64)]) {
    assert!(!rows.is_empty(), "nothing was published");
    for pair in rows.windows(2) {
        assert!(
            pair[1].1 >= pair[0].1,
            "version {} was published at epoch {} after version {} at epoch {}: two leaders published",
            pair[1].0,
            pair[1].1,
            pair[0].0,
            pair[0].1
        );
    }
}

/// One chat completion; returns its trace id, or None if it was not served.
async fn complete(client: &reqwest::Client, dp: &DataPlane) -> Option<String> {
    let response = client
        .post(dp.chat_url())
        .json(&serde_json::json!({
            "model": "sim-model",
            "messages": [{"role": "user", "content": "hello"}],
        }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let trace_id = response
        .headers()
        .get("x-switchyard-trace-id")?
        .to_str()
        .ok()?
        .to_owned();
    response.bytes().await.ok()?;
    Some(trace_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_elects_another_and_no_data_plane_goes_back_to_its_epoch() {
    let etcd = Etcd::start().await.unwrap();
    let mut cps = ControlPlane::start_replicas(3, &etcd, REGISTRY, &[])
        .await
        .unwrap();
    let (leader, old_epoch) = wait_for_leader(&cps.iter().collect::<Vec<_>>(), 0).await;
    let states = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let all: Vec<&ControlPlane> = cps.iter().collect();
    let mut dps = Vec::new();
    for (i, state) in states.iter().enumerate() {
        let node = format!("dp-{}", i + 1);
        dps.push(
            DataPlane::start_on(&all, &node, state.path(), &json_logs())
                .await
                .unwrap(),
        );
    }
    for dp in &dps {
        wait_until(
            "each data plane runs the first leader's snapshot",
            Duration::from_secs(20),
            || async { applied(dp).last().is_some_and(|&(_, e)| e == old_epoch) },
        )
        .await;
    }

    cps[leader].kill().await;
    let survivors: Vec<&ControlPlane> = cps
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != leader)
        .map(|(_, cp)| cp)
        .collect();
    let (_, new_epoch) = wait_for_leader(&survivors, old_epoch).await;
    for dp in &dps {
        wait_until(
            "every data plane runs the new leader's snapshot",
            Duration::from_secs(30),
            || async { applied(dp).iter().any(|&(_, e)| e == new_epoch) },
        )
        .await;
    }
    // Give a stale replica every chance to push the old epoch again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = http_client();
    for (i, dp) in dps.iter().enumerate() {
        let seen = applied(dp);
        assert_epochs_never_go_back(&seen, &format!("dp-{}", i + 1));
        assert_eq!(seen.last().unwrap().1, new_epoch);
        assert!(
            complete(&client, dp).await.is_some(),
            "dp-{} stopped serving",
            i + 1
        );
    }
    assert_published_epochs_never_go_back(&published(&cps[0].database_url).await);

    // The dead leader's lease is gone: the new leader's status names the two survivors.
    let status = survivors[0].status().await.unwrap();
    wait_until(
        "the dead replica leaves the registry",
        Duration::from_secs(20),
        || async {
            survivors[0]
                .status()
                .await
                .is_some_and(|s| s.replicas.len() == 2)
        },
    )
    .await;
    assert!(status.elected);
    assert_eq!(status.epoch, new_epoch);

    // A leader that shuts down resigns: the last replica takes over, and the
    // one that left says it stepped down.
    let (next, _) = wait_for_leader(&survivors, old_epoch).await;
    let next_node = survivors[next].status().await.unwrap().node_id;
    let next_index = (0..cps.len())
        .find(|&i| i != leader && cps[i].args_node() == next_node)
        .unwrap();
    let last_index = (0..cps.len())
        .find(|&i| i != leader && i != next_index)
        .unwrap();
    let status = cps[next_index]
        .process
        .terminate(Duration::from_secs(30))
        .await;
    assert!(status.success(), "the leader exited with {status}");
    let (_, final_epoch) = wait_for_leader(&[&cps[last_index]], new_epoch).await;
    assert!(final_epoch > new_epoch);
    let log = cps[next_index].process.log_text();
    assert!(
        log.contains("stepped down") && log.contains("shutting down"),
        "the leader did not step down on SIGTERM:\n{log}"
    );
    for dp in &dps {
        wait_until(
            "every data plane runs the last leader's snapshot",
            Duration::from_secs(30),
            || async { applied(dp).last().is_some_and(|&(_, e)| e == final_epoch) },
        )
        .await;
        assert_epochs_never_go_back(&applied(dp), "a data plane");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_leader_is_replaced_and_fenced_when_it_thaws() {
    let etcd = Etcd::start().await.unwrap();
    let cps = ControlPlane::start_replicas(2, &etcd, REGISTRY, &[])
        .await
        .unwrap();
    let all: Vec<&ControlPlane> = cps.iter().collect();
    let (leader, old_epoch) = wait_for_leader(&all, 0).await;
    let other = 1 - leader;
    let state = tempfile::tempdir().unwrap();
    let dp = DataPlane::start_on(&all, "dp-1", state.path(), &json_logs())
        .await
        .unwrap();

    // Frozen past its lease: the other replica takes over.
    cps[leader].process.signal("STOP").await;
    let (winner, new_epoch) = wait_for_leader(&[&cps[other]], old_epoch).await;
    assert_eq!(winner, 0);
    let new_leader = cps[other].status().await.unwrap().node_id;
    wait_until(
        "the data plane runs the new epoch",
        Duration::from_secs(30),
        || async { applied(&dp).iter().any(|&(_, e)| e == new_epoch) },
    )
    .await;

    // Thawed, it finds its lease gone and steps down; it must not act as leader.
    cps[leader].process.signal("CONT").await;
    wait_until(
        "the thawed replica follows",
        Duration::from_secs(20),
        || async {
            cps[leader]
                .status()
                .await
                .is_some_and(|s| s.role == i32::from(pb::Role::Follower) && s.leader == new_leader)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let rows = published(&cps[0].database_url).await;
    assert_published_epochs_never_go_back(&rows);
    let pool = sqlx::PgPool::connect(&cps[0].database_url).await.unwrap();
    let fence: i64 = sqlx::query_scalar("SELECT epoch FROM leader_fence WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(u64::try_from(fence).unwrap(), new_epoch);
    let seen = applied(&dp);
    assert_epochs_never_go_back(&seen, "dp-1");
    assert_eq!(seen.last().unwrap().1, new_epoch);
    let log = cps[leader].process.log_text();
    assert!(
        log.contains("stepped down"),
        "the thawed leader never stepped down:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_etcd_the_leader_steps_down_and_never_two_lead() {
    let mut etcd = Etcd::start().await.unwrap();
    let cps = Arc::new(
        ControlPlane::start_replicas(2, &etcd, REGISTRY, &[])
            .await
            .unwrap(),
    );
    let all: Vec<&ControlPlane> = cps.iter().collect();
    let (leader, old_epoch) = wait_for_leader(&all, 0).await;

    // Watch both replicas' roles all along.
    let done = Arc::new(AtomicBool::new(false));
    let both_led = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(AtomicUsize::new(0));
    let watcher = tokio::spawn({
        let (cps, done, both_led, samples) =
            (cps.clone(), done.clone(), both_led.clone(), samples.clone());
        async move {
            while !done.load(Ordering::Relaxed) {
                let mut leading = 0;
                for cp in cps.iter() {
                    if cp
                        .status()
                        .await
                        .is_some_and(|s| s.role == i32::from(pb::Role::Leader))
                    {
                        leading += 1;
                    }
                }
                if leading > 1 {
                    both_led.fetch_add(1, Ordering::Relaxed);
                }
                samples.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    etcd.stop().await;
    wait_until(
        "the leader steps down without etcd",
        Duration::from_secs(20),
        || async {
            cps[leader]
                .status()
                .await
                .is_some_and(|s| s.role == i32::from(pb::Role::Follower))
        },
    )
    .await;
    // Nobody leads while etcd is away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for cp in cps.iter() {
        let status = cp.status().await.unwrap();
        assert_eq!(status.role, i32::from(pb::Role::Follower), "{status:?}");
        assert!(
            !status.election_error.is_empty(),
            "etcd is down, yet: {status:?}"
        );
    }

    etcd.restart().await.unwrap();
    let all: Vec<&ControlPlane> = cps.iter().collect();
    wait_for_leader(&all, old_epoch).await;
    done.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    assert!(samples.load(Ordering::Relaxed) > 10);
    assert_eq!(
        both_led.load(Ordering::Relaxed),
        0,
        "two replicas said they led at once"
    );
    assert_published_epochs_never_go_back(&published(&cps[0].database_url).await);
}

/// Sends a request to each data plane in turn every `every` until stopped;
/// returns the trace ids of the requests served and the count not served.
fn steady_traffic(
    dps: Arc<Mutex<Vec<String>>>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<String>, usize)> {
    tokio::spawn(async move {
        let client = http_client();
        let (mut served, mut failed) = (Vec::new(), 0);
        let mut turn = 0;
        while !stop.load(Ordering::Relaxed) {
            let url = {
                let dps = dps.lock().await;
                dps[turn % dps.len()].clone()
            };
            turn += 1;
            let response = client
                .post(&url)
                .json(&serde_json::json!({
                    "model": "sim-model",
                    "messages": [{"role": "user", "content": "hello"}],
                }))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match response {
                Ok(r) if r.status().is_success() => {
                    let id = r.headers()["x-switchyard-trace-id"]
                        .to_str()
                        .unwrap()
                        .to_owned();
                    if r.bytes().await.is_ok() {
                        served.push(id);
                    } else {
                        failed += 1;
                    }
                }
                _ => failed += 1,
            }
            tokio::time::sleep(every).await;
        }
        (served, failed)
    })
}

/// Waits until every id has its trace row, then checks there is exactly one
/// row per id and no other row at all.
async fn assert_exactly_one_row_each(database_url: &str, ids: &[String]) {
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM traces WHERE trace_id = ANY($1)")
                .bind(ids)
                .fetch_one(&pool)
                .await
                .unwrap();
        if usize::try_from(stored).unwrap() == ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} served requests have a trace row",
            stored,
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (rows, distinct_requests): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT request_id) FROM traces")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        usize::try_from(rows).unwrap(),
        ids.len(),
        "rows beyond the requests served"
    );
    assert_eq!(rows, distinct_requests, "a request was stored twice");
    pool.close().await;
}

async fn dropped_traces(dp: &DataPlane) -> f64 {
    let text = dp.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix("switchyard_dp_traces_dropped_total "))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_served_while_all_control_planes_are_down_has_exactly_one_trace() {
    let etcd = Etcd::start().await.unwrap();
    let mut cps = ControlPlane::start_replicas(2, &etcd, REGISTRY, &[])
        .await
        .unwrap();
    let all: Vec<&ControlPlane> = cps.iter().collect();
    wait_for_leader(&all, 0).await;
    let states = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut dps = Vec::new();
    for (i, state) in states.iter().enumerate() {
        let node = format!("dp-{}", i + 1);
        dps.push(
            DataPlane::start_on(&all, &node, state.path(), &[])
                .await
                .unwrap(),
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let urls = Arc::new(Mutex::new(dps.iter().map(DataPlane::chat_url).collect()));
    let traffic = steady_traffic(urls, Duration::from_millis(50), stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;

    for cp in &mut cps {
        cp.kill().await;
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    for cp in &mut cps {
        cp.restart().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (served, failed) = traffic.await.unwrap();

    assert_eq!(
        failed, 0,
        "requests failed while the data planes had a snapshot"
    );
    assert!(served.len() > 200, "only {} requests served", served.len());
    assert_exactly_one_row_each(&cps[0].database_url, &served).await;
    for dp in &dps {
        assert_eq!(dropped_traces(dp).await, 0.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_plane_restarted_while_no_control_plane_runs_serves_from_its_persisted_snapshot() {
    let mut cp = ControlPlane::start(REGISTRY).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut dp = DataPlane::start_on(&[&cp], "dp-1", state.path(), &json_logs())
        .await
        .unwrap();
    let client = http_client();
    let mut served = vec![
        complete(&client, &dp)
            .await
            .expect("served with the control plane up"),
    ];
    let version = applied(&dp).last().unwrap().0;

    cp.kill().await;
    for _ in 0..20 {
        served.push(
            complete(&client, &dp)
                .await
                .expect("served with the control plane down"),
        );
    }
    // Restarted with no control plane anywhere: ready from its persisted snapshot.
    dp.restart().await.unwrap();
    assert_eq!(applied(&dp).first().map(|&(v, _)| v), Some(version));
    for _ in 0..20 {
        served.push(
            complete(&client, &dp)
                .await
                .expect("served from the persisted snapshot"),
        );
    }

    // The control plane returns: the traces of both lives of the data plane land once each.
    cp.restart().await.unwrap();
    assert_exactly_one_row_each(&cp.database_url, &served).await;
    assert_eq!(dropped_traces(&dp).await, 0.0);
}

//! The pieces of `switchyard-limits`: the scenarios, each timed call, and
//! the report.

pub mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use switchyard_data_plane::limits::{
    Limit, Limiter, LimiterArgs, LimiterConfig, Mode, OnRedisDown, Scope,
};

/// API keys the calls take turns with, and the workspaces they belong to.
pub const KEYS: usize = 100;
pub const WORKSPACES: usize = 10;
/// Each request's token estimate, and what it "used" in the end.
pub const ESTIMATED_TOKENS: u32 = 1_000;
pub const USED_TOKENS: u32 = 700;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Timed calls of each scenario.
    pub calls: usize,
    /// Untimed calls first.
    pub warmup: usize,
    /// Callers of the concurrent scenarios.
    pub concurrency: usize,
    /// Calls a second the paced scenario offers.
    pub paced_rate: f64,
}

/// Where the limiter keeps its limits in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    /// A Redis URL on which nothing listens: the fallback to local limits.
    RedisDown,
    /// No Redis configured.
    InProcess,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub label: &'static str,
    pub backend: Backend,
    pub callers: usize,
    /// Calls a second offered on a fixed schedule; `None` for a closed
    /// loop (each caller's next call as soon as its last one returned).
    pub offered: Option<f64>,
}

/// One scenario's samples.
#[derive(Debug, Clone)]
pub struct Timed {
    pub scenario: Scenario,
    /// `admit` alone: what a request waits for before its provider call.
    pub admit: Vec<Duration>,
    /// `admit` then `settle`, one after the other.
    pub both: Vec<Duration>,
    pub wall: Duration,
    pub denied: u64,
    /// Decisions by where they were made.
    pub redis: u64,
    pub local: u64,
}

impl Timed {
    pub fn calls_per_second(&self) -> f64 {
        self.admit.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

pub const PACED: &str = "Redis, concurrent callers, paced";

fn scenarios(concurrency: usize) -> Vec<Scenario> {
    let closed = |label, backend, callers| Scenario {
        label,
        backend,
        callers,
        offered: None,
    };
    vec![
        closed("Redis, one caller", Backend::Redis, 1),
        closed(
            "Redis, concurrent callers, closed loop",
            Backend::Redis,
            concurrency,
        ),
        // Its rate comes from the plan.
        closed(PACED, Backend::Redis, concurrency),
        closed("Redis unreachable (local fallback)", Backend::RedisDown, 1),
        closed("in process (no Redis)", Backend::InProcess, 1),
    ]
}

/// The limiter of a scenario, with the flags' defaults and keys of its own.
fn limiter(
    backend: Backend,
    redis_url: &str,
    down_url: &str,
    prefix: &str,
) -> anyhow::Result<Limiter> {
    let redis_url = match backend {
        Backend::Redis => Some(redis_url.to_owned()),
        Backend::RedisDown => Some(down_url.to_owned()),
        Backend::InProcess => None,
    };
    let args = LimiterArgs {
        redis_url,
        rate_limit_redis_timeout: Duration::from_millis(50),
        rate_limit_probe_interval: Duration::from_secs(1),
        rate_limit_on_redis_down: OnRedisDown::Local,
        rate_limit_key_prefix: prefix.to_owned(),
        rate_limit_local_entries: 100_000,
    };
    let limiter = Limiter::new(LimiterConfig::try_from(args)?)?;
    limiter.set_replicas(4);
    Ok(limiter)
}

/// Runs every scenario. `down_url` names a port nothing listens on.
pub async fn measure(redis_url: &str, down_url: &str, plan: &Plan) -> anyhow::Result<Vec<Timed>> {
    let mut results: Vec<Timed> = Vec::new();
    for mut scenario in scenarios(plan.concurrency) {
        if scenario.label == PACED {
            scenario.offered = Some(plan.paced_rate);
        }
        let prefix = format!("sy-bench:{}", uuid::Uuid::new_v4().simple());
        let limiter = Arc::new(limiter(scenario.backend, redis_url, down_url, &prefix)?);
        eprintln!(
            "{}: {} calls after {} untimed",
            scenario.label, plan.calls, plan.warmup
        );
        run(&limiter, plan.warmup, scenario.callers, None).await?;
        let started = Instant::now();
        let samples = run(&limiter, plan.calls, scenario.callers, scenario.offered).await?;
        let wall = started.elapsed();
        let metrics = limiter.metrics();
        let count = |mode, decision| metrics.decisions(mode, decision);
        let timed = Timed {
            admit: samples.iter().map(|s| s.0).collect(),
            both: samples.iter().map(|s| s.1).collect(),
            wall,
            denied: count("redis", "denied") + count("local", "denied"),
            redis: count("redis", "allowed") + count("redis", "denied"),
            local: count("local", "allowed") + count("local", "denied"),
            scenario,
        };
        let expected = match timed.scenario.backend {
            Backend::Redis => Mode::Redis,
            Backend::RedisDown | Backend::InProcess => Mode::Local,
        };
        ensure!(
            limiter.mode() == expected,
            "{}: the limiter ended in {:?} mode",
            timed.scenario.label,
            limiter.mode()
        );
        results.push(timed);
    }
    Ok(results)
}

/// `calls` admissions, each settled, split among `callers` tasks, as fast
/// as they return or at `offered` calls a second in all (each caller on its
/// own fixed schedule, the callers staggered evenly); each call's time to
/// admit and to admit and settle, from when it was sent.
async fn run(
    limiter: &Arc<Limiter>,
    calls: usize,
    callers: usize,
    offered: Option<f64>,
) -> anyhow::Result<Vec<(Duration, Duration)>> {
    let mut tasks = Vec::new();
    let every = offered.map(|rate| Duration::from_secs_f64(callers as f64 / rate));
    let begin = tokio::time::Instant::now();
    for caller in 0..callers {
        let limiter = limiter.clone();
        let share = calls / callers + usize::from(caller < calls % callers);
        let first = every.map(|every| begin + every.mul_f64(caller as f64 / callers as f64));
        tasks.push(tokio::spawn(async move {
            let keys: Vec<String> = (0..KEYS).map(|k| format!("key-{k:03}")).collect();
            // What a data plane authenticates with: each key's secret, known
            // to it by the SHA-256 of the secret.
            let secrets: Vec<String> = (0..KEYS)
                .map(|k| format!("sy-bench-secret-{k:03}-0123456789abcdefghijklmnop"))
                .collect();
            let grants: std::collections::HashMap<[u8; 32], usize> = secrets
                .iter()
                .enumerate()
                .map(|(k, s)| (switchyard_domain::secret_sha256(s), k))
                .collect();
            let workspaces: Vec<String> =
                (0..WORKSPACES).map(|w| format!("workspace-{w}")).collect();
            // High enough that every call is admitted and writes its keys:
            // the dearer path.
            let key_limit = Limit::per_minute(Some(1_000_000), Some(1_000_000_000));
            let workspace_limit = Limit::per_minute(Some(10_000_000), Some(4_000_000_000));
            let mut samples = Vec::with_capacity(share);
            for i in 0..share {
                if let (Some(first), Some(every)) = (first, every) {
                    tokio::time::sleep_until(first + every.mul_f64(i as f64)).await;
                }
                let key = (caller * 7_919 + i * 31) % KEYS;
                let limits = [
                    (Scope::Key(&keys[key]), key_limit),
                    (
                        Scope::Workspace(&workspaces[key % WORKSPACES]),
                        workspace_limit,
                    ),
                ];
                let started = Instant::now();
                if grants.get(&switchyard_domain::secret_sha256(&secrets[key])) != Some(&key) {
                    anyhow::bail!("key {key} did not authenticate");
                }
                let admission = limiter.admit(&limits, ESTIMATED_TOKENS).await;
                let admitted = started.elapsed();
                if let Some(reservation) = admission.reservation {
                    limiter.settle(reservation, USED_TOKENS).await;
                }
                samples.push((admitted, started.elapsed()));
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    let mut samples = Vec::with_capacity(calls);
    for task in tasks {
        samples.extend(task.await.context("a caller panicked")??);
    }
    Ok(samples)
}

//! The rate limiter against real Redis: the server `scripts/test.sh` started
//! (`SWITCHYARD_TEST_REDIS_URL`) for shared limits, and servers of its own,
//! killed and restarted mid-test, for the fallback to local limits. Every
//! test uses keys under a prefix of its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use secrecy::SecretString;
use switchyard_data_plane::limits::{
    Cause, Dimension, Limit, Limiter, LimiterConfig, Mode, OnRedisDown, Rate, Scope, ScopeKind,
    headers,
};
use tokio::process::{Child, Command};

/// The test Redis; set by scripts/test.sh.
fn redis_url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .expect("SWITCHYARD_TEST_REDIS_URL is not set: run the suite with ./scripts/test.sh")
}

fn prefix() -> String {
    format!("sy-test:{}", uuid::Uuid::new_v4().simple())
}

fn config(url: &str, prefix: &str) -> LimiterConfig {
    LimiterConfig {
        key_prefix: prefix.to_owned(),
        ..LimiterConfig::new(Some(SecretString::from(url.to_owned())))
    }
}

async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A Redis server of this test's own, on loopback, without persistence.
struct OwnRedis {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port).await
    }

    async fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be on PATH (scripts/test.sh installs it)");
        let server = Self {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(server.url())
                && let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} not ready in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL by its pid, and reaped.
    async fn kill(mut self) -> u16 {
        assert!(self.child.id().is_some(), "redis-server already exited");
        self.child.kill().await.unwrap();
        self.port
    }
}

/// Units a GCRA limit may admit over `elapsed`: the burst plus what the rate
/// earns back meanwhile.
fn gcra_bound(rate: Rate, share: f64, elapsed: Duration) -> u64 {
    let burst = (f64::from(rate.burst) * share).floor();
    let earned = elapsed.as_secs_f64() * f64::from(rate.per_minute) * share / 60.0;
    (burst + earned).floor() as u64
}

#[tokio::test]
async fn two_data_planes_never_admit_more_than_the_shared_limit() {
    let url = redis_url();
    let prefix = prefix();
    // Two data planes: separate limiters, separate connections.
    let planes = [
        Arc::new(Limiter::new(config(&url, &prefix)).unwrap()),
        Arc::new(Limiter::new(config(&url, &prefix)).unwrap()),
    ];
    let rate = Rate::per_minute(300);
    let limit = Limit {
        requests: Some(rate),
        tokens: None,
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for plane in &planes {
        for task in 0..16 {
            let plane = plane.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("key-{task}");
                let mut admitted = 0u64;
                for _ in 0..40 {
                    let limits = [
                        (Scope::Key(&key), Limit::default()),
                        (Scope::Workspace("acme"), limit),
                    ];
                    let admission = plane.admit(&limits, 0).await;
                    assert_eq!(admission.decision.mode, Mode::Redis);
                    if admission.decision.allowed() {
                        admitted += 1;
                    } else {
                        let wait = admission.decision.retry_after().unwrap();
                        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
                    }
                }
                admitted
            }));
        }
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    let elapsed = started.elapsed();

    // 1,280 requests from 32 tasks on two nodes: exactly the burst passes,
    // plus whatever the rate earned back while they ran (one every 200 ms).
    let bound = gcra_bound(rate, 1.0, elapsed);
    assert!(
        (300..=bound).contains(&admitted),
        "{admitted} admitted in {elapsed:?}, bound {bound}"
    );
    let by_plane: Vec<u64> = planes
        .iter()
        .map(|p| p.metrics().decisions("redis", "allowed"))
        .collect();
    assert_eq!(by_plane.iter().sum::<u64>(), admitted);
    assert!(by_plane.iter().all(|n| *n > 0), "{by_plane:?}");
    let denied: u64 = planes
        .iter()
        .map(|p| p.metrics().decisions("redis", "denied"))
        .sum();
    assert_eq!(admitted + denied, 1_280);
    assert!(
        planes
            .iter()
            .all(|p| p.metrics().decisions("local", "allowed") == 0)
    );
}

#[tokio::test]
async fn a_denied_request_is_told_when_to_retry_and_charges_nothing() {
    let url = redis_url();
    let prefix = prefix();
    let limiter = Limiter::new(config(&url, &prefix)).unwrap();
    let key = Limit::per_minute(Some(5), None);
    // 10,000 tokens at once, earned back slowly enough that the counts below
    // stay exact while the test runs.
    let workspace = Limit {
        requests: Some(Rate::per_minute(100)),
        tokens: Some(Rate::per_minute(10).with_burst(10_000)),
    };

    for n in 0..5 {
        let limits = [
            (Scope::Key("key-a"), key),
            (Scope::Workspace("acme"), workspace),
        ];
        let decision = limiter.admit(&limits, 100).await.decision;
        assert!(decision.allowed(), "request {n}");
        // The key binds for requests: 5 a minute, one fewer left each time.
        let requests = decision.requests.unwrap();
        assert_eq!((requests.limit, requests.remaining), (5, 4 - n));
        let tokens = decision.tokens.unwrap();
        assert_eq!(tokens.limit, 10_000);
        assert_eq!(tokens.remaining, 10_000 - 100 * (n + 1));
    }

    let limits = [
        (Scope::Key("key-a"), key),
        (Scope::Workspace("acme"), workspace),
    ];
    let decision = limiter.admit(&limits, 100).await.decision;
    let denial = decision
        .denial
        .expect("the key's sixth request in a minute");
    assert_eq!(
        denial.cause,
        Cause::Limit {
            scope: ScopeKind::Key,
            dimension: Dimension::Requests
        }
    );
    // One request is earned back every 12 s.
    assert!(
        denial.retry_after > Duration::from_secs(11)
            && denial.retry_after <= Duration::from_secs(12),
        "{:?}",
        denial.retry_after
    );
    let headers = decision.headers();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
    };
    assert_eq!(header(headers::LIMIT_REQUESTS), "5");
    assert_eq!(header(headers::REMAINING_REQUESTS), "0");
    assert_eq!(header(headers::RETRY_AFTER), "12");
    let retry_ms: u64 = header(headers::RETRY_AFTER_MS).parse().unwrap();
    assert!((11_000..=12_000).contains(&retry_ms), "{retry_ms}");
    // The key's five requests are earned back over the next minute.
    let reset = header(headers::RESET_REQUESTS);
    assert!(reset.starts_with("59.") || reset == "1m0s", "{reset}");
    assert_eq!(header(headers::LIMIT_TOKENS), "10000");
    assert_eq!(header(headers::REMAINING_TOKENS), "9500");
    assert!(header(headers::RESET_TOKENS).ends_with('s'));

    // The denied request took nothing from the workspace: another key in it
    // finds 5 of 100 requests and 500 tokens spent.
    let limits = [
        (Scope::Key("key-b"), key),
        (Scope::Workspace("acme"), workspace),
    ];
    let decision = limiter.admit(&limits, 100).await.decision;
    assert!(decision.allowed());
    assert_eq!(decision.tokens.unwrap().remaining, 9_400);
    assert_eq!(decision.requests.unwrap().remaining, 4);
    let mut map = http::HeaderMap::new();
    decision.append_headers(&mut map);
    assert_eq!(map[headers::REMAINING_TOKENS], "9400");
    assert!(!map.contains_key(headers::RETRY_AFTER));

    // A scope listed twice is charged once.
    let twice = [(Scope::Key("key-c"), key), (Scope::Key("key-c"), key)];
    let decision = limiter.admit(&twice, 0).await.decision;
    assert_eq!(decision.requests.unwrap().remaining, 4);

    // More tokens than the workspace's burst never fit.
    let decision = limiter.admit(&limits, 10_001).await.decision;
    assert_eq!(
        decision.denial.unwrap().cause,
        Cause::TooLarge {
            scope: ScopeKind::Workspace,
            dimension: Dimension::Tokens
        }
    );

    // Keys go when their limit is full again: the key's five requests in a
    // minute, the workspace's 600 tokens at 10 a minute in an hour.
    let mut redis = redis_connection(&url).await;
    let mut ttl = async |key: String| -> i64 {
        redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap()
    };
    let key_ttl = ttl(format!("{prefix}:k:key-a:r")).await;
    assert!((59_000..=60_001).contains(&key_ttl), "{key_ttl}");
    let tokens_ttl = ttl(format!("{prefix}:w:acme:t")).await;
    assert!(
        (3_599_000..=3_600_001).contains(&tokens_ttl),
        "{tokens_ttl}"
    );
}

#[tokio::test]
async fn settling_refunds_unused_tokens_and_debits_extra_ones() {
    let url = redis_url();
    let limiter = Limiter::new(config(&url, &prefix())).unwrap();
    // 1,000 tokens at once and one a minute after that: nothing earned back
    // while the test runs.
    let limit = Limit {
        requests: None,
        tokens: Some(Rate::per_minute(1).with_burst(1_000)),
    };
    let limits = [(Scope::Key("key-a"), limit)];

    let first = limiter.admit(&limits, 800).await;
    assert!(first.decision.allowed());
    assert_eq!(first.decision.tokens.unwrap().remaining, 200);
    let denied = limiter.admit(&limits, 800).await;
    assert!(!denied.decision.allowed());
    assert!(denied.reservation.is_none());

    // The first request used 100 of its 800: 700 come back.
    limiter.settle(first.reservation.unwrap(), 100).await;
    let second = limiter.admit(&limits, 800).await;
    assert!(second.decision.allowed());
    assert_eq!(second.decision.tokens.unwrap().remaining, 100);

    // The second used 900, 100 more than reserved: nothing is left.
    limiter.settle(second.reservation.unwrap(), 900).await;
    let decision = limiter.admit(&limits, 1).await.decision;
    assert!(!decision.allowed());
    assert_eq!(decision.tokens.unwrap().remaining, 0);

    // A refund bigger than the debt gives back a full bucket and no more.
    let third = limiter
        .admit(&Vec::from([(Scope::Key("key-b"), limit)]), 10)
        .await;
    limiter.settle(third.reservation.unwrap(), 0).await;
    let decision = limiter
        .admit(&[(Scope::Key("key-b"), limit)], 0)
        .await
        .decision;
    assert_eq!(decision.tokens.unwrap().remaining, 1_000);
    assert_eq!(limiter.metrics().decisions("local", "allowed"), 0);
}

#[tokio::test]
async fn rates_that_do_not_divide_a_minute_admit_exactly_their_burst() {
    let limiter = Limiter::new(config(&redis_url(), &prefix())).unwrap();
    // 60/7 s a request and 60/7 s a token: fractions of a microsecond that
    // the script must add up without losing or gaining a unit.
    let limit = Limit {
        requests: Some(Rate::per_minute(7)),
        tokens: Some(Rate::per_minute(7).with_burst(1_000_003)),
    };
    let limits = [(Scope::Key("key-a"), limit)];
    for _ in 0..3 {
        assert!(limiter.admit(&limits, 333_334).await.decision.allowed());
    }
    let decision = limiter.admit(&limits, 2).await.decision;
    assert_eq!(
        decision.denial.unwrap().cause,
        Cause::Limit {
            scope: ScopeKind::Key,
            dimension: Dimension::Tokens
        }
    );
    assert_eq!(decision.tokens.unwrap().remaining, 1);
    let decision = limiter.admit(&limits, 1).await.decision;
    assert!(decision.allowed());
    assert_eq!(decision.tokens.unwrap().remaining, 0);
    assert_eq!(decision.requests.unwrap().remaining, 3);
    for _ in 0..3 {
        assert!(limiter.admit(&limits, 0).await.decision.allowed());
    }
    let decision = limiter.admit(&limits, 0).await.decision;
    assert_eq!(
        decision.denial.unwrap().cause,
        Cause::Limit {
            scope: ScopeKind::Key,
            dimension: Dimension::Requests
        }
    );
}

/// Requests from several tasks until `stop`, each recorded as (mode, allowed).
fn traffic(
    limiter: &Arc<Limiter>,
    limit: Limit,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(Mode, bool)>>> {
    (0..4)
        .map(|task| {
            let limiter = limiter.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let key = format!("key-{task}");
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let limits = [
                        (Scope::Key(&key), Limit::default()),
                        (Scope::Workspace("acme"), limit),
                    ];
                    let decision = limiter.admit(&limits, 0).await.decision;
                    seen.push((decision.mode, decision.allowed()));
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                seen
            })
        })
        .collect()
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn scrape(limiter: &Limiter) -> String {
    let mut registry = Registry::with_prefix("switchyard_dp");
    limiter.metrics().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

#[tokio::test]
async fn with_redis_killed_traffic_goes_on_under_local_limits_and_returns() {
    let redis = OwnRedis::start().await;
    let probe_interval = Duration::from_millis(100);
    let limiter = Arc::new(
        Limiter::new(LimiterConfig {
            probe_interval,
            ..config(&redis.url(), &prefix())
        })
        .unwrap(),
    );
    // Four data planes serve: this one enforces a quarter while alone.
    limiter.set_replicas(4);
    let rate = Rate::per_minute(240);
    let limit = Limit {
        requests: Some(rate),
        tokens: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = traffic(&limiter, limit, &stop);

    let metrics = limiter.metrics().clone();
    wait_for("shared decisions", Duration::from_secs(10), || {
        metrics.decisions("redis", "denied") >= 50
    })
    .await;
    assert_eq!(metrics.local_mode.get(), 0);

    let port = redis.kill().await;
    let killed = Instant::now();
    wait_for("local decisions", Duration::from_secs(10), || {
        metrics.decisions("local", "denied") >= 300
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(task.await.unwrap());
    }
    let in_local = killed.elapsed();

    // Every request got an answer, first from Redis, then locally.
    let local_allowed = seen
        .iter()
        .filter(|(mode, allowed)| *mode == Mode::Local && *allowed)
        .count() as u64;
    assert!(seen.iter().any(|(mode, _)| *mode == Mode::Redis));
    assert!(seen.iter().all(|(mode, _)| *mode != Mode::Unavailable));
    // A quarter of the burst at once (60), then a quarter of the rate.
    let bound = gcra_bound(rate, 0.25, in_local);
    assert!(
        (60..=bound).contains(&local_allowed),
        "{local_allowed} admitted locally in {in_local:?}, bound {bound}"
    );
    assert_eq!(metrics.local_mode.get(), 1);
    assert_eq!(limiter.mode(), Mode::Local);
    let text = scrape(&limiter);
    assert!(
        text.contains("switchyard_dp_limiter_local_mode 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"switchyard_dp_limiter_decisions_total{mode="local",decision="allowed"} "#),
        "{text}"
    );
    // Redis was asked about once per probe interval, not on every request.
    let failures: u64 = ["unreachable", "timeout", "error"]
        .iter()
        .map(|kind| {
            metrics
                .redis_failures
                .get_or_create(&switchyard_data_plane::limits::FailureLabels {
                    operation: "admit",
                    kind,
                })
                .get()
        })
        .sum();
    let probes = in_local.as_millis() / probe_interval.as_millis() + 1;
    assert!(
        failures >= 1 && u128::from(failures) <= probes + 4,
        "{failures} failed calls in {in_local:?}"
    );

    // Redis comes back on the same port, empty: the script is loaded again
    // and decisions are shared once more.
    let redis = OwnRedis::start_on(port).await;
    let limits = [(Scope::Workspace("acme"), limit)];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let decision = limiter.admit(&limits, 0).await.decision;
        if decision.mode == Mode::Redis {
            assert!(decision.allowed());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still local 5 s after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metrics.local_mode.get(), 0);
    assert_eq!(limiter.mode(), Mode::Redis);
    assert!(scrape(&limiter).contains("switchyard_dp_limiter_local_mode 0"));
    drop(redis);
}

#[tokio::test]
async fn configured_to_deny_the_limiter_refuses_while_redis_is_down() {
    let redis = OwnRedis::start().await;
    let probe_interval = Duration::from_millis(100);
    let limiter = Limiter::new(LimiterConfig {
        probe_interval,
        on_redis_down: OnRedisDown::Deny,
        ..config(&redis.url(), &prefix())
    })
    .unwrap();
    let limits = [(Scope::Key("key-a"), Limit::per_minute(Some(1_000), None))];
    assert!(limiter.admit(&limits, 0).await.decision.allowed());

    let port = redis.kill().await;
    for _ in 0..20 {
        let decision = limiter.admit(&limits, 0).await.decision;
        assert_eq!(decision.mode, Mode::Unavailable);
        let denial = decision.denial.expect("denied while Redis is down");
        assert_eq!(denial.cause, Cause::Unavailable);
        assert_eq!(denial.retry_after, probe_interval);
        assert!(
            decision
                .headers()
                .iter()
                .any(|(n, v)| *n == headers::RETRY_AFTER && v == "1")
        );
    }
    assert_eq!(limiter.metrics().decisions("unavailable", "denied"), 20);
    assert_eq!(limiter.metrics().decisions("local", "allowed"), 0);
    assert_eq!(limiter.metrics().local_mode.get(), 1);

    let _redis = OwnRedis::start_on(port).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !limiter.admit(&limits, 0).await.decision.allowed() {
        assert!(
            Instant::now() < deadline,
            "still denying 5 s after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(limiter.mode(), Mode::Redis);
}

#[tokio::test]
async fn a_redis_down_at_start_up_does_not_stop_the_node() {
    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let limiter = Limiter::new(config(&format!("redis://127.0.0.1:{port}"), &prefix())).unwrap();
    limiter.set_share(0.5);
    let limits = [(Scope::Workspace("acme"), Limit::per_minute(Some(10), None))];
    let allowed = {
        let mut allowed = 0;
        for _ in 0..20 {
            let decision = limiter.admit(&limits, 0).await.decision;
            assert_eq!(decision.mode, Mode::Local);
            allowed += u32::from(decision.allowed());
        }
        allowed
    };
    // Half of 10 at once.
    assert_eq!(allowed, 5);
    assert_eq!(limiter.metrics().local_mode.get(), 1);
}

#[tokio::test]
async fn without_redis_limits_hold_in_process() {
    let limiter = Limiter::new(LimiterConfig::new(None)).unwrap();
    let limits = [(Scope::Key("key-a"), Limit::per_minute(Some(3), None))];
    let mut allowed = 0;
    for _ in 0..10 {
        let decision = limiter.admit(&limits, 0).await.decision;
        assert_eq!(decision.mode, Mode::Local);
        allowed += u32::from(decision.allowed());
    }
    assert_eq!(allowed, 3);
    // Not a fallback: nothing to alarm about.
    assert_eq!(limiter.metrics().local_mode.get(), 0);
    assert_eq!(limiter.metrics().decisions("local", "denied"), 7);
}

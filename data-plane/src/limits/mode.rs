//! Whether Redis is answering. A failed call switches the node to local
//! limits; from then on one request per probe interval tries Redis again,
//! so a dead Redis costs the others nothing. Each switch is logged once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::config::OnRedisDown;
use super::remote::Failure;

/// Where one admission goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Redis,
    /// Redis is down, and this request tries it again.
    Probe,
    Local,
}

pub(crate) struct RedisHealth {
    down: AtomicBool,
    /// Microseconds since `epoch` when the next probe is due.
    next_probe: AtomicU64,
    epoch: Instant,
    probe_interval: Duration,
    on_redis_down: OnRedisDown,
}

impl RedisHealth {
    pub fn new(probe_interval: Duration, on_redis_down: OnRedisDown) -> Self {
        Self {
            down: AtomicBool::new(false),
            next_probe: AtomicU64::new(0),
            epoch: Instant::now(),
            probe_interval,
            on_redis_down,
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn interval_us(&self) -> u64 {
        u64::try_from(self.probe_interval.as_micros()).unwrap_or(u64::MAX)
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    pub fn route(&self) -> Route {
        if !self.is_down() {
            return Route::Redis;
        }
        let now = self.now_us();
        let next = now.saturating_add(self.interval_us());
        // Only the request that moves the deadline probes.
        let claimed = self
            .next_probe
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |due| {
                (now >= due).then_some(next)
            })
            .is_ok();
        if claimed { Route::Probe } else { Route::Local }
    }

    /// Redis answered.
    pub fn up(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("rate limiter: Redis answers again; limits are shared by the fleet");
        }
    }

    /// Redis did not answer an admission.
    pub fn failed(&self, failure: &Failure, share: f64) {
        self.next_probe.store(
            self.now_us().saturating_add(self.interval_us()),
            Ordering::Relaxed,
        );
        if self.down.swap(true, Ordering::Relaxed) {
            return;
        }
        match self.on_redis_down {
            OnRedisDown::Local => tracing::warn!(
                error = %failure,
                share,
                probe_interval = ?self.probe_interval,
                "rate limiter: Redis unreachable; enforcing this node's share of every limit locally"
            ),
            OnRedisDown::Deny => tracing::warn!(
                error = %failure,
                probe_interval = ?self.probe_interval,
                "rate limiter: Redis unreachable; denying rate-limited requests until it answers"
            ),
        }
    }

    pub fn probe_interval(&self) -> Duration {
        self.probe_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_request_per_interval_probes_while_down() {
        let health = RedisHealth::new(Duration::from_millis(30), OnRedisDown::Local);
        assert_eq!(health.route(), Route::Redis);
        health.failed(&Failure::Reply, 0.5);
        assert!(health.is_down());
        let routes: Vec<Route> = (0..100).map(|_| health.route()).collect();
        assert!(routes.iter().all(|r| *r == Route::Local), "{routes:?}");
        tokio::time::sleep(Duration::from_millis(40)).await;
        let routes: Vec<Route> = (0..100).map(|_| health.route()).collect();
        assert_eq!(routes.iter().filter(|r| **r == Route::Probe).count(), 1);
        health.up();
        assert!(!health.is_down());
        assert_eq!(health.route(), Route::Redis);
    }
}

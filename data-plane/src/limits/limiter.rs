//! [`Limiter`]: one admission per request over every limit that applies,
//! in Redis while it answers and in process otherwise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::config::{LimiterConfig, LimiterError, OnRedisDown};
use super::decision::{self, Admission, Cause, Decision, Mode, Planned, Reservation};
use super::gcra::Cell;
use super::local::LocalStore;
use super::metrics::{DecisionLabels, FailureLabels, LimiterMetrics};
use super::mode::{RedisHealth, Route};
use super::remote::{Failure, RedisStore};
use super::scope::{Dimension, Limit, Scope};

/// What a request that can never fit is told to wait: a full period.
const PERIOD: Duration = Duration::from_secs(60);

pub struct Limiter {
    redis: Option<RedisStore>,
    health: RedisHealth,
    local: LocalStore,
    key_prefix: String,
    on_redis_down: OnRedisDown,
    /// This node's share of the fleet's limits, as `f64` bits.
    share: AtomicU64,
    metrics: LimiterMetrics,
}

impl Limiter {
    /// With a Redis URL this must run inside a Tokio runtime. It does not
    /// connect yet: a Redis that is down at start-up puts the first request
    /// in local mode.
    pub fn new(config: LimiterConfig) -> Result<Self, LimiterError> {
        let redis = config
            .redis_url
            .as_ref()
            .map(|url| RedisStore::new(url, config.redis_timeout))
            .transpose()?;
        Ok(Self {
            redis,
            health: RedisHealth::new(config.probe_interval, config.on_redis_down),
            local: LocalStore::new(config.local_entries),
            key_prefix: config.key_prefix,
            on_redis_down: config.on_redis_down,
            share: AtomicU64::new(1.0_f64.to_bits()),
            metrics: LimiterMetrics::default(),
        })
    }

    pub fn metrics(&self) -> &LimiterMetrics {
        &self.metrics
    }

    /// The part of every limit this node enforces while Redis is unreachable:
    /// 1/n with n data planes serving. Clamped to 0.001..=1; anything else
    /// (NaN) counts as 1.
    pub fn set_share(&self, share: f64) {
        let share = if share.is_nan() {
            1.0
        } else {
            share.clamp(0.001, 1.0)
        };
        self.share.store(share.to_bits(), Ordering::Relaxed);
    }

    /// [`Limiter::set_share`] for `replicas` data planes sharing the load evenly.
    pub fn set_replicas(&self, replicas: u32) {
        self.set_share(1.0 / f64::from(replicas.max(1)));
    }

    pub fn share(&self) -> f64 {
        f64::from_bits(self.share.load(Ordering::Relaxed))
    }

    /// Where the next decision will most likely be made.
    pub fn mode(&self) -> Mode {
        match (&self.redis, self.health.is_down(), self.on_redis_down) {
            (Some(_), false, _) => Mode::Redis,
            (Some(_), true, OnRedisDown::Deny) => Mode::Unavailable,
            _ => Mode::Local,
        }
    }

    /// Checks a request against every limit in `limits` (typically its key's
    /// and its workspace's) and charges one request and `estimated_tokens`
    /// (prompt plus the most it may generate) to each, all or nothing.
    #[must_use = "a denied request must be refused, an allowed one settled"]
    pub async fn admit(&self, limits: &[(Scope<'_>, Limit)], estimated_tokens: u32) -> Admission {
        let admission = self.decide(limits, estimated_tokens).await;
        let decision = &admission.decision;
        self.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                mode: decision.mode.as_str(),
                decision: if decision.allowed() {
                    "allowed"
                } else {
                    "denied"
                },
            })
            .inc();
        self.metrics
            .local_mode
            .set(i64::from(self.redis.is_some() && self.health.is_down()));
        admission
    }

    async fn decide(&self, limits: &[(Scope<'_>, Limit)], estimated_tokens: u32) -> Admission {
        let mut planned: Vec<Planned> = Vec::with_capacity(limits.len() * 2);
        for (scope, limit) in limits {
            for dimension in [Dimension::Requests, Dimension::Tokens] {
                let Some(rate) = limit.rate(dimension) else {
                    continue;
                };
                let units = match dimension {
                    Dimension::Requests => 1,
                    Dimension::Tokens => estimated_tokens,
                };
                if Cell::new(rate, units, 1.0).is_none() {
                    let cause = Cause::TooLarge {
                        scope: scope.kind(),
                        dimension,
                    };
                    return without_reservation(Decision::denied(cause, PERIOD, self.mode()));
                }
                let key = self.storage_key(scope, dimension);
                // A scope listed twice is charged once.
                if planned.iter().any(|p| p.key == key) {
                    continue;
                }
                planned.push(Planned {
                    key,
                    scope: scope.kind(),
                    dimension,
                    rate,
                    units,
                });
            }
        }
        if planned.is_empty() {
            return without_reservation(Decision::allowed_without_limits(self.mode()));
        }
        let keys: Vec<String> = planned.iter().map(|p| p.key.clone()).collect();

        if let Some(redis) = &self.redis {
            if self.health.route() != Route::Local {
                let cells = cells(&planned, 1.0);
                match redis.admit(&keys, &cells).await {
                    Ok((verdict, debts)) => {
                        self.health.up();
                        let decision =
                            decision::decide(&planned, &cells, verdict, &debts, 1.0, Mode::Redis);
                        return admission(decision, &planned, &cells, estimated_tokens);
                    }
                    Err(failure) => self.redis_failed("admit", &failure),
                }
            }
            if self.on_redis_down == OnRedisDown::Deny {
                let wait = self.health.probe_interval();
                return without_reservation(Decision::denied(
                    Cause::Unavailable,
                    wait,
                    Mode::Unavailable,
                ));
            }
        }

        let share = self.share();
        let cells = cells(&planned, share);
        let (verdict, debts) = self.local.admit(&keys, &cells).await;
        let decision = decision::decide(&planned, &cells, verdict, &debts, share, Mode::Local);
        admission(decision, &planned, &cells, estimated_tokens)
    }

    /// Corrects the token limits a request was charged once its real token
    /// count is known: a refund if it used fewer than estimated, a debit if
    /// more. One Redis call (or none, when the estimate was right); call it
    /// after the response is sent, off the request's path. Failures are
    /// counted and logged, never returned: the reservation just stands.
    pub async fn settle(&self, reservation: Reservation, actual_tokens: u32) {
        let delta = f64::from(actual_tokens) - f64::from(reservation.estimated);
        if delta == 0.0 || reservation.tokens.is_empty() {
            return;
        }
        let adjustments: Vec<(String, f64)> = reservation
            .tokens
            .into_iter()
            .map(|(key, per_token)| (key, delta * per_token))
            .collect();
        match (reservation.mode, &self.redis) {
            (Mode::Redis, Some(redis)) => {
                if let Err(failure) = redis.adjust(&adjustments).await {
                    self.count_failure("settle", &failure);
                    tracing::debug!(error = %failure, "rate limiter: could not settle a token reservation");
                }
            }
            _ => self.local.adjust(&adjustments).await,
        }
    }

    fn redis_failed(&self, operation: &'static str, failure: &Failure) {
        self.count_failure(operation, failure);
        self.health.failed(failure, self.share());
    }

    fn count_failure(&self, operation: &'static str, failure: &Failure) {
        self.metrics
            .redis_failures
            .get_or_create(&FailureLabels {
                operation,
                kind: failure.kind(),
            })
            .inc();
    }

    /// `prefix:k:<id>:r`, `prefix:w:<name>:t`: kind first and dimension last
    /// keep ids with colons unambiguous.
    fn storage_key(&self, scope: &Scope<'_>, dimension: Dimension) -> String {
        let kind = match scope {
            Scope::Key(_) => "k",
            Scope::Workspace(_) => "w",
        };
        format!(
            "{}:{kind}:{}:{}",
            self.key_prefix,
            scope.id(),
            dimension.tag()
        )
    }
}

fn cells(planned: &[Planned], share: f64) -> Vec<Cell> {
    planned
        .iter()
        // Every plan passed `Cell::new` at share 1; a smaller share only
        // widens the window to fit, so this never drops one.
        .filter_map(|p| Cell::new(p.rate, p.units, share))
        .collect()
}

fn without_reservation(decision: Decision) -> Admission {
    Admission {
        decision,
        reservation: None,
    }
}

fn admission(decision: Decision, planned: &[Planned], cells: &[Cell], estimated: u32) -> Admission {
    let tokens: Vec<(String, f64)> = planned
        .iter()
        .zip(cells)
        .filter(|(p, _)| p.dimension == Dimension::Tokens)
        .map(|(p, c)| (p.key.clone(), c.interval))
        .collect();
    let reservation = (decision.allowed() && !tokens.is_empty()).then_some(Reservation {
        mode: decision.mode,
        estimated,
        tokens,
    });
    Admission {
        decision,
        reservation,
    }
}

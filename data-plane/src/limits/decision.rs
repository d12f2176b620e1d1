//! What an admission answers: allowed or denied (why, and for how long), the
//! quotas left for the response headers, and the reservation to settle.

use std::time::Duration;

use super::gcra::{self, Cell, Verdict};
use super::scope::{Dimension, Rate, ScopeKind};

/// Where a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In Redis, for the whole fleet.
    Redis,
    /// In process: no Redis is configured, or it is unreachable and this
    /// node enforces its share.
    Local,
    /// Nowhere: Redis is unreachable and the limiter fails closed.
    Unavailable,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Redis => "redis",
            Mode::Local => "local",
            Mode::Unavailable => "unavailable",
        }
    }
}

/// One dimension's state after the decision, for the binding scope (the one
/// with the least left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Most that may be spent at once: the burst (this node's share of it in
    /// local mode).
    pub limit: u32,
    pub remaining: u32,
    /// Until the limit is back to `limit`.
    pub reset: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The limit is spent; the request fits after `retry_after`.
    Limit {
        scope: ScopeKind,
        dimension: Dimension,
    },
    /// The request needs more than the limit's burst (or the limit is 0):
    /// waiting will not help.
    TooLarge {
        scope: ScopeKind,
        dimension: Dimension,
    },
    /// Redis is unreachable and the limiter is configured to deny.
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    pub cause: Cause,
    /// Always more than zero.
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// `None`: allowed.
    pub denial: Option<Denial>,
    /// `None` when no scope limits that dimension (or the decision was made
    /// without looking: too large, unavailable).
    pub requests: Option<Quota>,
    pub tokens: Option<Quota>,
    pub mode: Mode,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.denial.map(|d| d.retry_after)
    }

    pub(crate) fn allowed_without_limits(mode: Mode) -> Self {
        Self {
            denial: None,
            requests: None,
            tokens: None,
            mode,
        }
    }

    pub(crate) fn denied(cause: Cause, retry_after: Duration, mode: Mode) -> Self {
        Self {
            denial: Some(Denial {
                cause,
                retry_after: retry_after.max(Duration::from_micros(1)),
            }),
            requests: None,
            tokens: None,
            mode,
        }
    }
}

/// What an admission charged to token limits, to correct once the real
/// count is known ([`super::Limiter::settle`]).
#[derive(Debug)]
pub struct Reservation {
    pub(crate) mode: Mode,
    pub(crate) estimated: u32,
    /// Storage key and microseconds a token, per token limit charged.
    pub(crate) tokens: Vec<(String, f64)>,
}

impl Reservation {
    pub fn estimated_tokens(&self) -> u32 {
        self.estimated
    }
}

#[derive(Debug)]
pub struct Admission {
    pub decision: Decision,
    /// `Some` when allowed and some scope limits tokens.
    pub reservation: Option<Reservation>,
}

/// One limit the request is checked against.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub key: String,
    pub scope: ScopeKind,
    pub dimension: Dimension,
    pub rate: Rate,
    pub units: u32,
}

/// Turns a store's verdict and debts into a decision.
pub(crate) fn decide(
    planned: &[Planned],
    cells: &[Cell],
    verdict: Verdict,
    debts: &[f64],
    share: f64,
    mode: Mode,
) -> Decision {
    let mut requests: Option<Quota> = None;
    let mut tokens: Option<Quota> = None;
    for ((plan, cell), debt) in planned.iter().zip(cells).zip(debts) {
        let limit = gcra::reported_limit(plan.rate, share);
        let quota = Quota {
            limit,
            remaining: cell.remaining(*debt, limit),
            reset: micros(*debt),
        };
        let slot = match plan.dimension {
            Dimension::Requests => &mut requests,
            Dimension::Tokens => &mut tokens,
        };
        // The scope with the least left binds.
        if slot.is_none_or(|held| quota.remaining < held.remaining) {
            *slot = Some(quota);
        }
    }
    let denial = match verdict {
        Verdict::Admit => None,
        Verdict::Deny { index, retry_us } => Some(Denial {
            // Stores check the index; a denial stays a denial regardless.
            cause: planned
                .get(index)
                .map_or(Cause::Unavailable, |plan| Cause::Limit {
                    scope: plan.scope,
                    dimension: plan.dimension,
                }),
            retry_after: micros(retry_us).max(Duration::from_micros(1)),
        }),
    };
    Decision {
        denial,
        requests,
        tokens,
        mode,
    }
}

/// Rounded up: a client told to come back then must fit.
fn micros(us: f64) -> Duration {
    Duration::from_micros(us.max(0.0).ceil() as u64)
}

//! Rate limits per API key and per workspace, in requests and in tokens per
//! minute, shared by every data plane through Redis.
//!
//! # Algorithm
//!
//! GCRA (see `gcra.rs`): each limit is one number in Redis, its theoretical
//! arrival time (TAT), kept in Redis server time (`TIME`) so the data
//! planes' clocks do not matter. A limit of `n` a minute with burst `b`
//! lets `b` units pass at once and earns one back every `60/n` seconds: a
//! token bucket of size `b` refilled continuously. The burst defaults to a
//! minute's worth. One admission checks every limit that applies (key and
//! workspace, requests and tokens) in one script call, one round trip, and
//! charges all of them or none. A key expires when its TAT passes, since a
//! missing key means a full bucket.
//!
//! Tokens are charged before the answer exists: the caller passes an
//! estimate (prompt tokens plus the most the request may generate), and
//! [`Limiter::settle`] corrects the TAT by the difference once the real
//! count is known (a refund when fewer were used, a debit when more). A
//! request that needs more than a limit's burst is denied as
//! [`Cause::TooLarge`]: waiting would not help.
//!
//! # Tolerance
//!
//! With Redis: exact. Across every data plane, the units admitted by a
//! limit in any span of `t` seconds never exceed `burst + t × rate/60`
//! (rounding adds at most a microsecond of credit per decision). For
//! requests that is the whole guarantee. For tokens the limit holds on the
//! estimates; real usage can exceed it only by what settlements debit
//! later: at most the tokens of the requests in flight beyond their
//! estimates, which is zero when the estimate includes `max_tokens`. Those
//! debits are still charged, so later requests wait for them.
//!
//! While Redis is unreachable, each node enforces its share of every limit
//! in process (burst and rate times [`Limiter::set_share`], 1/n with n data
//! planes); the fleet as a whole then admits the limit when the traffic is
//! spread evenly and the share is right. Two more allowances: the local
//! buckets start full when a node falls back (up to `burst × share` more
//! per node, once), and a request above a node's share of a token burst
//! (but within the burst) passes when that node's bucket is full, then
//! leaves it in debt. With `--rate-limit-on-redis-down deny` nothing passes
//! instead ([`Cause::Unavailable`]).
//!
//! # When Redis fails
//!
//! Every Redis call has a deadline (`--rate-limit-redis-timeout`, 50 ms).
//! The first call that fails switches the node to local mode, logged once
//! with the error (never a key or URL); then one request per
//! `--rate-limit-probe-interval` tries Redis again, and the first answer
//! switches back, logged once too. Metrics ([`LimiterMetrics::register`]):
//! `switchyard_dp_limiter_decisions_total{mode,decision}`,
//! `switchyard_dp_limiter_local_mode` (1 while Redis is configured and
//! unreachable) and `switchyard_dp_limiter_redis_failures_total{operation,kind}`.
//!
//! # Use
//!
//! ```no_run
//! # async fn handle(limiter: &switchyard_data_plane::limits::Limiter) {
//! use switchyard_data_plane::limits::{Limit, Scope};
//!
//! let limits = [
//!     (Scope::Key("key-id"), Limit::per_minute(Some(60), Some(100_000))),
//!     (Scope::Workspace("acme"), Limit::per_minute(Some(600), None)),
//! ];
//! let admission = limiter.admit(&limits, 1_200).await;
//! let mut headers = http::HeaderMap::new();
//! admission.decision.append_headers(&mut headers);
//! if !admission.decision.allowed() {
//!     return; // 429 with these headers
//! }
//! // ... call the provider; 900 tokens were used in the end ...
//! if let Some(reservation) = admission.reservation {
//!     limiter.settle(reservation, 900).await;
//! }
//! # }
//! ```

mod config;
mod decision;
mod gcra;
pub mod headers;
mod limiter;
mod local;
mod metrics;
mod mode;
mod remote;
mod scope;

pub use config::{LimiterArgs, LimiterConfig, LimiterError, OnRedisDown};
pub use decision::{Admission, Cause, Decision, Denial, Mode, Quota, Reservation};
pub use limiter::Limiter;
pub use metrics::{DecisionLabels, FailureLabels, LimiterMetrics};
pub use scope::{Dimension, Limit, Rate, Scope, ScopeKind};

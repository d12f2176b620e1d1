//! The Redis store: every data plane's limits in one place, each decision one
//! script call (EVALSHA; the script is loaded again after a NOSCRIPT, as
//! after a Redis restart). Every call has a deadline, so a Redis that is
//! gone costs a request at most that long.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError, Script, ScriptInvocation};
use secrecy::{ExposeSecret, SecretString};

use super::config::LimiterError;
use super::gcra::{Cell, Verdict};

const ADMIT: &str = include_str!("admit.lua");
const SETTLE: &str = include_str!("settle.lua");

pub(crate) struct RedisStore {
    manager: ConnectionManager,
    admit: Script,
    settle: Script,
    timeout: Duration,
}

/// Why a call got no answer. Displayed in logs: it names no key or URL.
#[derive(Debug)]
pub(crate) enum Failure {
    Timeout(Duration),
    Redis(RedisError),
    /// The script answered something it never sends.
    Reply,
}

impl Failure {
    /// The `kind` label of the failure metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Timeout(_) => "timeout",
            Failure::Redis(e) if reconnects(e) => "unreachable",
            Failure::Redis(_) | Failure::Reply => "error",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout(after) => write!(f, "no answer within {after:?}"),
            Failure::Redis(e) => write!(f, "{e}"),
            Failure::Reply => f.write_str("unexpected reply from the rate-limit script"),
        }
    }
}

/// Errors after which the connection manager reconnects, so one more try
/// within the same deadline may find Redis back.
fn reconnects(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
}

impl RedisStore {
    /// Connects lazily: a Redis that is down at start-up is found out (and
    /// waited for) by the first request, not here. Needs a Tokio runtime.
    pub fn new(url: &SecretString, timeout: Duration) -> Result<Self, LimiterError> {
        // The manager spawns its reconnect task at once.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(LimiterError::Redis("no Tokio runtime".to_owned()));
        }
        let client =
            redis::Client::open(url.expose_secret()).map_err(|_| LimiterError::RedisUrl)?;
        // One connection attempt per call: while Redis is down, the prober
        // tries again, not a backoff loop inside the manager.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(0);
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| LimiterError::Redis(e.to_string()))?;
        Ok(Self {
            manager,
            admit: Script::new(ADMIT),
            settle: Script::new(SETTLE),
            timeout,
        })
    }

    /// Charges every cell or none, atomically across all data planes.
    /// Returns the verdict and each cell's debt after it.
    pub async fn admit(
        &self,
        keys: &[String],
        cells: &[Cell],
    ) -> Result<(Verdict, Vec<f64>), Failure> {
        let mut invocation = self.admit.prepare_invoke();
        for (key, cell) in keys.iter().zip(cells) {
            invocation.key(key).arg(cell.cost).arg(cell.window);
        }
        let reply: Vec<i64> = self.call(&invocation).await?;
        let [retry, index, debts @ ..] = reply.as_slice() else {
            return Err(Failure::Reply);
        };
        if debts.len() != keys.len() {
            return Err(Failure::Reply);
        }
        let verdict = match usize::try_from(*index) {
            Ok(0) => Verdict::Admit,
            Ok(one_based) if one_based <= keys.len() => Verdict::Deny {
                index: one_based - 1,
                retry_us: *retry as f64,
            },
            _ => return Err(Failure::Reply),
        };
        Ok((verdict, debts.iter().map(|d| *d as f64).collect()))
    }

    /// Moves each key's TAT by its delta in microseconds (negative refunds).
    pub async fn adjust(&self, adjustments: &[(String, f64)]) -> Result<(), Failure> {
        let mut invocation = self.settle.prepare_invoke();
        for (key, delta) in adjustments {
            invocation.key(key).arg(*delta);
        }
        let _: redis::Value = self.call(&invocation).await?;
        Ok(())
    }

    async fn call<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, Failure> {
        let mut connection = self.manager.clone();
        let attempt = async {
            match invocation.invoke_async(&mut connection).await {
                // The first call after a lost connection gets the old error
                // and starts the reconnect; the second waits for it.
                Err(e) if reconnects(&e) => invocation.invoke_async(&mut connection).await,
                other => other,
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Timeout(self.timeout)),
        }
    }
}

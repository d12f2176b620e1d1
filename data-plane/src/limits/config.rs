//! The limiter's flags (with `SWITCHYARD_*` environment fallbacks),
//! validated into [`LimiterConfig`].

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;

#[derive(Clone, clap::Args)]
pub struct LimiterArgs {
    /// Redis that every data plane shares rate limits through. Without it
    /// each node enforces limits on its own (right for a single node).
    #[arg(long, env = "SWITCHYARD_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Longest a request waits for Redis before this node falls back to
    /// local limits.
    #[arg(long, env = "SWITCHYARD_RATE_LIMIT_REDIS_TIMEOUT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub rate_limit_redis_timeout: Duration,
    /// While Redis is unreachable, how often one request tries it again.
    #[arg(long, env = "SWITCHYARD_RATE_LIMIT_PROBE_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub rate_limit_probe_interval: Duration,
    /// While Redis is unreachable: `local` enforces this node's share of
    /// every limit, `deny` refuses every rate-limited request.
    #[arg(
        long,
        env = "SWITCHYARD_RATE_LIMIT_ON_REDIS_DOWN",
        value_enum,
        default_value = "local"
    )]
    pub rate_limit_on_redis_down: OnRedisDown,
    /// Prefix of the limiter's keys in Redis.
    #[arg(
        long,
        env = "SWITCHYARD_RATE_LIMIT_KEY_PREFIX",
        default_value = "switchyard:rl"
    )]
    pub rate_limit_key_prefix: String,
    /// Most limits one node tracks in process; idle ones go first.
    #[arg(
        long,
        env = "SWITCHYARD_RATE_LIMIT_LOCAL_ENTRIES",
        default_value_t = 100_000
    )]
    pub rate_limit_local_entries: usize,
}

impl fmt::Debug for LimiterArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("LimiterArgs")
            .field("redis_url", &self.redis_url.as_ref().map(|_| "[REDACTED]"))
            .field("rate_limit_redis_timeout", &self.rate_limit_redis_timeout)
            .field("rate_limit_probe_interval", &self.rate_limit_probe_interval)
            .field("rate_limit_on_redis_down", &self.rate_limit_on_redis_down)
            .field("rate_limit_key_prefix", &self.rate_limit_key_prefix)
            .field("rate_limit_local_entries", &self.rate_limit_local_entries)
            .finish()
    }
}

/// What a node does while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnRedisDown {
    /// Enforce this node's share of every limit in process.
    Local,
    /// Deny every rate-limited request (fail closed).
    Deny,
}

#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// `None`: limits are enforced in process only.
    pub redis_url: Option<SecretString>,
    pub redis_timeout: Duration,
    pub probe_interval: Duration,
    pub on_redis_down: OnRedisDown,
    pub key_prefix: String,
    pub local_entries: usize,
}

impl LimiterConfig {
    /// The defaults of the flags, with or without Redis.
    pub fn new(redis_url: Option<SecretString>) -> Self {
        Self {
            redis_url,
            redis_timeout: Duration::from_millis(50),
            probe_interval: Duration::from_secs(1),
            on_redis_down: OnRedisDown::Local,
            key_prefix: "switchyard:rl".to_owned(),
            local_entries: 100_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("--redis-url: must be a redis:// or unix:// URL")]
    RedisUrl,
    #[error("--rate-limit-redis-timeout: must be between 1ms and 5s")]
    RedisTimeout,
    #[error("--rate-limit-probe-interval: must be between 10ms and 1m")]
    ProbeInterval,
    #[error("--rate-limit-key-prefix: must be 1 to 64 characters without spaces")]
    KeyPrefix,
    #[error("--rate-limit-local-entries: must be at least 1000")]
    LocalEntries,
    #[error("cannot set up the Redis connection: {0}")]
    Redis(String),
}

impl TryFrom<LimiterArgs> for LimiterConfig {
    type Error = LimiterError;

    fn try_from(args: LimiterArgs) -> Result<Self, Self::Error> {
        let redis_url = match args.redis_url {
            Some(url) if !url.trim().is_empty() => {
                let url = url.trim();
                if !["redis://", "unix://", "redis+unix://"]
                    .iter()
                    .any(|scheme| url.starts_with(scheme))
                    || redis::Client::open(url).is_err()
                {
                    return Err(LimiterError::RedisUrl);
                }
                Some(SecretString::from(url.to_owned()))
            }
            _ => None,
        };
        if !(Duration::from_millis(1)..=Duration::from_secs(5))
            .contains(&args.rate_limit_redis_timeout)
        {
            return Err(LimiterError::RedisTimeout);
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(60))
            .contains(&args.rate_limit_probe_interval)
        {
            return Err(LimiterError::ProbeInterval);
        }
        let prefix = &args.rate_limit_key_prefix;
        if prefix.is_empty() || prefix.len() > 64 || prefix.contains(char::is_whitespace) {
            return Err(LimiterError::KeyPrefix);
        }
        if args.rate_limit_local_entries < 1000 {
            return Err(LimiterError::LocalEntries);
        }
        Ok(Self {
            redis_url,
            redis_timeout: args.rate_limit_redis_timeout,
            probe_interval: args.rate_limit_probe_interval,
            on_redis_down: args.rate_limit_on_redis_down,
            key_prefix: args.rate_limit_key_prefix,
            local_entries: args.rate_limit_local_entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: LimiterArgs,
    }

    fn parse(flags: &[&str]) -> Result<LimiterConfig, LimiterError> {
        let cli = Cli::try_parse_from(std::iter::once("dp").chain(flags.iter().copied())).unwrap();
        LimiterConfig::try_from(cli.args)
    }

    #[test]
    fn defaults_and_flags() {
        let config = parse(&[]).unwrap();
        assert!(config.redis_url.is_none());
        assert_eq!(config.redis_timeout, Duration::from_millis(50));
        assert_eq!(config.on_redis_down, OnRedisDown::Local);
        let config = parse(&[
            "--redis-url",
            "redis://:hunter2@127.0.0.1:6379/0",
            "--rate-limit-on-redis-down",
            "deny",
            "--rate-limit-redis-timeout",
            "20ms",
        ])
        .unwrap();
        assert!(config.redis_url.is_some());
        assert_eq!(config.on_redis_down, OnRedisDown::Deny);
        assert_eq!(config.redis_timeout, Duration::from_millis(20));
        // Neither form of the config prints the password.
        assert!(!format!("{config:?}").contains("hunter2"));
        let cli = Cli::try_parse_from(["dp", "--redis-url", "redis://:hunter2@h:1"]).unwrap();
        assert!(!format!("{:?}", cli.args).contains("hunter2"));
    }

    #[test]
    fn bad_values_are_refused_by_flag() {
        for (flags, expected) in [
            (&["--redis-url", "http://cache:6379"][..], "--redis-url"),
            (&["--redis-url", "redis://"][..], "--redis-url"),
            (
                &["--rate-limit-redis-timeout", "0s"][..],
                "--rate-limit-redis-timeout",
            ),
            (
                &["--rate-limit-probe-interval", "2m"][..],
                "--rate-limit-probe-interval",
            ),
            (
                &["--rate-limit-key-prefix", "a b"][..],
                "--rate-limit-key-prefix",
            ),
            (
                &["--rate-limit-local-entries", "10"][..],
                "--rate-limit-local-entries",
            ),
        ] {
            let message = parse(flags).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{flags:?}: {message}");
        }
    }
}

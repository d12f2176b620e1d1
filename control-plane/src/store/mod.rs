//! Persistence through sqlx: the registry and the trace store, on Postgres or
//! SQLite, chosen by the database URL. One SQL dialect serves both: `$N`
//! placeholders, `ON CONFLICT`, `RETURNING`, and times as Unix milliseconds.

mod aggregates;
mod health;
mod keys;
mod leadership;
mod migrations;
mod quality;
mod registry;
mod sql;
mod traces;

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use aggregates::{AggregateQuery, Grouping};
pub use health::StoredWindow;
pub use keys::{KeyRecord, KeyRights, NewKey};
pub use quality::OutcomeRow;
pub use registry::{Entity, RegistryState, Revision, Stored};
pub use traces::{ReplayFilter, TraceFilter, TraceInsertOutcome, TracePage};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL scheme {0:?}: expected postgres:// or sqlite://")]
    UnsupportedUrl(String),
    #[error("{entity} {key:?} not found")]
    NotFound { entity: &'static str, key: String },
    #[error("{entity} {key:?} already exists")]
    AlreadyExists { entity: &'static str, key: String },
    #[error("{0}")]
    FailedPrecondition(String),
    /// A leader-only write by a replica whose epoch is no longer the newest.
    #[error("epoch {epoch} is fenced: epoch {current} leads now")]
    Fenced { epoch: u64, current: u64 },
    #[error("stored {entity} {key:?} is unreadable: {reason}")]
    Corrupt {
        entity: &'static str,
        key: String,
        reason: String,
    },
}

/// Every database error, counted where it is created: one process, one count.
static DATABASE_ERRORS: LazyLock<Counter> = LazyLock::new(Counter::default);

/// The process's count of failed database calls (`switchyard_cp_store_errors_total`).
pub fn database_errors() -> Counter {
    DATABASE_ERRORS.clone()
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        DATABASE_ERRORS.inc();
        Self::Database(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Shared handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Whether ingestion writes a `trace_candidates` row per scored candidate.
    candidate_rows: bool,
}

impl Store {
    /// Connects, then applies the backend's migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            let scheme = url.split(':').next().unwrap_or_default().to_owned();
            return Err(StoreError::UnsupportedUrl(scheme));
        };
        let options = AnyConnectOptions::from_str(url)?.disable_statement_logging();
        let pool = AnyPoolOptions::new()
            // SQLite has one writer; more connections only add lock contention.
            .max_connections(if backend == Backend::Sqlite { 1 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        migrations::for_backend(backend).run(&pool).await?;
        Ok(Self {
            pool,
            backend,
            candidate_rows: false,
        })
    }

    /// Also stores each trace's score breakdown as rows of `trace_candidates`,
    /// for SQL of one's own. Off by default: it nearly triples Postgres's work
    /// per trace at ingestion (bench/README.md, "Trace store").
    #[must_use]
    pub fn with_candidate_rows(mut self, on: bool) -> Self {
        self.candidate_rows = on;
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers; used by readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub(crate) fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

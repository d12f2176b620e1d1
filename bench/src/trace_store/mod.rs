//! The pieces of `switchyard-trace-store`: the traces, the timed ingestion
//! runs, the timed ListTraces filters, the Postgres facts and the report.

pub mod corpus;
pub mod cpu;
pub mod fleet;
pub mod ingest;
pub mod queries;
pub mod report;
pub mod what_if;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use switchyard_control_plane::store::{Store, TraceFilter};
use tokio::time::Instant;

use corpus::Corpus;
use ingest::{Ingested, Load};
use queries::{Stored, Timed};

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Traces stored before ListTraces is timed.
    pub traces: u64,
    pub batch: usize,
    pub writers: usize,
    /// Traces of the one-writer run and of the concurrent run.
    pub single_writer_traces: u64,
    pub concurrent_traces: u64,
    /// Traces of the concurrent run on the full table, after ListTraces; 0
    /// skips it.
    pub at_size_traces: u64,
    /// The newest this many traces go through WhatIf.
    pub what_if_traces: u64,
    /// Received times span this long up to now.
    pub span: Duration,
    pub page: u32,
    pub runs: usize,
    pub warmup: usize,
    pub seed: u64,
}

/// The server and how it is set up.
#[derive(Debug, Clone, Default)]
pub struct Server {
    pub version: String,
    /// `name = value` of the settings that matter for writes and reads.
    pub settings: Vec<(String, String)>,
}

/// Settings read with `SHOW`.
const SETTINGS: [&str; 6] = [
    "shared_buffers",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "max_wal_size",
];

/// Sizes on disk (table, its indexes and TOAST), in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sizes {
    pub traces: i64,
    pub attempts: i64,
    pub traces_indexes: i64,
}

/// The indexes the migrations gave the two tables, by name.
#[derive(Debug, Clone, Default)]
pub struct Indexes {
    pub traces: Vec<String>,
    pub attempts: Vec<String>,
}

/// An ingestion run and how many traces were stored before it.
#[derive(Debug, Clone)]
pub struct Run {
    pub label: &'static str,
    pub stored_before: u64,
    pub ingested: Ingested,
}

#[derive(Debug, Clone)]
pub struct Measured {
    pub server: Server,
    pub runs: Vec<Run>,
    /// Index into `runs` of the run that filled the rest of the table.
    pub fill: usize,
    /// Total time to store `plan.traces`, from the first batch of the first
    /// run to the last commit of the fill.
    pub filled_in: Duration,
    pub analyze: Duration,
    pub queries: Vec<Timed>,
    pub what_if: what_if::WhatIfTimed,
    pub sizes: Sizes,
    pub indexes: Indexes,
    pub rows: i64,
    pub attempt_rows: i64,
    /// Protobuf body sizes of a sample of the traces, sorted.
    pub body_sizes: Vec<usize>,
}

/// Runs everything against the (fresh) database at `url`.
pub async fn measure(url: &str, plan: &Plan) -> anyhow::Result<Measured> {
    ensure!(
        plan.single_writer_traces + plan.concurrent_traces <= plan.traces,
        "--traces must cover the one-writer and the concurrent run"
    );
    let store = Store::connect(url)
        .await
        .context("connecting the store (and applying migrations)")?;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("connecting to the benchmark's database")?;
    let server = server(&admin).await?;
    let postmaster = postmaster(&admin).await;

    let span_ms = i64::try_from(plan.span.as_millis())?;
    let start_ms = now_ms() - span_ms;
    eprintln!(
        "drawing traces (seed {}), spread over the last {} days",
        plan.seed,
        span_ms / 86_400_000
    );
    let corpus = Arc::new(Corpus::new(plan.seed, start_ms, span_ms, plan.traces));

    let mut runs = Vec::new();
    let fill_started = Instant::now();
    let stages = [
        ("1 writer", 1, plan.single_writer_traces),
        ("concurrent", plan.writers, plan.concurrent_traces),
        (
            "fill",
            plan.writers,
            plan.traces - plan.single_writer_traces - plan.concurrent_traces,
        ),
    ];
    let mut first = 0;
    for (label, writers, traces) in stages {
        if traces == 0 {
            continue;
        }
        let load = Load {
            first,
            traces,
            writers,
            batch: plan.batch,
        };
        eprintln!("{label}: {traces} traces, {writers} writer(s), {first} stored");
        let ingested = ingest::run(&store, &corpus, load, postmaster).await?;
        eprintln!(
            "  {:.1} s, {:.0} traces/s",
            ingested.elapsed.as_secs_f64(),
            ingested.rate()
        );
        runs.push(Run {
            label,
            stored_before: first,
            ingested,
        });
        first += traces;
    }
    let filled_in = fill_started.elapsed();
    let fill = runs.len().saturating_sub(1);

    // Autovacuum would analyze the grown table on its own schedule; do it now
    // so every filter is planned on current statistics.
    let analyzing = Instant::now();
    sqlx::query("ANALYZE traces, trace_attempts")
        .execute(&admin)
        .await
        .context("analyzing the trace tables")?;
    let analyze = analyzing.elapsed();
    let (rows, attempt_rows) = counts(&admin).await?;
    let expected_attempts: u64 = runs.iter().map(|r| r.ingested.attempts).sum();
    let expected_attempts = i64::try_from(expected_attempts)?;
    ensure!(
        rows == i64::try_from(plan.traces)?,
        "{rows} trace rows stored, expected {}",
        plan.traces
    );
    ensure!(
        attempt_rows == expected_attempts,
        "{attempt_rows} attempt rows stored, expected {expected_attempts}"
    );

    let newest = store
        .list_traces(&TraceFilter {
            limit: plan.page,
            ..Default::default()
        })
        .await
        .context("listing the newest page")?;
    let stored = Stored {
        first_ms: corpus.received_ms(0),
        last_ms: corpus.received_ms(plan.traces - 1),
        page: plan.page,
        after_newest: newest.next,
    };
    eprintln!(
        "ListTraces: {} filters, {} runs each after {} untimed",
        queries::QUERIES.len(),
        plan.runs,
        plan.warmup
    );
    let queries = queries::run(&store, &stored, plan.runs, plan.warmup, plan.seed).await?;
    let newest = plan.what_if_traces.clamp(1, plan.traces);
    eprintln!("WhatIf over the newest {newest} traces, 3 runs");
    let what_if = what_if::run(
        &store,
        newest,
        corpus.received_ms(plan.traces - newest),
        corpus.received_ms(plan.traces - 1) + 1,
        3,
    )
    .await?;
    let sizes = sizes(&admin).await?;
    let indexes = Indexes {
        traces: indexes(&admin, "traces").await?,
        attempts: indexes(&admin, "trace_attempts").await?,
    };

    if plan.at_size_traces > 0 {
        let load = Load {
            first: plan.traces,
            traces: plan.at_size_traces,
            writers: plan.writers,
            batch: plan.batch,
        };
        eprintln!(
            "at size: {} traces, {} writers, {} stored",
            load.traces, load.writers, plan.traces
        );
        let ingested = ingest::run(&store, &corpus, load, postmaster).await?;
        runs.push(Run {
            label: "at size",
            stored_before: plan.traces,
            ingested,
        });
    }
    store.close().await;
    admin.close().await;
    Ok(Measured {
        server,
        runs,
        fill,
        filled_in,
        analyze,
        queries,
        what_if,
        sizes,
        indexes,
        rows,
        attempt_rows,
        body_sizes: corpus.body_sizes(),
    })
}

async fn server(admin: &sqlx::PgPool) -> anyhow::Result<Server> {
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(admin)
        .await
        .context("reading the server version")?;
    let mut settings = Vec::new();
    for name in SETTINGS {
        // `SHOW` takes no parameters; the names are constants above.
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}")))
            .fetch_one(admin)
            .await
            .with_context(|| format!("reading the setting {name}"))?;
        settings.push((name.to_owned(), value));
    }
    Ok(Server { version, settings })
}

/// The Postgres server's main process, when it runs on this machine: the
/// parent of this connection's backend, both named `postgres`.
async fn postmaster(admin: &sqlx::PgPool) -> Option<u32> {
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(admin)
        .await
        .ok()?;
    let backend = u32::try_from(backend).ok()?;
    let is_postgres = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres")
    };
    let parent = cpu::parent_of(backend)?;
    (is_postgres(backend) && is_postgres(parent)).then_some(parent)
}

async fn counts(admin: &sqlx::PgPool) -> anyhow::Result<(i64, i64)> {
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM traces")
        .fetch_one(admin)
        .await
        .context("counting traces")?;
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM trace_attempts")
        .fetch_one(admin)
        .await
        .context("counting attempts")?;
    Ok((rows, attempts))
}

async fn indexes(admin: &sqlx::PgPool, table: &str) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
         AND tablename = $1 ORDER BY indexname",
    )
    .bind(table)
    .fetch_all(admin)
    .await
    .with_context(|| format!("listing the indexes of {table}"))
}

async fn sizes(admin: &sqlx::PgPool) -> anyhow::Result<Sizes> {
    let (traces, attempts, traces_indexes): (i64, i64, i64) = sqlx::query_as(
        "SELECT pg_total_relation_size('traces'), pg_total_relation_size('trace_attempts'), \
         pg_indexes_size('traces')",
    )
    .fetch_one(admin)
    .await
    .context("reading table sizes")?;
    Ok(Sizes {
        traces,
        attempts,
        traces_indexes,
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

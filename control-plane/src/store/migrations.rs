//! Migrations compiled into the binary, so a control plane needs no files beside it.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::Backend;

const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "workspaces",
        include_str!("../../../migrations/postgres/0002_workspaces.sql"),
    ),
    (
        3,
        "quality",
        include_str!("../../../migrations/postgres/0003_quality.sql"),
    ),
    (
        4,
        "health_windows",
        include_str!("../../../migrations/postgres/0004_health_windows.sql"),
    ),
    (
        5,
        "leadership",
        include_str!("../../../migrations/postgres/0005_leadership.sql"),
    ),
    (
        6,
        "trace_queries",
        include_str!("../../../migrations/postgres/0006_trace_queries.sql"),
    ),
    (
        7,
        "replays",
        include_str!("../../../migrations/postgres/0007_replays.sql"),
    ),
    (
        8,
        "trace_body_lz4",
        include_str!("../../../migrations/postgres/0008_trace_body_lz4.sql"),
    ),
    (
        9,
        "score_breakdowns",
        include_str!("../../../migrations/postgres/0009_score_breakdowns.sql"),
    ),
    (
        10,
        "api_keys",
        include_str!("../../../migrations/postgres/0010_api_keys.sql"),
    ),
];

const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../../migrations/sqlite/0001_foundation.sql"),
    ),
    (
        2,
        "workspaces",
        include_str!("../../../migrations/sqlite/0002_workspaces.sql"),
    ),
    (
        3,
        "quality",
        include_str!("../../../migrations/sqlite/0003_quality.sql"),
    ),
    (
        4,
        "health_windows",
        include_str!("../../../migrations/sqlite/0004_health_windows.sql"),
    ),
    (
        5,
        "leadership",
        include_str!("../../../migrations/sqlite/0005_leadership.sql"),
    ),
    (
        6,
        "trace_queries",
        include_str!("../../../migrations/sqlite/0006_trace_queries.sql"),
    ),
    (
        7,
        "replays",
        include_str!("../../../migrations/sqlite/0007_replays.sql"),
    ),
    // 8 (lz4 trace bodies) is Postgres only.
    (
        9,
        "score_breakdowns",
        include_str!("../../../migrations/sqlite/0009_score_breakdowns.sql"),
    ),
    (
        10,
        "api_keys",
        include_str!("../../../migrations/sqlite/0010_api_keys.sql"),
    ),
];

pub fn for_backend(backend: Backend) -> Migrator {
    let list = match backend {
        Backend::Postgres => POSTGRES,
        Backend::Sqlite => SQLITE,
    };
    let migrations = list
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

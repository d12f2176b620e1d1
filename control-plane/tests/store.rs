//! The store against both real backends: Postgres (from scripts/test.sh) and a
//! SQLite file. Same assertions on both, since both serve the same code paths.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

use prost_types::Timestamp;
use switchyard_control_plane::store::{
    AggregateQuery, Grouping, KeyRights, NewKey, Store, StoreError, TraceFilter,
};
use switchyard_domain::{
    Capabilities, ModelSpec, ProviderKind, ProviderSpec, SimulatedParams, Tier, WorkspaceSpec,
};
use switchyard_proto::v1 as pb;

async fn postgres() -> Store {
    Store::connect(&postgres_url().await).await.unwrap()
}

/// A new, empty database on the test server.
async fn postgres_url() -> String {
    let admin = std::env::var("SWITCHYARD_TEST_DATABASE_URL")
        .expect("SWITCHYARD_TEST_DATABASE_URL is not set: run the suite with ./scripts/test.sh");
    let name = format!("sy_{}", uuid::Uuid::new_v4().simple());
    let admin_store = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin_store)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

async fn sqlite(dir: &tempfile::TempDir) -> Store {
    Store::connect(&sqlite_url(dir)).await.unwrap()
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display())
}

/// One test per backend (Postgres, a SQLite file) running the same scenario.
macro_rules! on_both_backends {
    ($postgres:ident, $sqlite:ident, $scenario:ident) => {
        #[tokio::test]
        async fn $postgres() {
            $scenario(postgres().await).await;
        }

        #[tokio::test]
        async fn $sqlite() {
            let dir = tempfile::tempdir().unwrap();
            $scenario(sqlite(&dir).await).await;
        }
    };
}

fn provider(name: &str) -> ProviderSpec {
    ProviderSpec {
        name: name.into(),
        kind: ProviderKind::Simulated,
        base_url: String::new(),
        api_key_ref: String::new(),
        headers: Default::default(),
        enabled: true,
        simulated: Some(SimulatedParams {
            seed: 1,
            first_token_latency_ms: 1,
            tokens_per_second: 10,
            failure_rate: 0.0,
            output_tokens: 2,
        }),
    }
}

fn model(provider: &str, name: &str) -> ModelSpec {
    ModelSpec {
        provider: provider.into(),
        name: name.into(),
        family: "f".into(),
        capabilities: Capabilities::default(),
        context_window: 1000,
        input_price_per_mtok: 1.0,
        output_price_per_mtok: 1.0,
        region: String::new(),
        tier: Tier::Economy,
        aliases: vec![],
        enabled: true,
        circuit: switchyard_domain::CircuitMode::Auto,
    }
}

fn trace(id: &str, received_ms: i64, provider: &str, outcome: pb::Outcome) -> pb::Trace {
    pb::Trace {
        trace_id: id.into(),
        request_id: format!("req-{id}"),
        workspace: "default".into(),
        requested_model: "m".into(),
        final_provider: provider.into(),
        final_model: "m".into(),
        final_target: format!("{provider}/m"),
        outcome: outcome.into(),
        received_at: Some(Timestamp {
            seconds: received_ms / 1000,
            nanos: i32::try_from(received_ms % 1000).unwrap() * 1_000_000,
        }),
        attempts: vec![pb::Attempt {
            target_id: format!("{provider}/m"),
            success: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn registry_crud_bumps_revisions_and_guards_references(store: Store) {
    let start = store.revision().await.unwrap();
    let (stored, r1) = store.create(provider("p")).await.unwrap();
    assert_eq!(stored.spec.name, "p");
    assert_eq!(r1, start + 1);
    assert!(matches!(
        store.create(provider("p")).await,
        Err(StoreError::AlreadyExists { .. })
    ));

    // A model must name an existing provider.
    assert!(matches!(
        store.create(model("ghost", "m")).await,
        Err(StoreError::FailedPrecondition(_))
    ));
    let (_, r2) = store.create(model("p", "m")).await.unwrap();
    assert_eq!(r2, r1 + 1);

    // A provider with models cannot go.
    assert!(matches!(
        store.delete::<ProviderSpec>(vec!["p".into()]).await,
        Err(StoreError::FailedPrecondition(_))
    ));

    let mut changed = model("p", "m");
    changed.context_window = 2000;
    let (updated, r3) = store.update(changed).await.unwrap();
    assert_eq!(updated.spec.context_window, 2000);
    assert_eq!(r3, r2 + 1);
    assert!(matches!(
        store.update(model("p", "nope")).await,
        Err(StoreError::NotFound { .. })
    ));

    let state = store.registry_at_one_revision().await.unwrap();
    assert_eq!(
        (state.revision, state.providers.len(), state.models.len()),
        (r3, 1, 1)
    );

    // Workspaces live beside the rest and count in the same revision.
    let (_, r4) = store
        .create(WorkspaceSpec::unrestricted("team"))
        .await
        .unwrap();
    assert_eq!(r4, r3 + 1);
    assert_eq!(
        store
            .registry_at_one_revision()
            .await
            .unwrap()
            .workspaces
            .len(),
        1
    );
    // A workspace with an active key cannot go: the key would stop working
    // without anyone having revoked it.
    let (key, _) = store
        .create_key(&NewKey {
            id: "key-1".into(),
            workspace: "team".into(),
            name: "ci".into(),
            prefix: "sy-abc".into(),
            rights: KeyRights::default(),
            secret_sha256: [7; 32],
        })
        .await
        .unwrap();
    match store.delete::<WorkspaceSpec>(vec!["team".into()]).await {
        Err(StoreError::FailedPrecondition(message)) => {
            assert!(message.contains("1 active API key"), "{message}");
        }
        other => panic!("a workspace with a key was deleted: {other:?}"),
    }
    let (_, r5) = store.revoke_key(&key.id).await.unwrap();
    assert_eq!(r5, r4 + 2, "the refused delete changed nothing");
    store
        .delete::<WorkspaceSpec>(vec!["team".into()])
        .await
        .unwrap();

    store
        .delete::<ModelSpec>(vec!["p".into(), "m".into()])
        .await
        .unwrap();
    let r6 = store
        .delete::<ProviderSpec>(vec!["p".into()])
        .await
        .unwrap();
    assert_eq!(r6, r3 + 6);
    assert!(matches!(
        store.get::<ProviderSpec>(vec!["p".into()]).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn traces_are_idempotent_filterable_and_paginate_stably(store: Store) {
    let batch: Vec<pb::Trace> = (0..25)
        .map(|i| {
            let provider = if i % 2 == 0 { "even" } else { "odd" };
            let outcome = if i % 5 == 0 {
                pb::Outcome::Failed
            } else {
                pb::Outcome::Success
            };
            // Pairs share a millisecond, so the trace id must break ties.
            trace(
                &format!("t{i:03}"),
                1_700_000_000_000 + i / 2,
                provider,
                outcome,
            )
        })
        .collect();
    let windows: Vec<pb::HealthWindow> = ["a/m", "b/m"]
        .into_iter()
        .map(|target| pb::HealthWindow {
            node_id: "dp-1".into(),
            target_id: target.into(),
            start: Some(switchyard_domain::timestamp_from_millis(1_700_000_000_000)),
            end: Some(switchyard_domain::timestamp_from_millis(1_700_000_002_000)),
            attempts: 3,
            successes: 3,
            ..Default::default()
        })
        .collect();
    let first = store.insert_traces(&batch, &windows).await.unwrap();
    assert_eq!((first.inserted, first.duplicates), (25, 0));
    // A resent batch stores nothing twice.
    let again = store.insert_traces(&batch[..10], &windows).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 10));

    // Health windows are kept once each too, for the aggregator, and age out.
    let stored = store.windows_received_since(0, 1_000).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].window.attempts, 3);
    let later = stored[0].received_at_ms + 1;
    assert!(
        store
            .windows_received_since(later, 1_000)
            .await
            .unwrap()
            .is_empty()
    );
    let epoch = store.adopt_epoch("cp").await.unwrap();
    assert_eq!(store.delete_windows_before(epoch, later).await.unwrap(), 2);
    let outcomes = store.outcomes_since(0, 1_000).await.unwrap();
    assert_eq!(outcomes.len(), 25);
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| o.outcome == i32::from(pb::Outcome::Failed))
            .count(),
        5
    );

    let got = store.get_trace("t007").await.unwrap();
    assert_eq!(got, batch[7]);
    assert!(matches!(
        store.get_trace("missing").await,
        Err(StoreError::NotFound { .. })
    ));

    // Walk all pages of 4, inserting a newer trace midway: no trace is seen twice or missed.
    let mut seen = Vec::new();
    let mut filter = TraceFilter {
        limit: 4,
        ..TraceFilter::default()
    };
    loop {
        let page = store.list_traces(&filter).await.unwrap();
        seen.extend(page.traces.iter().map(|t| t.trace_id.clone()));
        if seen.len() == 8 {
            store
                .insert_traces(
                    &[trace(
                        "t999",
                        1_800_000_000_000,
                        "odd",
                        pb::Outcome::Success,
                    )],
                    &[],
                )
                .await
                .unwrap();
        }
        match page.next {
            Some(next) => filter.after = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<String> = batch.iter().map(|t| t.trace_id.clone()).collect();
    expected.reverse();
    assert_eq!(seen, expected);

    let failed_odd = TraceFilter {
        provider: Some("odd".into()),
        outcome: Some(pb::Outcome::Failed.into()),
        limit: 100,
        ..TraceFilter::default()
    };
    let ids: Vec<String> = store
        .list_traces(&failed_odd)
        .await
        .unwrap()
        .traces
        .into_iter()
        .map(|t| t.trace_id)
        .collect();
    assert_eq!(ids, ["t015", "t005"]);

    let window = TraceFilter {
        start_ms: Some(1_700_000_000_002),
        end_ms: Some(1_700_000_000_004),
        limit: 100,
        ..TraceFilter::default()
    };
    let ids: Vec<String> = store
        .list_traces(&window)
        .await
        .unwrap()
        .traces
        .into_iter()
        .map(|t| t.trace_id)
        .collect();
    assert_eq!(ids, ["t007", "t006", "t005", "t004"]);
}

/// The newer filters, the aggregates per workspace / provider / model, and
/// retention (fenced like every leader-only write).
async fn trace_queries_aggregates_and_retention(store: Store) {
    let base = 1_700_000_000_000;
    let traces: Vec<pb::Trace> = (0..20)
        .map(|i| {
            let provider = if i % 4 == 0 { "slow" } else { "fast" };
            let outcome = if i % 5 == 0 {
                pb::Outcome::Failed
            } else {
                pb::Outcome::Success
            };
            pb::Trace {
                workspace: if i < 12 { "team-a" } else { "team-b" }.into(),
                strategy: if i % 2 == 0 { "cost" } else { "balanced" }.into(),
                error_class: if outcome == pb::Outcome::Failed {
                    pb::ErrorClass::RateLimited.into()
                } else {
                    pb::ErrorClass::Unspecified.into()
                },
                latency_ms: 100 * (i + 1),
                cost_usd: 0.001 * (i + 1) as f64,
                tokens_in: 10,
                tokens_out: i + 1,
                ..trace(&format!("q{i:03}"), base + i as i64, provider, outcome)
            }
        })
        .collect();
    store.insert_traces(&traces, &[]).await.unwrap();
    let ids = |filter: TraceFilter| {
        let store = store.clone();
        async move {
            let mut ids: Vec<String> = store
                .list_traces(&TraceFilter {
                    limit: 100,
                    ..filter
                })
                .await
                .unwrap()
                .traces
                .into_iter()
                .map(|t| t.trace_id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(
        ids(TraceFilter {
            strategy: Some("cost".into()),
            min_latency_ms: Some(1_500),
            ..TraceFilter::default()
        })
        .await,
        ["q014", "q016", "q018"]
    );
    assert_eq!(
        ids(TraceFilter {
            error_class: Some(pb::ErrorClass::RateLimited.into()),
            ..TraceFilter::default()
        })
        .await,
        ["q000", "q005", "q010", "q015"]
    );
    assert_eq!(
        ids(TraceFilter {
            min_cost_usd: Some(0.0185),
            ..TraceFilter::default()
        })
        .await,
        ["q018", "q019"]
    );

    let aggregate = |group_by, workspace: Option<&str>| {
        let store = store.clone();
        let workspace = workspace.map(str::to_owned);
        async move {
            store
                .aggregate_traces(&AggregateQuery {
                    start_ms: base,
                    end_ms: base + 1_000,
                    group_by,
                    workspace,
                })
                .await
                .unwrap()
        }
    };
    let by_workspace = aggregate(Grouping::Workspace, None).await;
    let a = &by_workspace[0];
    assert_eq!((a.key.as_str(), a.requests, a.failed), ("team-a", 12, 3));
    // Latencies 100..=1200: nearest ranks 6, 12 and 12 of 12.
    assert_eq!(
        (a.latency_p50_ms, a.latency_p95_ms, a.latency_p99_ms),
        (600, 1200, 1200)
    );
    assert!((a.latency_mean_ms - 650.0).abs() < 1e-9);
    assert_eq!((a.tokens_in, a.tokens_out), (120, 78));
    assert!((a.cost_usd - 0.078).abs() < 1e-9);
    assert_eq!(
        (by_workspace[1].key.as_str(), by_workspace[1].requests),
        ("team-b", 8)
    );
    let by_provider = aggregate(Grouping::Provider, Some("team-a")).await;
    let keys: Vec<(&str, u64)> = by_provider
        .iter()
        .map(|g| (g.key.as_str(), g.requests))
        .collect();
    assert_eq!(keys, [("fast", 9), ("slow", 3)]);
    // slow in team-a: latencies 100, 500, 900.
    assert_eq!(
        (by_provider[1].latency_p50_ms, by_provider[1].latency_p99_ms),
        (500, 900)
    );
    assert_eq!(aggregate(Grouping::Model, None).await[0].requests, 20);

    // Retention: the oldest go in batches, attempts with them; a fenced epoch deletes nothing.
    let epoch = store.adopt_epoch("cp").await.unwrap();
    assert!(matches!(
        store.delete_traces_before(epoch + 1, base + 10, 100).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(
        store
            .delete_traces_before(epoch, base + 10, 4)
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        store
            .delete_traces_before(epoch, base + 10, 100)
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        store
            .delete_traces_before(epoch, base + 10, 100)
            .await
            .unwrap(),
        0
    );
    let left = ids(TraceFilter::default()).await;
    assert_eq!(left.len(), 10);
    assert_eq!(left[0], "q010");
    assert!(matches!(
        store.get_trace("q003").await,
        Err(StoreError::NotFound { .. })
    ));
}

on_both_backends!(
    postgres_trace_queries,
    sqlite_trace_queries,
    trace_queries_aggregates_and_retention
);

/// Leader-only writes succeed under the fenced epoch and fail, changing
/// nothing, under any other; versions only grow across leaders.
async fn leader_only_writes_are_fenced_by_epoch(store: Store) {
    assert_eq!(store.adopt_epoch("standalone").await.unwrap(), 0);
    store.claim_epoch(10, "a").await.unwrap();
    let mut first = pb::Snapshot::default();
    let v1 = store.publish_snapshot(10, &mut first).await.unwrap();
    assert_eq!((first.version, first.epoch), (v1, 10));

    // A newer leader claims; the old one can no longer publish or delete.
    store.claim_epoch(12, "b").await.unwrap();
    let mut stale = pb::Snapshot::default();
    match store.publish_snapshot(10, &mut stale).await {
        Err(StoreError::Fenced {
            epoch: 10,
            current: 12,
        }) => {}
        other => panic!("expected the old epoch to be fenced, got {other:?}"),
    }
    assert!(matches!(
        store.delete_windows_before(10, i64::MAX).await,
        Err(StoreError::Fenced { .. })
    ));
    // Nor can it claim back below the newer epoch.
    assert!(matches!(
        store.claim_epoch(11, "a").await,
        Err(StoreError::Fenced {
            epoch: 11,
            current: 12
        })
    ));
    // The fenced write burnt no version and stored nothing.
    let newest = store.snapshot_newer_than(0).await.unwrap().unwrap();
    assert_eq!((newest.version, newest.epoch), (v1, 10));

    let mut next = pb::Snapshot::default();
    let v2 = store.publish_snapshot(12, &mut next).await.unwrap();
    assert_eq!(v2, v1 + 1);
    let relayed = store.snapshot_newer_than(v1).await.unwrap().unwrap();
    assert_eq!((relayed.version, relayed.epoch), (v2, 12));
    assert!(store.snapshot_newer_than(v2).await.unwrap().is_none());
    // Only the newest few are kept.
    for _ in 0..40 {
        store
            .publish_snapshot(12, &mut pb::Snapshot::default())
            .await
            .unwrap();
    }
    assert!(store.snapshot_newer_than(0).await.unwrap().unwrap().version >= v2 + 40);
    // A single replica without etcd adopts the newest epoch.
    assert_eq!(store.adopt_epoch("standalone").await.unwrap(), 12);
}

on_both_backends!(
    postgres_fencing,
    sqlite_fencing,
    leader_only_writes_are_fenced_by_epoch
);

on_both_backends!(
    postgres_registry_crud,
    sqlite_registry_crud,
    registry_crud_bumps_revisions_and_guards_references
);

on_both_backends!(
    postgres_traces,
    sqlite_traces,
    traces_are_idempotent_filterable_and_paginate_stably
);

#[tokio::test]
async fn unsupported_database_urls_are_refused_clearly() {
    let err = Store::connect("mysql://localhost/x").await.err().unwrap();
    assert_eq!(
        err.to_string(),
        "unsupported database URL scheme \"mysql\": expected postgres:// or sqlite://"
    );
}

#[tokio::test]
async fn score_breakdowns_are_rows_on_postgres() {
    score_breakdowns_are_rows(&postgres_url().await).await;
}

#[tokio::test]
async fn score_breakdowns_are_rows_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    score_breakdowns_are_rows(&sqlite_url(&dir)).await;
}

/// Each scored candidate and each attempt is a row of its own, for SQL; a
/// resent batch adds none, an impossible score is stored as 0 instead of
/// failing the batch, and retention takes the rows with their trace.
async fn score_breakdowns_are_rows(url: &str) {
    let store = Store::connect(url).await.unwrap().with_candidate_rows(true);
    sqlx::any::install_default_drivers();
    let sql = sqlx::AnyPool::connect(url).await.unwrap();
    let dimension = |score: f64| {
        Some(pb::DimensionScore {
            score,
            ..Default::default()
        })
    };
    let candidate = |target: &str, rank: u32, score: f64| pb::Candidate {
        target_id: target.into(),
        rank,
        score,
        chain_position: rank,
        estimated_cost_usd: 0.002,
        dimensions: Some(pb::DimensionScores {
            quality: dimension(0.9),
            speed: dimension(0.5),
            cost: dimension(f64::NAN),
            health: dimension(1.0),
            workspace_fit: dimension(0.25),
        }),
        ..Default::default()
    };
    let base = 1_700_000_000_000;
    let scored = pb::Trace {
        candidates: vec![
            candidate("fast/m", 1, 0.8),
            candidate("slow/m", 2, 0.6),
            candidate("cheap/m", 3, 0.4),
        ],
        ..trace("scored", base, "fast", pb::Outcome::Success)
    };
    let batch = vec![
        scored,
        trace("plain", base + 1, "slow", pb::Outcome::Success),
    ];
    let first = store.insert_traces(&batch, &[]).await.unwrap();
    assert_eq!((first.inserted, first.duplicates), (2, 0));
    let again = store.insert_traces(&batch, &[]).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 2));

    let rows = sqlx::query(
        "SELECT target_id, rank, score, quality, speed, cost, health, workspace_fit, estimated_cost_usd \
         FROM trace_candidates WHERE trace_id = 'scored' ORDER BY position",
    )
    .fetch_all(&sql)
    .await
    .unwrap();
    let got: Vec<(String, i64, [f64; 7])> = rows
        .iter()
        .map(|r| {
            use sqlx::Row;
            let f = |c: &str| r.try_get::<f64, _>(c).unwrap();
            (
                r.try_get("target_id").unwrap(),
                r.try_get("rank").unwrap(),
                [
                    f("score"),
                    f("quality"),
                    f("speed"),
                    f("cost"),
                    f("health"),
                    f("workspace_fit"),
                    f("estimated_cost_usd"),
                ],
            )
        })
        .collect();
    let dims = |score: f64| [score, 0.9, 0.5, 0.0, 1.0, 0.25, 0.002];
    assert_eq!(
        got,
        vec![
            ("fast/m".to_owned(), 1, dims(0.8)),
            ("slow/m".to_owned(), 2, dims(0.6)),
            ("cheap/m".to_owned(), 3, dims(0.4)),
        ]
    );
    let count = |table: &'static str| {
        let sql = sql.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table}"
            )))
            .fetch_one(&sql)
            .await
            .unwrap()
        }
    };
    assert_eq!(count("trace_candidates").await, 3);
    assert_eq!(count("trace_attempts").await, 2);

    let epoch = store.adopt_epoch("cp").await.unwrap();
    assert_eq!(
        store
            .delete_traces_before(epoch, base + 1, 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(count("trace_candidates").await, 0);
    assert_eq!(count("trace_attempts").await, 1);
}

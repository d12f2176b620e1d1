#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeMap;

use super::*;

fn target(id: &str, model: &str) -> TargetInfo {
    TargetInfo {
        id: id.into(),
        model: model.into(),
        enabled: true,
    }
}

fn window(node: &str, target: &str, end_ms: i64, ok: u64, failed: u64) -> WindowRecord {
    let mut errors = BTreeMap::new();
    if failed > 0 {
        errors.insert(pb::ErrorClass::Transient as i32, failed);
    }
    let mut latency_ms = switchyard_domain::QuantileSketch::new();
    for i in 0..ok {
        latency_ms.add(100.0 + i as f64);
    }
    WindowRecord {
        node_id: node.into(),
        target_id: target.into(),
        start_ms: end_ms - 1000,
        end_ms,
        counts: Counts {
            attempts: ok + failed,
            successes: ok,
            errors,
            latency_ms,
            ..Default::default()
        },
    }
}

#[test]
fn a_failing_target_is_ejected_and_its_telemetry_says_so_but_never_the_whole_model() {
    let targets = [
        target("a/m", "m"),
        target("b/m", "m"),
        target("c/m", "m"),
        target("d/x", "x"),
    ];
    let mut agg = Aggregator::new(HealthConfig::default(), Duration::from_secs(60));
    for second in 1..=3 {
        let end = second * 1000;
        for node in ["n1", "n2"] {
            agg.ingest(&window(node, "a/m", end, 0, 5));
            agg.ingest(&window(node, "b/m", end, 0, 5));
            agg.ingest(&window(node, "c/m", end, 10, 0));
            agg.ingest(&window(node, "d/x", end, 0, 9));
        }
    }
    let views = agg.evaluate(3_500, &targets);
    let states: Vec<_> = views.iter().map(|v| v.state.state).collect();
    // Of model m's three targets one may be ejected; the other failing one is only degraded.
    assert_eq!(
        states,
        [
            HealthState::Ejected,
            HealthState::Degraded,
            HealthState::Healthy,
            HealthState::Degraded
        ]
    );
    let a = &views[0];
    assert_eq!(a.telemetry.state, HealthState::Ejected);
    assert!(a.telemetry.skipped_at(3_500) && !a.telemetry.skipped_at(13_500));
    assert!(a.probe, "ejected targets are probed");
    // Evidence from before the ejection no longer counts.
    assert_eq!(a.windows[0].counts.attempts, 0);
    assert_eq!(views[2].windows[0].nodes, 2);
    let c = &views[2].telemetry;
    assert_eq!((c.attempts, c.success_rate), (60, 1.0));
    assert!(
        (c.latency_p50_ms - 104.0).abs() <= 104.0 * 0.01,
        "{}",
        c.latency_p50_ms
    );
    let health = target_health(a, 3_500);
    assert_eq!(health.windows.len(), 3);
    assert!(
        health.reason.contains("30 of 30 attempts failed"),
        "{}",
        health.reason
    );
}

#[test]
fn idle_targets_are_probed_and_unregistered_ones_forgotten() {
    let mut agg = Aggregator::new(HealthConfig::default(), Duration::from_secs(60));
    agg.ingest(&window("n", "a/m", 1_000, 3, 0));
    let views = agg.evaluate(30_000, &[target("a/m", "m"), target("b/m", "m")]);
    assert!(!views[0].probe && views[1].probe);
    let views = agg.evaluate(62_000, &[target("a/m", "m")]);
    assert!(views[0].probe);
    assert!(!agg.series.contains_key("b/m") && !agg.states.contains_key("b/m"));
}

#[test]
fn a_new_leader_keeps_the_previous_leaders_verdicts_until_they_end() {
    let targets = [target("a/m", "m"), target("b/m", "m"), target("c/m", "m")];
    let verdict = |id: &str, state, until| TargetTelemetry {
        target_id: id.into(),
        state,
        state_until_ms: until,
        ..Default::default()
    };
    let telemetry = Telemetry {
        targets: [
            (
                "a/m".to_owned(),
                verdict("a/m", HealthState::Ejected, 20_000),
            ),
            ("b/m".to_owned(), verdict("b/m", HealthState::Degraded, 0)),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let mut agg = Aggregator::new(HealthConfig::default(), Duration::from_secs(60));
    agg.resume(&telemetry, 10_000);
    // No evidence at all since the takeover: the verdicts stand.
    let views = agg.evaluate(11_000, &targets);
    let states: Vec<_> = views
        .iter()
        .map(|v| (v.state.state, v.state.until_ms))
        .collect();
    assert_eq!(
        states,
        [
            (HealthState::Ejected, 20_000),
            (HealthState::Degraded, 0),
            (HealthState::Healthy, 0)
        ]
    );
    assert!(views[0].telemetry.skipped_at(19_999));
    // A fresh aggregator (no takeover) would have let it back at once.
    let fresh = Aggregator::new(HealthConfig::default(), Duration::from_secs(60))
        .evaluate(11_000, &targets);
    assert_eq!(fresh[0].state.state, HealthState::Healthy);
}

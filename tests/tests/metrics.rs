//! Prometheus metrics of both planes end to end: after answered, failed and
//! refused requests over HTTP and gRPC, each plane's `/metrics` (the control
//! plane's on its own listener, without a credential) parses as OpenMetrics
//! text and its counters moved by exactly what was sent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use support::{ControlPlane, DataPlane, anonymous_http_client, http_client, registry_yaml};
use switchyard_proto::v1 as pb;
use switchyard_testkit::{Behavior, MockProvider};

const TARGET: &str = "alpha/mock-model";

/// Samples of an exposition by series (`name{labels}`), after checking that
/// every line is a HELP, TYPE or UNIT comment or a `name{labels} value`
/// sample of a declared family, that no series repeats and that it ends
/// with `# EOF`.
fn parse(text: &str) -> BTreeMap<String, f64> {
    assert_eq!(text.lines().last(), Some("# EOF"), "no # EOF:\n{text}");
    let mut families = BTreeSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            match (words.next(), words.next()) {
                (Some("TYPE"), Some(name)) => {
                    assert!(valid_name(name), "bad family name in {line:?}");
                    families.insert(name.to_owned());
                }
                (Some("HELP" | "UNIT"), Some(name)) => assert!(valid_name(name), "{line:?}"),
                (Some("EOF"), None) => {}
                _ => panic!("unexpected comment {line:?}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?} is not a number"));
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "bad metric name in {line:?}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let labels = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("unbalanced labels in {line:?}"));
            check_labels(labels, line);
        }
        let family = ["_total", "_bucket", "_sum", "_count", "_created"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|f| families.contains(*f))
            .unwrap_or(name);
        assert!(families.contains(family), "{name} has no # TYPE line");
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} appears twice"
        );
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `key="value"` pairs separated by commas; values may hold escaped quotes.
fn check_labels(mut rest: &str, line: &str) {
    loop {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label in {line:?}"));
        assert!(
            valid_name(key) && !key.contains(':'),
            "bad label name in {line:?}"
        );
        let mut escaped = false;
        let end = after
            .char_indices()
            .find(|&(_, c)| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            })
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
        rest = &after[end + 1..];
        if rest.is_empty() {
            return;
        }
        rest = rest
            .strip_prefix(',')
            .unwrap_or_else(|| panic!("labels not comma-separated in {line:?}"));
    }
}

/// A sample's value; 0 when the series does not exist (yet).
fn get(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

/// A sample that must exist.
fn must(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

/// The sum of every series of the metric `name`, whatever its labels.
fn sum(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| *series == name || series.starts_with(&format!("{name}{{")))
        .map(|(_, v)| v)
        .sum()
}

fn chat() -> Value {
    json!({"model": "mock-model", "messages": [{"role": "user", "content": "hello"}]})
}

fn grpc_request(model: &str) -> pb::CompleteRequest {
    pb::CompleteRequest {
        model: model.into(),
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: "hello".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// What the answered requests reported: input and output tokens, cost.
#[derive(Default)]
struct Billed {
    input: u64,
    output: u64,
    cost: f64,
}

#[tokio::test]
async fn both_planes_count_what_was_served_and_the_exposition_parses() {
    let mock = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("alpha", &mock.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();

    let before = parse(&dp.metrics().await);
    assert_eq!(sum(&before, "switchyard_dp_requests_total"), 0.0);
    assert_eq!(must(&before, "switchyard_dp_requests_in_flight"), 0.0);

    // Three answers: two over HTTP, one over gRPC.
    let mut billed = Billed::default();
    for _ in 0..2 {
        let response = http_client()
            .post(dp.chat_url())
            .json(&chat())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        billed.input += body["usage"]["prompt_tokens"].as_u64().unwrap();
        billed.output += body["usage"]["completion_tokens"].as_u64().unwrap();
        billed.cost += body["switchyard"]["cost_usd"].as_f64().unwrap();
    }
    let answer = dp
        .inference()
        .await
        .complete(grpc_request("mock-model"))
        .await
        .unwrap()
        .into_inner();
    let usage = answer.usage.unwrap();
    billed.input += usage.input_tokens;
    billed.output += usage.output_tokens;
    billed.cost += answer.meta.unwrap().cost_usd;
    assert!(billed.input > 0 && billed.output > 0 && billed.cost > 0.0);

    // One request the provider fails (503: retried once if the budget allows).
    mock.set_default(Behavior::Status {
        status: 503,
        message: "overloaded".into(),
        retry_after_secs: None,
    });
    let response = http_client()
        .post(dp.chat_url())
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_transient");

    // Two refused at the edge, neither reaching a provider: no key over
    // HTTP, an unknown model over gRPC.
    let response = anonymous_http_client()
        .post(dp.chat_url())
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let refused = dp
        .inference()
        .await
        .complete(grpc_request("no-such-model"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);

    // The data plane.
    let dp_metrics = parse(&dp.metrics().await);
    let series = |name: &str, labels: &str| format!("switchyard_dp_{name}{{{labels}}}");
    assert_eq!(
        must(
            &dp_metrics,
            &series("requests_total", "outcome=\"success\"")
        ),
        3.0
    );
    assert_eq!(
        must(&dp_metrics, &series("requests_total", "outcome=\"failed\"")),
        1.0
    );
    assert_eq!(sum(&dp_metrics, "switchyard_dp_requests_total"), 4.0);
    assert_eq!(
        must(&dp_metrics, "switchyard_dp_requests_in_flight"),
        0.0,
        "every request ended"
    );
    assert_eq!(
        must(&dp_metrics, "switchyard_dp_request_duration_seconds_count"),
        4.0
    );
    let attempt = |result: &str| {
        get(
            &dp_metrics,
            &series(
                "attempts_total",
                &format!("target=\"{TARGET}\",result=\"{result}\""),
            ),
        )
    };
    let retries = get(
        &dp_metrics,
        &series("retries_total", &format!("target=\"{TARGET}\"")),
    );
    assert_eq!(attempt("ok"), 3.0);
    assert_eq!(attempt("transient"), 1.0 + retries, "{dp_metrics:#?}");
    assert_eq!(mock.client_request_count() as f64, 4.0 + retries);
    for (kind, count) in [
        ("upstream_transient", 1.0),
        ("invalid_api_key", 1.0),
        ("model_not_found", 1.0),
    ] {
        assert_eq!(
            must(
                &dp_metrics,
                &series("errors_total", &format!("kind=\"{kind}\""))
            ),
            count,
            "{kind}"
        );
    }
    assert_eq!(sum(&dp_metrics, "switchyard_dp_errors_total"), 3.0);
    let tokens = |direction: &str| {
        must(
            &dp_metrics,
            &series(
                "tokens_total",
                &format!("target=\"{TARGET}\",direction=\"{direction}\""),
            ),
        )
    };
    assert_eq!(tokens("input"), billed.input as f64);
    assert_eq!(tokens("output"), billed.output as f64);
    let cost = must(
        &dp_metrics,
        &series("cost_usd_total", &format!("target=\"{TARGET}\"")),
    );
    assert!(
        (cost - billed.cost).abs() < 1e-12,
        "cost {cost} against {}",
        billed.cost
    );
    assert_eq!(
        must(&dp_metrics, "switchyard_dp_control_plane_connected"),
        1.0
    );
    assert_eq!(sum(&dp_metrics, "switchyard_dp_traces_dropped_total"), 0.0);

    // The control plane: every request with a trace (the four that were
    // routed) arrives; the refused two have none.
    let mut cp_metrics = parse(&cp.metrics().await);
    for _ in 0..200 {
        if get(&cp_metrics, "switchyard_cp_traces_ingested_total") >= 4.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        cp_metrics = parse(&cp.metrics().await);
    }
    assert_eq!(
        must(&cp_metrics, "switchyard_cp_traces_ingested_total"),
        4.0
    );
    assert_eq!(
        must(&cp_metrics, "switchyard_cp_traces_rejected_total"),
        0.0
    );
    assert_eq!(must(&cp_metrics, "switchyard_cp_store_errors_total"), 0.0);
    let stored = must(
        &cp_metrics,
        "switchyard_cp_trace_batches_total{result=\"stored\"}",
    );
    assert!(stored >= 1.0);
    assert_eq!(
        must(
            &cp_metrics,
            "switchyard_cp_trace_ingest_duration_seconds_count"
        ),
        sum(&cp_metrics, "switchyard_cp_trace_batches_total")
    );
    assert_eq!(must(&cp_metrics, "switchyard_cp_leader"), 1.0);
    assert_eq!(
        must(&cp_metrics, "switchyard_cp_data_planes_connected"),
        1.0
    );
    assert_eq!(
        sum(&cp_metrics, "switchyard_cp_targets"),
        1.0,
        "one target, in one state"
    );
    assert!(must(&cp_metrics, "switchyard_cp_registry_revision") > 0.0);
    assert!(must(&cp_metrics, "switchyard_cp_snapshot_age_seconds") >= 0.0);

    // Versions, compared while no new snapshot is published in between.
    let mut compared = false;
    for _ in 0..50 {
        let status = cp.status().await.unwrap();
        let cp_metrics = parse(&cp.metrics().await);
        let dp_metrics = parse(&dp.metrics().await);
        if cp.status().await.unwrap().snapshot_version != status.snapshot_version {
            continue;
        }
        let version = status.snapshot_version as f64;
        assert!(version > 0.0);
        assert_eq!(must(&cp_metrics, "switchyard_cp_snapshot_version"), version);
        assert_eq!(
            must(&cp_metrics, "switchyard_cp_snapshot_epoch"),
            status.snapshot_epoch as f64
        );
        assert_eq!(
            must(&cp_metrics, "switchyard_cp_leader_epoch"),
            status.epoch as f64
        );
        let acked = must(
            &cp_metrics,
            "switchyard_cp_data_plane_acked_version{node=\"test-dp\"}",
        );
        let applied = must(&dp_metrics, "switchyard_dp_snapshot_version");
        assert!(
            acked > 0.0 && acked <= version,
            "acked {acked} of {version}"
        );
        assert!(
            applied > 0.0 && applied <= version,
            "applied {applied} of {version}"
        );
        assert_eq!(
            must(
                &cp_metrics,
                "switchyard_cp_data_plane_lag_versions{node=\"test-dp\"}"
            ),
            version - acked
        );
        compared = true;
        break;
    }
    assert!(compared, "the snapshot version never held still");
}

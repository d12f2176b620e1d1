//! `switchyard traces`: the trace store through the control plane's
//! TraceService, as tables for people or as JSON (the proto3 JSON mapping,
//! the same as grpcurl prints) for scripts.

use std::time::{Duration, SystemTime};

use anyhow::bail;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::trace_service_client::TraceServiceClient;

use crate::connect::ControlPlaneArgs;
use crate::output::{json, status_error, table};

#[derive(Debug, clap::Args)]
pub struct TracesArgs {
    #[command(flatten)]
    control_plane: ControlPlaneArgs,
    /// Print JSON (proto3 mapping) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: TracesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TracesCommand {
    /// Traces newest first, filtered; prints the token of the next page.
    List(ListArgs),
    /// One trace whole: candidates and scores, attempts, timings, tokens, cost.
    Get { trace_id: String },
    /// Runs a stored request again (through today's routing, pinned to a
    /// target, or under a strategy) and shows both outcomes side by side.
    Replay {
        trace_id: String,
        /// Pin the replay to this target (provider/model).
        #[arg(long, conflicts_with = "strategy")]
        target: Option<String>,
        /// Route the replay under this strategy.
        #[arg(long)]
        strategy: Option<String>,
    },
    /// Requests, failures, cost, tokens and latency quantiles per group.
    Aggregate(AggregateArgs),
    /// What another strategy (or weight set) would have chosen for stored
    /// traffic, and the estimated change in cost and latency. Calls no provider.
    WhatIf(WhatIfArgs),
}

#[derive(Debug, clap::Args)]
struct WhatIfArgs {
    /// A strategy in the registry.
    #[arg(long, conflicts_with = "weight", required_unless_present = "weight")]
    strategy: Option<String>,
    /// An ad-hoc weight, e.g. --weight cost=3 --weight quality=1 (dimensions:
    /// quality, speed, cost, health, workspace-fit; unnamed ones are 0).
    #[arg(long, value_parser = weight)]
    weight: Vec<(Dimension, f64)>,
    /// How far back from now (e.g. 1h, 24h, 7days).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    since: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Dimension {
    Quality,
    Speed,
    Cost,
    Health,
    WorkspaceFit,
}

fn weight(value: &str) -> Result<(Dimension, f64), String> {
    let (name, number) = value
        .split_once('=')
        .ok_or_else(|| "expected DIMENSION=NUMBER, e.g. cost=3".to_owned())?;
    let dimension = match name.trim().replace('_', "-").as_str() {
        "quality" => Dimension::Quality,
        "speed" => Dimension::Speed,
        "cost" => Dimension::Cost,
        "health" => Dimension::Health,
        "workspace-fit" => Dimension::WorkspaceFit,
        other => {
            return Err(format!(
                "unknown dimension {other:?}: expected quality, speed, cost, health or workspace-fit"
            ));
        }
    };
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{number:?} is not a number"))?;
    Ok((dimension, number))
}

fn weights(named: &[(Dimension, f64)]) -> pb::StrategyWeights {
    let mut w = pb::StrategyWeights::default();
    for &(dimension, value) in named {
        match dimension {
            Dimension::Quality => w.quality = value,
            Dimension::Speed => w.speed = value,
            Dimension::Cost => w.cost = value,
            Dimension::Health => w.health = value,
            Dimension::WorkspaceFit => w.workspace_fit = value,
        }
    }
    w
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Only traces received within this long before now (e.g. 15m, 2h, 7days).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "start")]
    since: Option<Duration>,
    /// Only traces received at or after this time (RFC 3339, e.g. 2026-11-22T10:00:00Z).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    start: Option<SystemTime>,
    /// Only traces received before this time (RFC 3339).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    end: Option<SystemTime>,
    #[arg(long)]
    workspace: Option<String>,
    /// Provider that gave the final answer (or failed last).
    #[arg(long)]
    provider: Option<String>,
    /// Final or requested model.
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    strategy: Option<String>,
    /// success, failed, partial or cancelled.
    #[arg(long, value_parser = outcome)]
    outcome: Option<pb::Outcome>,
    /// e.g. transient, rate-limited, timeout, auth, content, provider-down.
    #[arg(long, value_parser = error_class)]
    error_class: Option<pb::ErrorClass>,
    /// Only traces at least this slow (e.g. 800ms, 2s).
    #[arg(long, value_parser = humantime::parse_duration)]
    min_latency: Option<Duration>,
    /// Only traces that cost at least this much, in USD.
    #[arg(long)]
    min_cost: Option<f64>,
    /// Traces per page (1 to 1000).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// The next-page token a previous list printed.
    #[arg(long)]
    page_token: Option<String>,
    /// Only replays.
    #[arg(long, conflicts_with = "originals")]
    replays: bool,
    /// Only original requests (no replays).
    #[arg(long)]
    originals: bool,
    /// Only replays of this trace.
    #[arg(long, conflicts_with = "originals")]
    replay_of: Option<String>,
}

#[derive(Debug, clap::Args)]
struct AggregateArgs {
    /// workspace, provider or model.
    #[arg(long, value_parser = grouping)]
    by: pb::TraceGrouping,
    /// How far back from now (e.g. 1h, 24h, 30days).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    since: Duration,
    #[arg(long)]
    workspace: Option<String>,
}

/// `rate-limited` → `ERROR_CLASS_RATE_LIMITED`, and so on.
fn enum_name(prefix: &str, value: &str) -> String {
    format!("{prefix}{}", value.trim().to_uppercase().replace('-', "_"))
}

fn outcome(value: &str) -> Result<pb::Outcome, String> {
    pb::Outcome::from_str_name(&enum_name("OUTCOME_", value))
        .filter(|o| *o != pb::Outcome::Unspecified)
        .ok_or_else(|| "expected success, failed, partial or cancelled".to_owned())
}

fn error_class(value: &str) -> Result<pb::ErrorClass, String> {
    pb::ErrorClass::from_str_name(&enum_name("ERROR_CLASS_", value))
        .filter(|c| *c != pb::ErrorClass::Unspecified)
        .ok_or_else(|| {
            "expected transient, rate-limited, timeout, auth, content, provider-down, protocol, \
             cancelled, configuration or context-length"
                .to_owned()
        })
}

fn grouping(value: &str) -> Result<pb::TraceGrouping, String> {
    pb::TraceGrouping::from_str_name(&enum_name("TRACE_GROUPING_", value))
        .filter(|g| *g != pb::TraceGrouping::Unspecified)
        .ok_or_else(|| "expected workspace, provider or model".to_owned())
}

fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(at)
}

/// `2026-11-22 10:04:05.123` in UTC.
fn clock(at: Option<&prost_types::Timestamp>) -> String {
    let Some(at) = at else {
        return "-".into();
    };
    let Ok(at) = SystemTime::try_from(*at) else {
        return "-".into();
    };
    let text = humantime::format_rfc3339_millis(at).to_string();
    text.trim_end_matches('Z').replace('T', " ")
}

/// The short name of an enum value: `OUTCOME_SUCCESS` → `success`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_lowercase()
        .replace('_', "-")
}

pub async fn run(args: TracesArgs) -> anyhow::Result<()> {
    let mut client = TraceServiceClient::with_interceptor(
        args.control_plane.connect().await?,
        args.control_plane.admin()?,
    );
    let out = match args.command {
        TracesCommand::List(list) => {
            let response = client
                .list_traces(list_request(list)?)
                .await
                .map_err(status_error)?
                .into_inner();
            if args.json {
                json(&response, "switchyard.v1.ListTracesResponse")?
            } else {
                list_table(&response)
            }
        }
        TracesCommand::Get { trace_id } => {
            let trace = client
                .get_trace(pb::GetTraceRequest { trace_id })
                .await
                .map_err(status_error)?
                .into_inner();
            if args.json {
                json(&trace, "switchyard.v1.Trace")?
            } else {
                trace_text(&trace)
            }
        }
        TracesCommand::Replay {
            trace_id,
            target,
            strategy,
        } => {
            let mode = if target.is_some() {
                pb::ReplayMode::PinnedTarget
            } else if strategy.is_some() {
                pb::ReplayMode::Strategy
            } else {
                pb::ReplayMode::CurrentRouting
            };
            let response = client
                .replay_trace(pb::ReplayTraceRequest {
                    trace_id,
                    mode: mode.into(),
                    target_id: target.unwrap_or_default(),
                    strategy: strategy.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if args.json {
                json(&response, "switchyard.v1.ReplayTraceResponse")?
            } else {
                replay_text(&response)
            }
        }
        TracesCommand::Aggregate(aggregate) => {
            let response = client
                .aggregate_traces(pb::AggregateTracesRequest {
                    start_time: Some(timestamp(SystemTime::now() - aggregate.since)),
                    end_time: None,
                    group_by: aggregate.by.into(),
                    workspace: aggregate.workspace.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if args.json {
                json(&response, "switchyard.v1.AggregateTracesResponse")?
            } else {
                aggregate_table(&response, aggregate.by)
            }
        }
        TracesCommand::WhatIf(what_if) => {
            let response = client
                .what_if(pb::WhatIfRequest {
                    start_time: Some(timestamp(SystemTime::now() - what_if.since)),
                    end_time: None,
                    strategy: what_if.strategy.unwrap_or_default(),
                    weights: (!what_if.weight.is_empty()).then(|| weights(&what_if.weight)),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if args.json {
                json(&response, "switchyard.v1.WhatIfResponse")?
            } else {
                what_if_text(&response)
            }
        }
    };
    println!("{}", out.trim_end());
    Ok(())
}

/// The server's own words, without tonic's wrapping.
fn list_request(list: ListArgs) -> anyhow::Result<pb::ListTracesRequest> {
    if let Some(cost) = list.min_cost
        && !(cost.is_finite() && cost >= 0.0)
    {
        bail!("--min-cost: must be a number, 0 or more");
    }
    let start = list.since.map(|d| SystemTime::now() - d).or(list.start);
    Ok(pb::ListTracesRequest {
        start_time: start.map(timestamp),
        end_time: list.end.map(timestamp),
        provider: list.provider.unwrap_or_default(),
        model: list.model.unwrap_or_default(),
        outcome: list.outcome.map_or(0, i32::from),
        page_size: list.limit,
        page_token: list.page_token.unwrap_or_default(),
        workspace: list.workspace.unwrap_or_default(),
        strategy: list.strategy.unwrap_or_default(),
        error_class: list.error_class.map_or(0, i32::from),
        min_latency_ms: list
            .min_latency
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        min_cost_usd: list.min_cost.unwrap_or(0.0),
        replay_origin: if list.replays {
            pb::ReplayOrigin::Replays
        } else if list.originals {
            pb::ReplayOrigin::Originals
        } else {
            pb::ReplayOrigin::Any
        }
        .into(),
        replay_of: list.replay_of.unwrap_or_default(),
    })
}

/// A message in the proto3 JSON mapping, through the descriptors the
/// servers advertise for reflection.
fn list_table(response: &pb::ListTracesResponse) -> String {
    let rows: Vec<Vec<String>> = response
        .traces
        .iter()
        .map(|t| {
            vec![
                clock(t.received_at.as_ref()),
                t.trace_id.clone(),
                t.workspace.clone(),
                format!("{} -> {}", t.requested_model, or_dash(&t.final_target)),
                t.strategy.clone(),
                short(t.outcome().as_str_name(), "OUTCOME_"),
                format!("{} ms", t.latency_ms),
                format!("{}/{}", t.tokens_in, t.tokens_out),
                format!("${:.6}", t.cost_usd),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "RECEIVED (UTC)",
            "TRACE",
            "WORKSPACE",
            "MODEL -> TARGET",
            "STRATEGY",
            "OUTCOME",
            "LATENCY",
            "TOKENS",
            "COST",
        ],
        &rows,
    );
    if response.traces.is_empty() {
        out.push_str("(no traces)\n");
    }
    if !response.next_page_token.is_empty() {
        out.push_str(&format!(
            "\nnext page: --page-token {}\n",
            response.next_page_token
        ));
    }
    out
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn trace_text(t: &pb::Trace) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: String| {
        out.push_str(&format!("{name:<16}{value}\n"));
    };
    field("trace", t.trace_id.clone());
    field("request", t.request_id.clone());
    field("workspace", t.workspace.clone());
    field("model", t.requested_model.clone());
    field("strategy", t.strategy.clone());
    field("outcome", short(t.outcome().as_str_name(), "OUTCOME_"));
    if t.error_class() != pb::ErrorClass::Unspecified {
        field(
            "error",
            format!(
                "{}: {}",
                short(t.error_class().as_str_name(), "ERROR_CLASS_"),
                t.error_message
            ),
        );
    }
    field("final target", or_dash(&t.final_target).to_owned());
    field("received", clock(t.received_at.as_ref()));
    field(
        "latency",
        format!("{} ms (first token {} ms)", t.latency_ms, t.ttft_ms),
    );
    field(
        "tokens",
        format!("{} in, {} out", t.tokens_in, t.tokens_out),
    );
    field("cost", format!("${:.6}", t.cost_usd));
    field(
        "snapshot",
        format!("version {} on {}", t.snapshot_version, t.node_id),
    );
    if !t.explanation.is_empty() {
        field("why", t.explanation.clone());
    }
    let candidates: Vec<Vec<String>> = t
        .candidates
        .iter()
        .map(|c| {
            let d = c.dimensions.clone().unwrap_or_default();
            let score =
                |s: Option<pb::DimensionScore>| format!("{:.2}", s.unwrap_or_default().score);
            vec![
                c.rank.to_string(),
                c.target_id.clone(),
                format!("{:.3}", c.score),
                score(d.quality),
                score(d.speed),
                score(d.cost),
                score(d.health),
                score(d.workspace_fit),
                format!("${:.6}", c.estimated_cost_usd),
            ]
        })
        .collect();
    out.push_str("\ncandidates\n");
    out.push_str(&table(
        &[
            "RANK",
            "TARGET",
            "SCORE",
            "QUALITY",
            "SPEED",
            "COST",
            "HEALTH",
            "FIT",
            "EST. COST",
        ],
        &candidates,
    ));
    if !t.ineligible.is_empty() {
        out.push_str("\nfiltered out\n");
        let rows: Vec<Vec<String>> = t
            .ineligible
            .iter()
            .map(|i| vec![i.target_id.clone(), i.reason.clone()])
            .collect();
        out.push_str(&table(&["TARGET", "WHY"], &rows));
    }
    let attempts: Vec<Vec<String>> = t
        .attempts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            vec![
                (i + 1).to_string(),
                a.target_id.clone(),
                clock(a.started_at.as_ref()),
                format!("{} ms", a.duration_ms),
                if a.success {
                    "ok".to_owned()
                } else {
                    short(a.error_class().as_str_name(), "ERROR_CLASS_")
                },
                if a.http_status == 0 {
                    "-".to_owned()
                } else {
                    a.http_status.to_string()
                },
            ]
        })
        .collect();
    out.push_str("\nattempts\n");
    out.push_str(&table(
        &["#", "TARGET", "STARTED (UTC)", "DURATION", "RESULT", "HTTP"],
        &attempts,
    ));
    out
}

fn aggregate_table(response: &pb::AggregateTracesResponse, by: pb::TraceGrouping) -> String {
    let rows: Vec<Vec<String>> = response
        .groups
        .iter()
        .map(|g| {
            vec![
                or_dash(&g.key).to_owned(),
                g.requests.to_string(),
                g.failed.to_string(),
                format!("${:.6}", g.cost_usd),
                format!("{}/{}", g.tokens_in, g.tokens_out),
                format!("{:.0} ms", g.latency_mean_ms),
                format!("{} ms", g.latency_p50_ms),
                format!("{} ms", g.latency_p95_ms),
                format!("{} ms", g.latency_p99_ms),
            ]
        })
        .collect();
    let key = short(by.as_str_name(), "TRACE_GROUPING_").to_uppercase();
    let mut out = table(
        &[
            &key, "REQUESTS", "FAILED", "COST", "TOKENS", "MEAN", "P50", "P95", "P99",
        ],
        &rows,
    );
    if response.groups.is_empty() {
        out.push_str("(no traces in that time)\n");
    }
    out
}

fn replay_text(r: &pb::ReplayTraceResponse) -> String {
    let original = r.original.clone().unwrap_or_default();
    let replay = r.replay.clone().unwrap_or_default();
    let row = |name: &str, f: &dyn Fn(&pb::Trace) -> String| {
        vec![name.to_owned(), f(&original), f(&replay)]
    };
    let rows = vec![
        row("trace", &|t| t.trace_id.clone()),
        row("target", &|t| or_dash(&t.final_target).to_owned()),
        row("strategy", &|t| t.strategy.clone()),
        row("outcome", &|t| short(t.outcome().as_str_name(), "OUTCOME_")),
        row("latency", &|t| format!("{} ms", t.latency_ms)),
        row("tokens", &|t| format!("{}/{}", t.tokens_in, t.tokens_out)),
        row("cost", &|t| format!("${:.6}", t.cost_usd)),
    ];
    let mut out = table(&["", "ORIGINAL", "REPLAY"], &rows);
    out.push_str(&format!(
        "\nsame answer text: {}\n",
        if r.outputs_equal { "yes" } else { "no" }
    ));
    out
}

/// Signed percent: `-25.0%`.
fn percent(change: f64) -> String {
    format!("{:+.1}%", change * 100.0)
}

fn what_if_text(r: &pb::WhatIfResponse) -> String {
    let mut targets: Vec<&str> = r
        .actual
        .iter()
        .chain(&r.what_if)
        .map(|s| s.target_id.as_str())
        .collect();
    targets.sort_unstable();
    targets.dedup();
    let count = |shares: &[pb::TargetShare], id: &str| {
        shares
            .iter()
            .find(|s| s.target_id == id)
            .map_or(0, |s| s.requests)
    };
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|id| {
            vec![
                (*id).to_owned(),
                count(&r.actual, id).to_string(),
                count(&r.what_if, id).to_string(),
            ]
        })
        .collect();
    let mut out = format!(
        "{} traces re-scored ({} skipped: no eligible candidate); {} would go elsewhere\n\n",
        r.traces_considered, r.traces_skipped, r.traces_changed
    );
    out.push_str(&table(&["TARGET", "ACTUAL", "WHAT-IF"], &rows));
    out.push_str(&format!(
        "\nestimated cost      ${:.6} -> ${:.6} ({})\n",
        r.cost_before_usd,
        r.cost_after_usd,
        percent(r.cost_change)
    ));
    out.push_str(&format!(
        "expected latency    {:.0} ms -> {:.0} ms per request ({})\n",
        r.expected_latency_before_ms,
        r.expected_latency_after_ms,
        percent(r.latency_change)
    ));
    out.push_str(&format!("confidence          {:.2}\n", r.confidence));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn enum_flags_take_short_names_and_refuse_the_rest() {
        assert_eq!(outcome("failed"), Ok(pb::Outcome::Failed));
        assert_eq!(error_class("rate-limited"), Ok(pb::ErrorClass::RateLimited));
        assert_eq!(grouping("Provider"), Ok(pb::TraceGrouping::Provider));
        let (_, cost) = weight("cost=3").unwrap();
        assert_eq!(cost, 3.0);
        assert_eq!(
            weights(&[
                weight("workspace_fit=2").unwrap(),
                weight("speed = 1").unwrap()
            ]),
            pb::StrategyWeights {
                speed: 1.0,
                workspace_fit: 2.0,
                ..Default::default()
            }
        );
        assert!(weight("colour=1").is_err());
        assert!(weight("cost").is_err());
        assert!(weight("cost=lots").is_err());
        assert!(outcome("unspecified").is_err());
        assert!(error_class("nope").is_err());
        assert!(grouping("").is_err());
    }

    #[test]
    fn json_uses_the_proto3_mapping() {
        let response = pb::ListTracesResponse {
            traces: vec![pb::TraceSummary {
                trace_id: "t1".into(),
                outcome: pb::Outcome::Failed.into(),
                latency_ms: 1500,
                ..Default::default()
            }],
            next_page_token: "1:t1".into(),
        };
        let text = json(&response, "switchyard.v1.ListTracesResponse").unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["traces"][0]["traceId"], "t1");
        assert_eq!(value["traces"][0]["outcome"], "OUTCOME_FAILED");
        // 64-bit integers are strings in the mapping, as grpcurl prints them.
        assert_eq!(value["traces"][0]["latencyMs"], "1500");
        assert_eq!(value["nextPageToken"], "1:t1");
    }

    #[test]
    fn tables_align_columns_and_show_the_next_page() {
        let response = pb::ListTracesResponse {
            traces: vec![pb::TraceSummary {
                trace_id: "t1".into(),
                requested_model: "small".into(),
                final_target: "sim/sim-small".into(),
                outcome: pb::Outcome::Success.into(),
                ..Default::default()
            }],
            next_page_token: "5:t1".into(),
        };
        let text = list_table(&response);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("RECEIVED (UTC)"));
        assert_eq!(lines[0].find("TRACE"), lines[1].find("t1"));
        assert!(lines[1].contains("small -> sim/sim-small"));
        assert!(lines[1].contains("success"));
        assert!(text.ends_with("next page: --page-token 5:t1\n"));
    }
}

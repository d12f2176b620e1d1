//! ReplayTrace: runs a stored request again through a data plane (the
//! control plane never calls providers itself), in one of three modes:
//! today's routing, pinned to one target (the target id as the model), or
//! under another strategy. The replay is a request like any other, marked
//! with the trace it replays, so its own trace links back; the answer holds
//! both traces and whether the two answers' texts are the same.

use std::time::Duration;

use serde_json::Value;
use switchyard_domain::answer_sha256;
use switchyard_proto::v1 as pb;
use switchyard_tls::CaFile;
use tonic::Status;

use crate::api::store_status;
use crate::store::{Store, StoreError};

/// Longest a replayed request may run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the replay's trace may take to reach the store (data planes
/// report in batches, acked after commit).
const TRACE_WAIT: Duration = Duration::from_secs(15);
const MAX_ID_LEN: usize = 128;

pub struct Replayer {
    store: Store,
    client: reqwest::Client,
    /// A data plane's OpenAI-compatible base URL; None refuses replays.
    via: Option<String>,
    /// Presented to the data plane, which lets it act for the trace's workspace.
    secret: String,
}

/// The routing a replay asks for, checked.
enum Mode {
    Current,
    Pinned(String),
    Strategy(String),
}

fn mode(req: &pb::ReplayTraceRequest) -> Result<Mode, Status> {
    match pb::ReplayMode::try_from(req.mode) {
        Ok(pb::ReplayMode::CurrentRouting) => Ok(Mode::Current),
        Ok(pb::ReplayMode::PinnedTarget) if req.target_id.is_empty() => {
            Err(Status::invalid_argument(
                "target_id: required for REPLAY_MODE_PINNED_TARGET (provider/model)",
            ))
        }
        Ok(pb::ReplayMode::PinnedTarget) => Ok(Mode::Pinned(req.target_id.clone())),
        Ok(pb::ReplayMode::Strategy) if req.strategy.is_empty() => Err(Status::invalid_argument(
            "strategy: required for REPLAY_MODE_STRATEGY",
        )),
        Ok(pb::ReplayMode::Strategy) => Ok(Mode::Strategy(req.strategy.clone())),
        Ok(pb::ReplayMode::Unspecified) | Err(_) => Err(Status::invalid_argument(
            "mode: required, one of REPLAY_MODE_CURRENT_ROUTING, REPLAY_MODE_PINNED_TARGET, REPLAY_MODE_STRATEGY",
        )),
    }
}

impl Replayer {
    /// `secret` is the control plane's replay key (see [`crate::admin::AdminToken::replay_secret`]).
    /// `ca` is trusted besides the system's roots for an https:// `via`.
    pub fn new(
        store: Store,
        via: Option<String>,
        ca: Option<&CaFile>,
        secret: String,
    ) -> Result<Self, reqwest::Error> {
        // reqwest is built without a default crypto provider; install ring once.
        switchyard_tls::install_provider();
        let mut client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = ca {
            for cert in reqwest::Certificate::from_pem_bundle(ca.pem())? {
                client = client.add_root_certificate(cert);
            }
        }
        let client = client.build()?;
        Ok(Self {
            store,
            client,
            via,
            secret,
        })
    }

    pub async fn replay(
        &self,
        req: pb::ReplayTraceRequest,
    ) -> Result<pb::ReplayTraceResponse, Status> {
        if req.trace_id.is_empty() || req.trace_id.len() > MAX_ID_LEN {
            return Err(Status::invalid_argument(
                "trace_id: required, at most 128 characters",
            ));
        }
        let mode = mode(&req)?;
        let original = self
            .store
            .get_trace(&req.trace_id)
            .await
            .map_err(store_status)?;
        if original.request_json.is_empty() {
            return Err(Status::failed_precondition(format!(
                "trace {} was stored without its request (payload policy {}); only requests \
                 traced under --trace-payload full can be replayed",
                original.trace_id,
                original.payload().as_str_name()
            )));
        }
        let Some(via) = &self.via else {
            return Err(Status::failed_precondition(
                "no data plane to replay through: start the control plane with --replay-via <data-plane URL>",
            ));
        };
        let mut body: Value = serde_json::from_slice(&original.request_json)
            .map_err(|e| Status::internal(format!("the stored request is not JSON: {e}")))?;
        let Some(fields) = body.as_object_mut() else {
            return Err(Status::internal("the stored request is not a JSON object"));
        };
        // One whole answer to compare, whatever the original asked for.
        fields.insert("stream".into(), Value::Bool(false));
        if let Mode::Pinned(target) = &mode {
            fields.insert("model".into(), Value::String(target.clone()));
        }
        let mut request = self
            .client
            .post(format!("{}/v1/chat/completions", via.trim_end_matches('/')))
            .bearer_auth(&self.secret)
            .header("x-switchyard-replay-of", &original.trace_id)
            .header("x-switchyard-workspace", &original.workspace)
            .json(&body);
        if let Mode::Strategy(strategy) = &mode {
            request = request.header("x-switchyard-strategy", strategy);
        }
        let response = request.send().await.map_err(|e| {
            Status::unavailable(format!("the data plane at {via} did not answer: {e}"))
        })?;
        let status = response.status();
        let replay_id = response
            .headers()
            .get("x-switchyard-trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let reason = answer["error"]["message"].as_str().unwrap_or("no details");
        // A request refused before routing (unknown model, bad body) leaves no trace.
        if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Status::failed_precondition(format!(
                "the data plane refused the replay ({status}): {reason}"
            )));
        }
        let Some(replay_id) = replay_id else {
            return Err(Status::unavailable(format!(
                "the data plane answered the replay without a trace ({status}): {reason}"
            )));
        };
        let outputs_equal = status.is_success()
            && !original.output_sha256.is_empty()
            && answer_hash(&answer) == original.output_sha256;
        let replay = self.wait_for_trace(&replay_id).await?;
        Ok(pb::ReplayTraceResponse {
            original: Some(original),
            replay: Some(replay),
            outputs_equal,
        })
    }

    async fn wait_for_trace(&self, trace_id: &str) -> Result<pb::Trace, Status> {
        let deadline = tokio::time::Instant::now() + TRACE_WAIT;
        loop {
            match self.store.get_trace(trace_id).await {
                Ok(trace) => return Ok(trace),
                Err(StoreError::NotFound { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(StoreError::NotFound { .. }) => {
                    return Err(Status::unavailable(format!(
                        "replayed as trace {trace_id}, which has not reached the trace store yet; GetTrace it shortly"
                    )));
                }
                Err(e) => return Err(store_status(e)),
            }
        }
    }
}

/// The hash a trace keeps of an OpenAI chat completion's answer.
fn answer_hash(answer: &Value) -> String {
    let message = &answer["choices"][0]["message"];
    let calls = message["tool_calls"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    answer_sha256(
        message["content"].as_str().unwrap_or_default(),
        calls.iter().map(|c| {
            (
                c["function"]["name"].as_str().unwrap_or_default(),
                c["function"]["arguments"].as_str().unwrap_or_default(),
            )
        }),
    )
}

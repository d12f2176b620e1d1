//! The built-in simulated provider: seeded, no network, with configurable
//! first-token latency, output speed and failure rate. For demos and load tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchyard_domain::SimulatedParams;

use serde_json::{Map, Value};

use super::{
    Completion, ErrorClass, EventStream, ProviderError, StreamEvent, ToolCall, ToolCallDelta,
    Usage, new_tool_call_id,
};
use crate::request::ChatRequest;

const WORDS: &[&str] = &[
    "switchyard",
    "routes",
    "every",
    "request",
    "to",
    "the",
    "best",
    "target",
    "for",
    "its",
    "workload",
    "with",
    "a",
    "fallback",
    "chain",
    "and",
    "a",
    "full",
    "trace",
    "of",
    "each",
    "attempt",
    "latency",
    "cost",
    "tokens",
];

#[derive(Debug, Clone)]
pub struct SimulatedEndpoint {
    params: SimulatedParams,
    /// Distinct, reproducible randomness per request.
    requests: Arc<AtomicU64>,
}

struct Plan {
    first_token: Duration,
    fails: bool,
    words: Vec<&'static str>,
    finish_reason: &'static str,
    per_token: Duration,
}

impl SimulatedEndpoint {
    pub fn new(params: SimulatedParams) -> Self {
        Self {
            params,
            requests: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn params(&self) -> &SimulatedParams {
        &self.params
    }

    fn plan(&self, request: &ChatRequest) -> Plan {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let mut rng =
            StdRng::seed_from_u64(self.params.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let jitter = rng.random_range(0.8..1.2);
        let first_token =
            Duration::from_millis(self.params.first_token_latency_ms.into()).mul_f64(jitter);
        let fails = rng.random::<f64>() < self.params.failure_rate;
        let wanted = self.params.output_tokens;
        let count = request.max_tokens.map_or(wanted, |cap| cap.min(wanted));
        let words = (0..count)
            .map(|_| WORDS[rng.random_range(0..WORDS.len())])
            .collect();
        Plan {
            first_token,
            fails,
            words,
            finish_reason: if count < wanted { "length" } else { "stop" },
            per_token: Duration::from_secs(1) / self.params.tokens_per_second.max(1),
        }
    }

    fn failure() -> ProviderError {
        ProviderError {
            class: ErrorClass::Transient,
            http_status: 503,
            retry_after: None,
            message: "simulated provider failure".into(),
        }
    }

    pub async fn complete(&self, request: &ChatRequest) -> Result<Completion, ProviderError> {
        let plan = self.plan(request);
        tokio::time::sleep(plan.first_token).await;
        if plan.fails {
            return Err(Self::failure());
        }
        if let Some(call) = tool_call(request) {
            return Ok(Completion {
                usage: Some(Usage {
                    input_tokens: request.workload.input_tokens,
                    output_tokens: 8,
                }),
                tool_calls: vec![call],
                finish_reason: "tool_calls".into(),
                content: String::new(),
            });
        }
        let count = u32::try_from(plan.words.len()).unwrap_or(u32::MAX);
        tokio::time::sleep(plan.per_token * count.saturating_sub(1)).await;
        Ok(Completion {
            content: plan.words.join(" "),
            tool_calls: Vec::new(),
            finish_reason: plan.finish_reason.into(),
            usage: Some(Usage {
                input_tokens: request.workload.input_tokens,
                output_tokens: u64::from(count),
            }),
        })
    }

    pub async fn stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError> {
        let plan = self.plan(request);
        tokio::time::sleep(plan.first_token).await;
        if plan.fails {
            return Err(Self::failure());
        }
        if let Some(call) = tool_call(request) {
            let events = [
                StreamEvent::ToolCall(ToolCallDelta {
                    index: 0,
                    id: Some(call.id),
                    name: Some(call.name),
                    arguments: String::new(),
                }),
                StreamEvent::ToolCall(ToolCallDelta {
                    arguments: call.arguments,
                    ..ToolCallDelta::default()
                }),
                StreamEvent::Finish {
                    finish_reason: "tool_calls".into(),
                    usage: Some(Usage {
                        input_tokens: request.workload.input_tokens,
                        output_tokens: 8,
                    }),
                },
            ];
            return Ok(Box::pin(futures::stream::iter(events.map(Ok))));
        }
        let usage = Usage {
            input_tokens: request.workload.input_tokens,
            output_tokens: plan.words.len() as u64,
        };
        let last = plan.words.len();
        let events = plan
            .words
            .into_iter()
            .enumerate()
            .map(move |(i, w)| {
                StreamEvent::Delta(if i + 1 < last {
                    format!("{w} ")
                } else {
                    w.to_owned()
                })
            })
            .chain(std::iter::once(StreamEvent::Finish {
                finish_reason: plan.finish_reason.into(),
                usage: Some(usage),
            }));
        let per_token = plan.per_token;
        let paced = futures::stream::iter(events.enumerate()).then(move |(i, event)| async move {
            if i > 0 {
                tokio::time::sleep(per_token).await;
            }
            Ok(event)
        });
        Ok(Box::pin(paced))
    }
}

/// When a request offers tools and is not answering a tool call, the simulated
/// model calls one: the one `tool_choice` names, else the first, with
/// placeholder arguments for its schema's required properties.
fn tool_call(request: &ChatRequest) -> Option<ToolCall> {
    let body = &request.body;
    let tools = body.get("tools")?.as_array()?;
    let choice = body.get("tool_choice");
    if choice.and_then(Value::as_str) == Some("none") {
        return None;
    }
    let last_role = body
        .get("messages")?
        .as_array()?
        .last()?
        .get("role")?
        .as_str()?;
    if last_role == "tool" {
        return None;
    }
    let named = choice
        .and_then(|c| c.pointer("/function/name"))
        .and_then(Value::as_str);
    let function = tools
        .iter()
        .filter_map(|t| t.get("function"))
        .find(|f| named.is_none_or(|n| f.get("name").and_then(Value::as_str) == Some(n)))?;
    let name = function.get("name")?.as_str()?.to_owned();
    let arguments = placeholder_arguments(function.get("parameters"));
    Some(ToolCall {
        id: new_tool_call_id(),
        name,
        arguments: Value::Object(arguments).to_string(),
    })
}

fn placeholder_arguments(schema: Option<&Value>) -> Map<String, Value> {
    let Some(schema) = schema else {
        return Map::new();
    };
    let properties = schema.get("properties");
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    required
        .map(|name| {
            let kind = properties
                .and_then(|p| p.get(name))
                .and_then(|p| p.get("type"))
                .and_then(Value::as_str);
            let value = match kind {
                Some("integer" | "number") => Value::from(0),
                Some("boolean") => Value::Bool(false),
                Some("array") => Value::Array(Vec::new()),
                Some("object") => Value::Object(Map::new()),
                _ => Value::String("example".into()),
            };
            (name.to_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(max_tokens: Option<u32>) -> ChatRequest {
        let mut r =
            crate::request::test_request("auto", None, crate::request::test_workload(2, 16));
        r.max_tokens = max_tokens;
        r
    }

    fn params(failure_rate: f64) -> SimulatedParams {
        SimulatedParams {
            seed: 42,
            first_token_latency_ms: 100,
            tokens_per_second: 1000,
            failure_rate,
            output_tokens: 8,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn same_seed_same_answers() {
        let a = SimulatedEndpoint::new(params(0.0));
        let b = SimulatedEndpoint::new(params(0.0));
        for _ in 0..3 {
            let x = a.complete(&request(None)).await.unwrap();
            let y = b.complete(&request(None)).await.unwrap();
            assert_eq!(x.content, y.content);
            assert_eq!(x.usage.unwrap().output_tokens, 8);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn max_tokens_caps_output_with_length_finish() {
        let sim = SimulatedEndpoint::new(params(0.0));
        let c = sim.complete(&request(Some(3))).await.unwrap();
        assert_eq!(c.content.split(' ').count(), 3);
        assert_eq!(c.finish_reason, "length");
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_one_always_fails_and_zero_never() {
        let always = SimulatedEndpoint::new(params(1.0));
        let never = SimulatedEndpoint::new(params(0.0));
        for _ in 0..20 {
            assert_eq!(
                always.complete(&request(None)).await.unwrap_err().class,
                ErrorClass::Transient
            );
            assert!(never.stream(&request(None)).await.is_ok());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn streams_end_with_finish_and_usage() {
        let sim = SimulatedEndpoint::new(params(0.0));
        let events: Vec<_> = sim.stream(&request(None)).await.unwrap().collect().await;
        assert_eq!(events.len(), 9);
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::Delta(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text.split(' ').count(), 8);
        assert!(
            matches!(events.last(), Some(Ok(StreamEvent::Finish { usage: Some(u), .. })) if u.output_tokens == 8)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn offered_tools_get_called_with_their_required_arguments() {
        let sim = SimulatedEndpoint::new(params(0.0));
        let mut r = request(None);
        r.body = serde_json::json!({
            "messages": [{ "role": "user", "content": "weather?" }],
            "tools": [
                { "type": "function", "function": { "name": "other" } },
                { "type": "function", "function": { "name": "weather", "parameters": {
                    "type": "object",
                    "properties": { "city": { "type": "string" }, "days": { "type": "integer" } },
                    "required": ["city", "days"],
                } } },
            ],
            "tool_choice": { "type": "function", "function": { "name": "weather" } },
        })
        .as_object()
        .unwrap()
        .clone();
        let c = sim.complete(&r).await.unwrap();
        assert_eq!(c.finish_reason, "tool_calls");
        assert_eq!(c.tool_calls.len(), 1);
        assert_eq!(c.tool_calls[0].name, "weather");
        let args: Value = serde_json::from_str(&c.tool_calls[0].arguments).unwrap();
        assert_eq!(args, serde_json::json!({ "city": "example", "days": 0 }));

        // Answering a tool result, the model talks again.
        r.body["messages"] = serde_json::json!([
            { "role": "user", "content": "weather?" },
            { "role": "tool", "tool_call_id": "call_1", "content": "sunny" },
        ]);
        let c = sim.complete(&r).await.unwrap();
        assert!(c.tool_calls.is_empty());
        assert!(!c.content.is_empty());
    }
}

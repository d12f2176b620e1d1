//! End-to-end checks of the mock provider over real HTTP.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::{Behavior, MockProvider};

fn client() -> reqwest::Client {
    // reqwest is built without a TLS provider and refuses to build a client
    // until one is installed, even for plain http://.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn chat(provider: &MockProvider, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}/chat/completions", provider.base_url()))
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .expect("request reaches the mock provider")
}

fn request(stream: bool) -> Value {
    json!({
        "model": "gpt-test",
        "stream": stream,
        "messages": [
            { "role": "system", "content": "be brief" },
            { "role": "user", "content": "say hello to me" },
        ],
    })
}

/// Reads a body until it ends or fails; returns the bytes and whether it
/// failed (a dropped connection).
async fn read_body(response: reqwest::Response) -> (String, bool) {
    let mut stream = response.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(_) => return (String::from_utf8(bytes).unwrap(), true),
        }
    }
    (String::from_utf8(bytes).unwrap(), false)
}

/// The payloads of `data:` events, in order.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").expect("SSE data event").to_owned())
        .collect()
}

fn json_events(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .map(|e| serde_json::from_str(e).expect("JSON event"))
        .collect()
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn ok_reply_has_the_openai_completion_shape() {
    let provider = MockProvider::start().await.unwrap();
    let response = chat(&provider, request(false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type").unwrap(),
        "application/json"
    );
    let body: Value = response.json().await.unwrap();

    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["model"], "gpt-test");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], Behavior::DEFAULT_TEXT);
    assert_eq!(choice["finish_reason"], "stop");
    // 6 prompt words over both messages, 5 words in the default text.
    assert_eq!(
        body["usage"],
        json!({ "prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11 })
    );
}

#[tokio::test]
async fn stream_sends_role_words_stop_then_done() {
    let provider = MockProvider::start().await.unwrap();
    provider.push(Behavior::Reply {
        text: "one two three".to_owned(),
    });
    let response = chat(&provider, request(true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type").unwrap(),
        "text/event-stream"
    );
    let (body, dropped) = read_body(response).await;
    assert!(!dropped);

    let events = events(&body);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = json_events(&events[..events.len() - 1]);
    assert_eq!(chunks.len(), 5, "role, three words, stop: {body}");
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-test");
        assert_eq!(chunk["id"], chunks[0]["id"]);
        assert!(chunk.get("usage").is_none());
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({ "role": "assistant", "content": "" })
    );
    let words: Vec<&Value> = chunks[1..4]
        .iter()
        .map(|c| &c["choices"][0]["delta"]["content"])
        .collect();
    assert_eq!(words, ["one ", "two ", "three"]);
    assert!(
        chunks[1..4]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
    assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn stream_sends_usage_chunk_only_when_asked() {
    let provider = MockProvider::start().await.unwrap();
    let mut with_usage = request(true);
    with_usage["stream_options"] = json!({ "include_usage": true });
    let (body, _) = read_body(chat(&provider, with_usage).await).await;
    let events = events(&body);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = json_events(&events[..events.len() - 1]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({ "prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11 })
    );
    // Earlier chunks carry `"usage": null`, as OpenAI sends them.
    let earlier = &chunks[..chunks.len() - 1];
    assert!(
        earlier
            .iter()
            .all(|c| c["usage"].is_null() && c.get("usage").is_some())
    );
    assert_eq!(
        earlier.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    let (body, _) = read_body(chat(&provider, request(true)).await).await;
    assert!(
        !body.contains("\"usage\""),
        "no usage without include_usage"
    );
}

#[tokio::test]
async fn status_sends_openai_error_and_retry_after() {
    let provider = MockProvider::start().await.unwrap();
    provider.push(Behavior::Status {
        status: 429,
        message: "slow down".to_owned(),
        retry_after_secs: Some(7),
    });
    provider.push(Behavior::Status {
        status: 503,
        message: "overloaded".to_owned(),
        retry_after_secs: None,
    });

    let response = chat(&provider, request(false)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after").unwrap(), "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "error": {
            "message": "slow down", "type": "requests", "param": null, "code": "rate_limit_exceeded"
        } })
    );

    // A stream request gets the same JSON error, not SSE.
    let response = chat(&provider, request(true)).await;
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "retry-after"), None);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "overloaded");
    assert_eq!(body["error"]["type"], "server_error");
}

#[tokio::test]
async fn delay_holds_back_the_response_headers() {
    let provider = MockProvider::start().await.unwrap();
    provider.push(Behavior::Delay {
        delay: Duration::from_millis(300),
        then: Box::new(Behavior::Reply {
            text: "late".to_owned(),
        }),
    });
    let started = Instant::now();
    let response = chat(&provider, request(true)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let (body, _) = read_body(response).await;
    assert!(body.contains("\"late\""));
}

#[tokio::test]
async fn garbage_is_not_json() {
    let provider = MockProvider::start().await.unwrap();
    provider.push(Behavior::Garbage);
    provider.push(Behavior::Garbage);

    let response = chat(&provider, request(false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type").unwrap(),
        "application/json"
    );
    let body = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&body).is_err());

    let (body, dropped) = read_body(chat(&provider, request(true)).await).await;
    assert!(!dropped);
    assert_eq!(events(&body), ["{garbage", "[DONE]"]);
}

#[tokio::test]
async fn dropped_stream_ends_without_done() {
    let provider = MockProvider::start().await.unwrap();
    provider.push(Behavior::DropStreamAfter { chunks: 2 });
    provider.push(Behavior::DropStreamAfter { chunks: 2 });

    let (body, dropped) = read_body(chat(&provider, request(true)).await).await;
    assert!(dropped, "the connection is dropped, not ended cleanly");
    let events = events(&body);
    assert!(!events.contains(&"[DONE]".to_owned()));
    let chunks = json_events(&events);
    assert_eq!(chunks.len(), 3, "role chunk and two content chunks");
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hello ");
    assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "from ");

    let (body, dropped) = read_body(chat(&provider, request(false)).await).await;
    assert!(dropped);
    assert!(
        body.starts_with('{'),
        "part of the completion arrives: {body}"
    );
    assert!(
        serde_json::from_str::<Value>(&body).is_err(),
        "truncated: {body}"
    );

    // Ending a stream on purpose is not a client cancellation.
    assert_eq!(provider.cancelled_streams(), 0);
}

#[tokio::test]
async fn cancelled_streams_counts_clients_that_leave_mid_stream() {
    let provider = MockProvider::start().await.unwrap();
    let (_, dropped) = read_body(chat(&provider, request(true)).await).await;
    assert!(!dropped);
    assert_eq!(
        provider.cancelled_streams(),
        0,
        "a finished stream is not cancelled"
    );

    // 400 words at 5 ms apart outlast the client by far.
    provider.push(Behavior::Reply {
        text: vec!["word"; 400].join(" "),
    });
    let mut stream = chat(&provider, request(true)).await.bytes_stream();
    stream.next().await.unwrap().unwrap();
    drop(stream);

    let deadline = Instant::now() + Duration::from_secs(5);
    while provider.cancelled_streams() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(provider.cancelled_streams(), 1);
}

#[tokio::test]
async fn queued_behaviours_run_in_order_then_the_default() {
    let provider = MockProvider::start().await.unwrap();
    provider.push(Behavior::Status {
        status: 500,
        message: "first".to_owned(),
        retry_after_secs: None,
    });
    provider.push(Behavior::Reply {
        text: "second".to_owned(),
    });

    assert_eq!(chat(&provider, request(false)).await.status(), 500);
    let second: Value = chat(&provider, request(false)).await.json().await.unwrap();
    assert_eq!(second["choices"][0]["message"]["content"], "second");
    let third: Value = chat(&provider, request(false)).await.json().await.unwrap();
    assert_eq!(
        third["choices"][0]["message"]["content"],
        Behavior::DEFAULT_TEXT
    );

    provider.set_default(Behavior::Reply {
        text: "fallback".to_owned(),
    });
    for _ in 0..2 {
        let reply: Value = chat(&provider, request(false)).await.json().await.unwrap();
        assert_eq!(reply["choices"][0]["message"]["content"], "fallback");
    }
    assert_eq!(provider.request_count(), 5);
}

#[tokio::test]
async fn requests_records_bodies_and_headers() {
    let provider = MockProvider::start().await.unwrap();
    chat(&provider, request(false)).await;
    client()
        .post(format!("{}/chat/completions", provider.base_url()))
        .header("x-request-id", "req-42")
        .json(&json!({ "model": "other", "messages": [] }))
        .send()
        .await
        .unwrap();

    let requests = provider.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(provider.request_count(), 2);
    assert_eq!(requests[0].body, request(false));
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(requests[0].header("Authorization"), Some("Bearer sk-test"));
    assert_eq!(requests[1].body["model"], "other");
    assert_eq!(requests[1].authorization, None);
    assert_eq!(requests[1].header("x-request-id"), Some("req-42"));
    assert!(
        requests[1]
            .headers
            .contains(&("content-type".to_owned(), "application/json".to_owned()))
    );
}

#[tokio::test]
async fn invalid_json_is_rejected_and_keeps_the_queue() {
    let provider = MockProvider::start().await.unwrap();
    provider.push(Behavior::Reply {
        text: "kept".to_owned(),
    });
    let response = client()
        .post(format!("{}/chat/completions", provider.base_url()))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(provider.requests()[0].body, json!("{oops"));

    let reply: Value = chat(&provider, request(false)).await.json().await.unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "kept");
}

#[tokio::test]
async fn models_lists_the_mock_model() {
    let provider = MockProvider::start().await.unwrap();
    let body: Value = client()
        .get(format!("{}/models", provider.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], "mock-model");
    assert_eq!(body["data"][0]["object"], "model");
    assert_eq!(
        provider.request_count(),
        0,
        "only chat requests are recorded"
    );
}

#[tokio::test]
async fn dropping_the_provider_stops_the_server() {
    let provider = MockProvider::start().await.unwrap();
    let url = format!("{}/models", provider.base_url());
    drop(provider);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // A fresh client each time, so no pooled connection is reused.
        if client().get(&url).send().await.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "server still answering");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

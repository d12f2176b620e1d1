//! What a trace's payload policy costs a data plane per request: under
//! `none` nothing, under `hash` (the default) the request body serialized
//! and hashed plus the answer hashed, under `full` the same plus both kept
//! whole. The same steps the data plane's trace builder takes, on request
//! bodies of three sizes and an answer of about 1 KB.
//! Run: `cargo bench -p switchyard-bench --bench payload`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark setup: a failure is a broken benchmark"
)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use switchyard_domain::{answer_sha256, sha256_hex};

/// A chat request body whose prompt is about `prompt_bytes` long.
fn body(prompt_bytes: usize) -> Map<String, Value> {
    let sentence = "Summarise the quarterly report and list the three largest risks. ";
    let prompt = sentence.repeat(prompt_bytes / sentence.len() + 1);
    let value = json!({
        "model": "auto",
        "messages": [
            {"role": "system", "content": "You are a careful analyst."},
            {"role": "user", "content": &prompt[..prompt_bytes]},
        ],
        "max_tokens": 512,
        "temperature": 0.2,
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

#[derive(Default)]
struct Kept {
    request_sha256: String,
    request_json: Vec<u8>,
    output_sha256: String,
    output_text: String,
}

fn hash(body: &Map<String, Value>, answer: &str) -> Kept {
    let json = serde_json::to_vec(body).unwrap();
    Kept {
        request_sha256: sha256_hex(&json),
        output_sha256: answer_sha256(answer, std::iter::empty()),
        ..Kept::default()
    }
}

fn full(body: &Map<String, Value>, answer: &str) -> Kept {
    let json = serde_json::to_vec(body).unwrap();
    Kept {
        request_sha256: sha256_hex(&json),
        request_json: json,
        output_sha256: answer_sha256(answer, std::iter::empty()),
        output_text: answer.to_owned(),
    }
}

fn payload_policies(c: &mut Criterion) {
    let answer = "The three largest risks are concentration, currency and churn. ".repeat(16);
    let mut group = c.benchmark_group("payload_policy");
    for prompt_bytes in [200, 4 << 10, 64 << 10] {
        let body = body(prompt_bytes);
        group.throughput(Throughput::Bytes(
            (serde_json::to_vec(&body).unwrap().len() + answer.len()) as u64,
        ));
        group.bench_with_input(BenchmarkId::new("hash", prompt_bytes), &body, |b, body| {
            b.iter(|| hash(std::hint::black_box(body), &answer));
        });
        group.bench_with_input(BenchmarkId::new("full", prompt_bytes), &body, |b, body| {
            b.iter(|| full(std::hint::black_box(body), &answer));
        });
    }
    group.finish();
    // Read the fields, so nothing above is optimised away as unused.
    let kept = full(&body(200), &answer);
    assert_eq!(
        kept.request_sha256.len() + kept.output_sha256.len(),
        128,
        "{} {}",
        kept.request_json.len(),
        kept.output_text.len()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1));
    targets = payload_policies
}
criterion_main!(benches);

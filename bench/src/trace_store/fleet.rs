//! The fleet the benchmark's traces come from: 20 workspaces, 5 providers
//! and their 10 models with prices and speeds, the 3 strategies with their
//! weights, the intents of requests, how attempts fail, and how often
//! requests end each way.

use switchyard_proto::v1 as pb;

/// A model on a provider, with what its candidates are scored on.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub provider: &'static str,
    pub name: &'static str,
    pub family: &'static str,
    /// 1 economy, 2 standard, 3 frontier.
    pub tier: u8,
    pub region: &'static str,
    /// USD per million input and output tokens.
    pub price_in: f64,
    pub price_out: f64,
    /// Output tokens a second, and time to the first token in ms.
    pub tokens_per_second: f64,
    pub ttft_ms: f64,
}

const fn model(
    provider: &'static str,
    name: &'static str,
    family: &'static str,
    tier: u8,
    region: &'static str,
    price: (f64, f64),
    speed: (f64, f64),
) -> Model {
    Model {
        provider,
        name,
        family,
        tier,
        region,
        price_in: price.0,
        price_out: price.1,
        tokens_per_second: speed.0,
        ttft_ms: speed.1,
    }
}

pub const MODELS: [Model; 10] = [
    model(
        "openai",
        "gpt-4o",
        "gpt-4",
        3,
        "us",
        (2.5, 10.0),
        (90.0, 450.0),
    ),
    model(
        "openai",
        "gpt-4o-mini",
        "gpt-4",
        1,
        "us",
        (0.15, 0.6),
        (120.0, 300.0),
    ),
    model(
        "anthropic",
        "claude-sonnet-4",
        "claude",
        3,
        "us",
        (3.0, 15.0),
        (70.0, 700.0),
    ),
    model(
        "anthropic",
        "claude-haiku-3.5",
        "claude",
        2,
        "us",
        (0.8, 4.0),
        (110.0, 400.0),
    ),
    model(
        "google",
        "gemini-2.5-pro",
        "gemini",
        3,
        "eu",
        (1.25, 10.0),
        (80.0, 900.0),
    ),
    model(
        "google",
        "gemini-2.5-flash",
        "gemini",
        2,
        "eu",
        (0.3, 2.5),
        (180.0, 350.0),
    ),
    model(
        "mistral",
        "mistral-large",
        "mistral",
        2,
        "eu",
        (2.0, 6.0),
        (60.0, 500.0),
    ),
    model(
        "mistral",
        "codestral",
        "mistral",
        2,
        "eu",
        (0.3, 0.9),
        (150.0, 250.0),
    ),
    model(
        "groq",
        "llama-3.3-70b",
        "llama",
        2,
        "us",
        (0.59, 0.79),
        (300.0, 200.0),
    ),
    model(
        "groq",
        "llama-3.1-8b",
        "llama",
        1,
        "us",
        (0.05, 0.08),
        (700.0, 120.0),
    ),
];

pub const PROVIDERS: [&str; 5] = ["openai", "anthropic", "google", "mistral", "groq"];

pub const WORKSPACES: [&str; 20] = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "oscorp",
    "aperture",
    "black-mesa",
    "vandelay",
    "dunder-mifflin",
    "pied-piper",
    "monarch",
    "gringotts",
    "nakatomi",
];

/// Name, share of the traffic and weights of quality, speed and cost (health
/// 1 and workspace fit 0.5 beside them), as the default strategies have them.
pub const STRATEGIES: [(&str, f64, [f64; 3]); 3] = [
    ("balanced", 0.6, [1.0, 1.0, 1.0]),
    ("cost", 0.3, [0.3, 0.3, 3.0]),
    ("quality", 0.1, [3.0, 0.3, 0.3]),
];

/// Intent, share, default output tokens, timeout profile and its timeout.
pub const INTENTS: [(&str, f64, u64, &str, u64); 5] = [
    ("autocomplete", 0.25, 64, "fast", 5_000),
    ("quick_edit", 0.2, 512, "fast", 10_000),
    ("chat", 0.3, 1_024, "standard", 60_000),
    ("coding", 0.2, 2_048, "standard", 60_000),
    ("deep_reasoning", 0.05, 8_192, "deep", 300_000),
];

/// Error class of a failed attempt, share, HTTP status and message.
pub const ATTEMPT_ERRORS: [(pb::ErrorClass, f64, u32, &str); 5] = [
    (
        pb::ErrorClass::Transient,
        0.4,
        503,
        "upstream returned 503: the server is temporarily overloaded",
    ),
    (
        pb::ErrorClass::RateLimited,
        0.25,
        429,
        "upstream returned 429: rate limit reached for requests per minute",
    ),
    (
        pb::ErrorClass::Timeout,
        0.2,
        0,
        "no first token within the timeout",
    ),
    (pb::ErrorClass::ProviderDown, 0.1, 0, "connection refused"),
    (
        pb::ErrorClass::Protocol,
        0.05,
        200,
        "the stream ended without a final event",
    ),
];

/// Share of outcomes: success, failed, partial, the rest cancelled.
pub const SUCCESS: f64 = 0.93;
pub const FAILED: f64 = 0.03;
pub const PARTIAL: f64 = 0.02;

/// Data-plane nodes reporting.
pub const NODES: u32 = 8;

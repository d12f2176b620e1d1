//! The registry the gateway runs with: one OpenAI-compatible provider, the
//! mock, serving one model, so routing has exactly one target; and the
//! benchmark's API key.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::credentials;

/// The model name clients ask for; the gateway forwards it unchanged.
pub const MODEL: &str = "bench-model";
/// The environment variable that holds the mock provider's API key.
pub const KEY_ENV: &str = "SWITCHYARD_BENCH_MOCK_KEY";

/// Registry YAML pointing the `mock` provider at `base_url`.
pub fn yaml(base_url: &str) -> String {
    let api_keys = credentials::BOOTSTRAP_YAML;
    format!(
        r#"# Written by switchyard-bench for one run.
providers:
  - name: mock
    kind: openai
    base_url: {base_url}
    api_key_ref: env:{KEY_ENV}

models:
  - provider: mock
    name: {MODEL}
    family: {MODEL}
    capabilities: {{ streaming: true, tools: false, vision: false, json_output: true }}
    context_window: 32768
    input_price_per_mtok: 0.10
    output_price_per_mtok: 0.40
    region: local
    tier: economy

{api_keys}"#
    )
}

/// Writes the registry into `dir` and returns its path.
pub fn write(dir: &Path, base_url: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("registry.yaml");
    std::fs::write(&path, yaml(base_url)).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

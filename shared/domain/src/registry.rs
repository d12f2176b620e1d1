//! Registry entities as users define them (API or bootstrap file), with validation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Budget, RateLimits, TracePayload, ValidationError};

/// The protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Ollama,
    Simulated,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Ollama => "ollama",
            Self::Simulated => "simulated",
        }
    }
}

/// Behaviour of the built-in simulated provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedParams {
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_first_token_latency_ms")]
    pub first_token_latency_ms: u32,
    #[serde(default = "default_tokens_per_second")]
    pub tokens_per_second: u32,
    #[serde(default)]
    pub failure_rate: f64,
    #[serde(default = "default_output_tokens")]
    pub output_tokens: u32,
}

fn default_first_token_latency_ms() -> u32 {
    50
}
fn default_tokens_per_second() -> u32 {
    200
}
fn default_output_tokens() -> u32 {
    16
}

impl SimulatedParams {
    fn validate(&self) -> Result<(), ValidationError> {
        if !(self.failure_rate.is_finite() && (0.0..=1.0).contains(&self.failure_rate)) {
            return Err(ValidationError::new(
                "failure_rate",
                "must be within [0, 1]",
            ));
        }
        if self.tokens_per_second == 0 {
            return Err(ValidationError::new(
                "tokens_per_second",
                "must be greater than 0",
            ));
        }
        if self.first_token_latency_ms > 600_000 {
            return Err(ValidationError::new(
                "first_token_latency_ms",
                "must be at most 600000",
            ));
        }
        if self.output_tokens == 0 {
            return Err(ValidationError::new(
                "output_tokens",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

/// Where a data plane finds a secret: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable of the data-plane process.
    Env(String),
    /// A file mounted into the data plane (trailing newline ignored).
    File(PathBuf),
}

impl SecretRef {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if let Some(name) = raw.strip_prefix("env:") {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ValidationError::new(
                    "",
                    "env: needs a variable name like OPENAI_API_KEY",
                ));
            }
            Ok(Self::Env(name.to_owned()))
        } else if let Some(path) = raw.strip_prefix("file:") {
            if !path.starts_with('/') {
                return Err(ValidationError::new("", "file: needs an absolute path"));
            }
            Ok(Self::File(PathBuf::from(path)))
        } else {
            Err(ValidationError::new(
                "",
                "must be \"env:NAME\" or \"file:/path\"",
            ))
        }
    }
}

/// A provider: where to send requests and how to authenticate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    pub name: String,
    pub kind: ProviderKind,
    #[serde(default)]
    pub base_url: String,
    /// `env:NAME` or `file:/path`; empty when the provider needs no key.
    #[serde(default)]
    pub api_key_ref: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[serde(default)]
    pub simulated: Option<SimulatedParams>,
}

fn enabled_by_default() -> bool {
    true
}

impl ProviderSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_slug(&self.name).map_err(|e| e.within("name"))?;
        match self.kind {
            ProviderKind::Simulated => {
                let params = self.simulated.as_ref().ok_or_else(|| {
                    ValidationError::new("simulated", "required for simulated providers")
                })?;
                params.validate().map_err(|e| e.within("simulated"))?;
            }
            ProviderKind::Openai | ProviderKind::Anthropic | ProviderKind::Ollama => {
                validate_base_url(&self.base_url).map_err(|e| e.within("base_url"))?;
            }
        }
        if !self.api_key_ref.is_empty() {
            SecretRef::parse(&self.api_key_ref).map_err(|e| e.within("api_key_ref"))?;
        }
        for (name, value) in &self.headers {
            let field = format!("headers[{name}]");
            if name.is_empty() || !name.bytes().all(is_header_name_byte) {
                return Err(ValidationError::new(field, "not a valid HTTP header name"));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(ValidationError::new(
                    field,
                    "header values cannot contain CR, LF or NUL",
                ));
            }
        }
        Ok(())
    }

    /// The secret reference, if the provider has one. Valid after `validate`.
    pub fn secret_ref(&self) -> Option<SecretRef> {
        if self.api_key_ref.is_empty() {
            None
        } else {
            SecretRef::parse(&self.api_key_ref).ok()
        }
    }
}

fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn validate_base_url(url: &str) -> Result<(), ValidationError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| ValidationError::new("", "must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || url.chars().any(char::is_whitespace) {
        return Err(ValidationError::new(
            "",
            "must be an absolute URL with a host",
        ));
    }
    Ok(())
}

/// Names of providers and strategies: short, lowercase, URL- and label-safe.
pub(crate) fn validate_slug(name: &str) -> Result<(), ValidationError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if name.is_empty() {
        return Err(ValidationError::new("", "required"));
    }
    if !first_ok || !rest_ok || name.len() > 63 {
        return Err(ValidationError::new(
            "",
            "must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit",
        ));
    }
    Ok(())
}

/// Model names as providers spell them: "gpt-4o-mini", "meta-llama/Llama-3.1-8B", "llama3:8b".
fn validate_model_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() {
        return Err(ValidationError::new("", "required"));
    }
    if name.len() > 128 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationError::new(
            "",
            "must be at most 128 characters without whitespace",
        ));
    }
    Ok(())
}

/// Capability tier, used by the quality dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Economy,
    Standard,
    Frontier,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Economy => "economy",
            Self::Standard => "standard",
            Self::Frontier => "frontier",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capabilities {
    pub streaming: bool,
    pub tools: bool,
    pub vision: bool,
    pub json_output: bool,
}

/// An operator's override of a target's circuit breakers on every data plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitMode {
    /// Each data plane's breaker decides from the traffic it sees.
    #[default]
    Auto,
    /// Never routed to, whatever the breakers say (maintenance, a known outage).
    Open,
    /// Always routed to, whatever the breakers say (a breaker that misjudges).
    Closed,
}

/// A target: one model served by one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub provider: String,
    pub name: String,
    pub family: String,
    #[serde(default)]
    pub capabilities: Capabilities,
    pub context_window: u32,
    pub input_price_per_mtok: f64,
    pub output_price_per_mtok: f64,
    #[serde(default)]
    pub region: String,
    pub tier: Tier,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Forces the target's circuit open or closed on every data plane; `auto`
    /// (the default) leaves it to each node's breaker.
    #[serde(default)]
    pub circuit: CircuitMode,
}

/// `provider/model`, the id of a target everywhere (traces, metrics, explanations).
pub fn target_id(provider: &str, model: &str) -> String {
    format!("{provider}/{model}")
}

impl ModelSpec {
    pub fn target_id(&self) -> String {
        target_id(&self.provider, &self.name)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_slug(&self.provider).map_err(|e| e.within("provider"))?;
        validate_model_name(&self.name).map_err(|e| e.within("name"))?;
        validate_model_name(&self.family).map_err(|e| e.within("family"))?;
        if self.context_window == 0 {
            return Err(ValidationError::new(
                "context_window",
                "must be greater than 0",
            ));
        }
        validate_price(self.input_price_per_mtok).map_err(|e| e.within("input_price_per_mtok"))?;
        validate_price(self.output_price_per_mtok)
            .map_err(|e| e.within("output_price_per_mtok"))?;
        if self.region.len() > 64 || self.region.chars().any(char::is_whitespace) {
            return Err(ValidationError::new(
                "region",
                "must be at most 64 characters without whitespace",
            ));
        }
        for (i, alias) in self.aliases.iter().enumerate() {
            let field = format!("aliases[{i}]");
            validate_model_name(alias).map_err(|e| e.within(&field))?;
            if alias == crate::AUTO_MODEL {
                return Err(ValidationError::new(field, "\"auto\" is reserved"));
            }
        }
        Ok(())
    }

    /// Whether a request for `requested` may be served by this target.
    pub fn answers_to(&self, requested: &str) -> bool {
        requested == crate::AUTO_MODEL
            || requested == self.name
            || self.aliases.iter().any(|a| a == requested)
            || requested
                .split_once('/')
                .is_some_and(|(p, m)| p == self.provider && m == self.name)
    }
}

fn validate_price(price: f64) -> Result<(), ValidationError> {
    if price.is_finite() && (0.0..=10_000.0).contains(&price) {
        Ok(())
    } else {
        Err(ValidationError::new(
            "",
            "must be a finite price in USD between 0 and 10000",
        ))
    }
}

/// Relative weights of the scoring dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyWeights {
    pub quality: f64,
    pub speed: f64,
    pub cost: f64,
    pub health: f64,
    pub workspace_fit: f64,
}

impl Default for StrategyWeights {
    fn default() -> Self {
        Self {
            quality: 1.0,
            speed: 1.0,
            cost: 1.0,
            health: 1.0,
            workspace_fit: 1.0,
        }
    }
}

impl StrategyWeights {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let named = [
            ("quality", self.quality),
            ("speed", self.speed),
            ("cost", self.cost),
            ("health", self.health),
            ("workspace_fit", self.workspace_fit),
        ];
        for (name, w) in named {
            if !w.is_finite() || w < 0.0 {
                return Err(ValidationError::new(name, "must be a finite number >= 0"));
            }
        }
        if named.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
            return Err(ValidationError::new(
                "",
                "at least one weight must be greater than 0",
            ));
        }
        Ok(())
    }
}

/// A named weight set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategySpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub weights: StrategyWeights,
    /// When set, only this workspace's requests may use the strategy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workspace: String,
    /// Hedged requests; None means never hedge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedging: Option<HedgingSpec>,
}

/// Hedging for a strategy: when the first target has produced no first token
/// by its p95 time to first token, the next candidate starts too.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HedgingSpec {
    /// Most hedges as a share of the strategy's requests, in (0, 0.5].
    pub max_share: f64,
    /// Never hedge sooner than this; 0 means no floor.
    #[serde(default)]
    pub min_delay_ms: u32,
}

impl HedgingSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !(self.max_share.is_finite() && self.max_share > 0.0 && self.max_share <= 0.5) {
            return Err(ValidationError::new("max_share", "must be within (0, 0.5]"));
        }
        if self.min_delay_ms > 600_000 {
            return Err(ValidationError::new(
                "min_delay_ms",
                "must be at most 600000 (10 minutes)",
            ));
        }
        Ok(())
    }
}

/// A tenant's routing policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Regions requests may be served from; empty means any.
    #[serde(default)]
    pub allowed_regions: Vec<String>,
    #[serde(default)]
    pub preferred_providers: Vec<String>,
    #[serde(default)]
    pub avoided_providers: Vec<String>,
    /// Strategy for requests that name none; empty means the global default.
    #[serde(default)]
    pub default_strategy: String,
    /// What this workspace's traces keep, when it differs from the control
    /// plane's policy (say `none` for a workspace whose prompts may hold personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_payload: Option<TracePayload>,
    /// Shared by every key of the workspace, across all data planes.
    #[serde(default)]
    pub limits: RateLimits,
    #[serde(default)]
    pub budget: Budget,
}

impl WorkspaceSpec {
    /// The policy of a workspace with no registry entry: no restrictions.
    pub fn unrestricted(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: String::new(),
            allowed_regions: vec![],
            preferred_providers: vec![],
            avoided_providers: vec![],
            default_strategy: String::new(),
            trace_payload: None,
            limits: RateLimits::default(),
            budget: Budget::default(),
        }
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_slug(&self.name).map_err(|e| e.within("name"))?;
        if self.description.len() > 1024 {
            return Err(ValidationError::new(
                "description",
                "must be at most 1024 characters",
            ));
        }
        for (i, region) in self.allowed_regions.iter().enumerate() {
            if region.is_empty() || region.len() > 64 || region.chars().any(char::is_whitespace) {
                return Err(ValidationError::new(
                    format!("allowed_regions[{i}]"),
                    "must be 1-64 characters without whitespace",
                ));
            }
        }
        for (field, list) in [
            ("preferred_providers", &self.preferred_providers),
            ("avoided_providers", &self.avoided_providers),
        ] {
            for (i, provider) in list.iter().enumerate() {
                validate_slug(provider).map_err(|e| e.within(&format!("{field}[{i}]")))?;
            }
        }
        if let Some(both) = self
            .preferred_providers
            .iter()
            .find(|p| self.avoided_providers.contains(p))
        {
            return Err(ValidationError::new(
                "avoided_providers",
                format!("{both:?} is also preferred"),
            ));
        }
        if !self.default_strategy.is_empty() {
            validate_slug(&self.default_strategy).map_err(|e| e.within("default_strategy"))?;
        }
        self.budget.validate().map_err(|e| e.within("budget"))?;
        Ok(())
    }
}

impl StrategySpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_slug(&self.name).map_err(|e| e.within("name"))?;
        if self.description.len() > 1024 {
            return Err(ValidationError::new(
                "description",
                "must be at most 1024 characters",
            ));
        }
        if !self.workspace.is_empty() {
            validate_slug(&self.workspace).map_err(|e| e.within("workspace"))?;
        }
        if let Some(hedging) = &self.hedging {
            hedging.validate().map_err(|e| e.within("hedging"))?;
        }
        self.weights.validate().map_err(|e| e.within("weights"))
    }
}

/// The strategies every registry starts with.
pub fn builtin_strategies() -> Vec<StrategySpec> {
    let strategy = |name: &str, description: &str, quality, speed, cost| StrategySpec {
        name: name.to_owned(),
        description: description.to_owned(),
        workspace: String::new(),
        hedging: None,
        weights: StrategyWeights {
            quality,
            speed,
            cost,
            health: 1.0,
            workspace_fit: 0.5,
        },
    };
    vec![
        strategy(
            "balanced",
            "Quality, speed and cost weighed evenly",
            1.0,
            1.0,
            1.0,
        ),
        strategy("cost", "Cheapest adequate target first", 0.3, 0.3, 3.0),
        strategy("speed", "Fastest target first", 0.3, 3.0, 0.3),
        strategy("quality", "Strongest model first", 3.0, 0.3, 0.3),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai() -> ProviderSpec {
        ProviderSpec {
            name: "openai".into(),
            kind: ProviderKind::Openai,
            base_url: "https://api.openai.com/v1".into(),
            api_key_ref: "env:OPENAI_API_KEY".into(),
            headers: BTreeMap::new(),
            enabled: true,
            simulated: None,
        }
    }

    fn model() -> ModelSpec {
        ModelSpec {
            provider: "openai".into(),
            name: "gpt-4o-mini".into(),
            family: "gpt-4o".into(),
            capabilities: Capabilities::default(),
            context_window: 128_000,
            input_price_per_mtok: 0.15,
            output_price_per_mtok: 0.6,
            region: "us".into(),
            tier: Tier::Standard,
            aliases: vec!["mini".into()],
            enabled: true,
            circuit: CircuitMode::Auto,
        }
    }

    #[test]
    fn valid_provider_passes() {
        assert_eq!(openai().validate(), Ok(()));
    }

    #[test]
    fn bad_provider_fields_are_named() {
        let mut p = openai();
        p.name = "Open AI".into();
        assert_eq!(p.validate().unwrap_err().field, "name");

        let mut p = openai();
        p.base_url = "ftp://x".into();
        assert_eq!(p.validate().unwrap_err().field, "base_url");

        let mut p = openai();
        p.api_key_ref = "sk-live-123".into();
        assert_eq!(p.validate().unwrap_err().field, "api_key_ref");

        let mut p = openai();
        p.headers.insert("x-a".into(), "b\r\nevil: 1".into());
        assert_eq!(p.validate().unwrap_err().field, "headers[x-a]");

        let mut p = openai();
        p.kind = ProviderKind::Simulated;
        assert_eq!(p.validate().unwrap_err().field, "simulated");
    }

    #[test]
    fn simulated_failure_rate_is_bounded() {
        let mut p = openai();
        p.kind = ProviderKind::Simulated;
        p.simulated = Some(SimulatedParams {
            seed: 1,
            first_token_latency_ms: 10,
            tokens_per_second: 100,
            failure_rate: 1.5,
            output_tokens: 8,
        });
        assert_eq!(p.validate().unwrap_err().field, "simulated.failure_rate");
    }

    #[test]
    fn secret_refs_parse() {
        assert_eq!(
            SecretRef::parse("env:KEY_1"),
            Ok(SecretRef::Env("KEY_1".into()))
        );
        assert_eq!(
            SecretRef::parse("file:/run/secrets/k"),
            Ok(SecretRef::File("/run/secrets/k".into()))
        );
        assert!(SecretRef::parse("env:").is_err());
        assert!(SecretRef::parse("env:1A").is_err());
        assert!(SecretRef::parse("file:relative").is_err());
    }

    #[test]
    fn bad_model_fields_are_named() {
        assert_eq!(model().validate(), Ok(()));
        let mut m = model();
        m.context_window = 0;
        assert_eq!(m.validate().unwrap_err().field, "context_window");
        let mut m = model();
        m.output_price_per_mtok = f64::NAN;
        assert_eq!(m.validate().unwrap_err().field, "output_price_per_mtok");
        let mut m = model();
        m.aliases = vec!["ok".into(), "auto".into()];
        assert_eq!(m.validate().unwrap_err().field, "aliases[1]");
    }

    #[test]
    fn models_answer_to_name_alias_target_id_and_auto() {
        let m = model();
        assert!(m.answers_to("gpt-4o-mini"));
        assert!(m.answers_to("mini"));
        assert!(m.answers_to("openai/gpt-4o-mini"));
        assert!(m.answers_to("auto"));
        assert!(!m.answers_to("other/gpt-4o-mini"));
        assert!(!m.answers_to("gpt-4o"));
    }

    #[test]
    fn workspace_policies_are_checked() {
        let mut w = WorkspaceSpec::unrestricted("team-a");
        w.allowed_regions = vec!["eu".into()];
        w.preferred_providers = vec!["openai".into()];
        assert_eq!(w.validate(), Ok(()));
        w.avoided_providers = vec!["openai".into()];
        assert_eq!(w.validate().unwrap_err().field, "avoided_providers");
        w.avoided_providers = vec![];
        w.allowed_regions = vec![String::new()];
        assert_eq!(w.validate().unwrap_err().field, "allowed_regions[0]");
        assert_eq!(
            WorkspaceSpec::unrestricted("Bad Name")
                .validate()
                .unwrap_err()
                .field,
            "name"
        );
    }

    #[test]
    fn weights_must_be_finite_and_not_all_zero() {
        let mut s = builtin_strategies().remove(0);
        assert_eq!(s.validate(), Ok(()));
        s.weights.cost = f64::INFINITY;
        assert_eq!(s.validate().unwrap_err().field, "weights.cost");
        s.weights = StrategyWeights {
            quality: 0.0,
            speed: 0.0,
            cost: 0.0,
            health: 0.0,
            workspace_fit: 0.0,
        };
        assert_eq!(s.validate().unwrap_err().field, "weights");
    }
}

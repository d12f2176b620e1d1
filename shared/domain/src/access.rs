//! Who may call a data plane: API keys, known to data planes only by the
//! SHA-256 of their secret, each bound to one workspace with its rights and
//! limits; and the workspace's own limits and spend caps.
//!
//! A plain SHA-256 suffices: secrets are 256-bit random strings, so there is
//! nothing for a slow password hash to protect against, and a data plane
//! checks a key with one hash and one map lookup.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ValidationError;
use crate::registry::{SecretRef, validate_slug};

/// Every generated secret starts with this, so leaked keys are easy to scan for.
pub const KEY_SECRET_PREFIX: &str = "sy-";

/// Shortest secret accepted when registering one made elsewhere.
pub const MIN_SECRET_LEN: usize = 32;

/// Requests and tokens (input and output together) per minute; 0 means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    #[serde(default)]
    pub requests_per_minute: u32,
    #[serde(default)]
    pub tokens_per_minute: u32,
}

impl RateLimits {
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_minute == 0 && self.tokens_per_minute == 0
    }
}

/// Spend caps in USD per UTC day and month; 0 means none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(default)]
    pub daily_usd: f64,
    #[serde(default)]
    pub monthly_usd: f64,
}

impl Budget {
    pub fn is_unlimited(&self) -> bool {
        self.daily_usd == 0.0 && self.monthly_usd == 0.0
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        for (field, value) in [
            ("daily_usd", self.daily_usd),
            ("monthly_usd", self.monthly_usd),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ValidationError::new(
                    field,
                    "must be a finite amount of at least 0",
                ));
            }
        }
        Ok(())
    }
}

/// What a data plane knows of a working key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    /// Public id; safe to log.
    pub id: String,
    pub secret_sha256: [u8; 32],
    pub workspace: String,
    /// Models (names, target ids, or "auto") it may request; empty means any.
    pub allowed_models: Vec<String>,
    pub limits: RateLimits,
    /// May act for any workspace: the control plane's replay key.
    pub any_workspace: bool,
}

impl KeyGrant {
    pub fn may_request(&self, model: &str) -> bool {
        self.allowed_models.is_empty() || self.allowed_models.iter().any(|m| m == model)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.id.is_empty() || self.id.len() > 64 {
            return Err(ValidationError::new("id", "must be 1-64 characters"));
        }
        if !self.any_workspace {
            validate_slug(&self.workspace).map_err(|e| e.within("workspace"))?;
        }
        validate_models(&self.allowed_models)
    }
}

pub fn secret_sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The first characters of a secret, to recognise it in a list.
pub fn secret_prefix(secret: &str) -> String {
    secret.chars().take(KEY_SECRET_PREFIX.len() + 4).collect()
}

pub fn validate_models(models: &[String]) -> Result<(), ValidationError> {
    for (i, m) in models.iter().enumerate() {
        if m.is_empty() || m.len() > 256 || m.chars().any(char::is_whitespace) {
            return Err(ValidationError::new(
                format!("allowed_models[{i}]"),
                "must be 1-256 characters without whitespace",
            ));
        }
    }
    Ok(())
}

pub fn validate_secret(secret: &str) -> Result<(), ValidationError> {
    if secret.len() < MIN_SECRET_LEN || secret.len() > 256 {
        return Err(ValidationError::new(
            "secret",
            format!("must be {MIN_SECRET_LEN}-256 characters"),
        ));
    }
    if !secret.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ValidationError::new(
            "secret",
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

/// A key the bootstrap file registers, its secret read from the control
/// plane's environment or a mounted file (never written in the file itself).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapKey {
    pub workspace: String,
    pub name: String,
    pub secret_ref: String,
    #[serde(default)]
    pub allowed_models: Vec<String>,
    #[serde(default)]
    pub limits: RateLimits,
}

impl BootstrapKey {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_slug(&self.workspace).map_err(|e| e.within("workspace"))?;
        validate_name(&self.name)?;
        SecretRef::parse(&self.secret_ref).map_err(|e| e.within("secret_ref"))?;
        validate_models(&self.allowed_models)
    }

    pub fn secret_ref(&self) -> Result<SecretRef, ValidationError> {
        SecretRef::parse(&self.secret_ref).map_err(|e| e.within("secret_ref"))
    }
}

pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(ValidationError::new(
            "name",
            "must be 1-128 characters without control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_limit_models_only_when_they_list_some() {
        let mut grant = KeyGrant {
            id: "key_1".into(),
            secret_sha256: secret_sha256("s"),
            workspace: "team".into(),
            allowed_models: vec![],
            limits: RateLimits::default(),
            any_workspace: false,
        };
        assert!(grant.may_request("gpt-4o"));
        grant.allowed_models = vec!["auto".into(), "openai/gpt-4o-mini".into()];
        assert!(grant.may_request("auto"));
        assert!(!grant.may_request("gpt-4o"));
        grant.workspace = "Not A Slug".into();
        assert_eq!(grant.validate().unwrap_err().field, "workspace");
    }

    #[test]
    fn secrets_are_checked_and_hashed() {
        assert!(validate_secret("short").is_err());
        assert!(validate_secret(&"x".repeat(40)).is_ok());
        assert!(validate_secret(&format!("{} y", "x".repeat(40))).is_err());
        assert_ne!(secret_sha256("a"), secret_sha256("b"));
        assert_eq!(secret_prefix("sy-abcdefgh"), "sy-abcd");
        let budget = Budget {
            daily_usd: -1.0,
            monthly_usd: 0.0,
        };
        assert_eq!(budget.validate().unwrap_err().field, "daily_usd");
    }
}

//! Switchyard's domain model: providers, models (targets), strategies, the routing
//! snapshot and the bootstrap file, each validated once at the edge.
//!
//! Generated wire types are converted into these types with `TryFrom`, and a
//! conversion that fails names the bad field. This crate does no I/O and must never
//! depend on the control plane, the data plane, a database or an HTTP client.

mod access;
mod bootstrap;
mod convert;
mod error;
mod payload;
mod registry;
mod sketch;
mod snapshot;
mod telemetry;

pub use access::{
    BootstrapKey, Budget, KEY_SECRET_PREFIX, KeyGrant, MIN_SECRET_LEN, RateLimits, secret_prefix,
    secret_sha256, validate_models, validate_name, validate_secret,
};
pub use bootstrap::BootstrapConfig;
pub use convert::{timestamp_from_millis, timestamp_to_millis};
pub use error::ValidationError;
pub use payload::{TracePayload, answer_sha256, sha256_hex};
pub use registry::{
    Capabilities, CircuitMode, HedgingSpec, ModelSpec, ProviderKind, ProviderSpec, SecretRef,
    SimulatedParams, StrategySpec, StrategyWeights, Tier, WorkspaceSpec, builtin_strategies,
    target_id,
};
pub use sketch::{QuantileSketch, SKETCH_RELATIVE_ACCURACY};
pub use snapshot::{RoutingSnapshot, Target, Telemetry};
pub use telemetry::{HealthState, StrategyEffectiveness, TargetTelemetry, confidence};

/// Name of the strategy used when neither the request nor the snapshot names one.
pub const DEFAULT_STRATEGY: &str = "balanced";

/// Workspace of requests that name none; it needs no registry entry.
pub const DEFAULT_WORKSPACE: &str = "default";

/// Requested model that matches every target.
pub const AUTO_MODEL: &str = "auto";

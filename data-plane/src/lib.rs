//! The Switchyard data plane: follows the control plane's snapshot stream,
//! scores candidates for each request, executes against providers with
//! streaming and fallback, serves OpenAI-compatible HTTP and the
//! `InferenceService` gRPC API, and reports an execution trace for every request.
//!
//! It owns everything fast and local. The only state it keeps is in its state
//! directory: the last good snapshot and the traces not yet acked, so it can
//! restart while every control plane is down. It must never depend on the
//! control plane or compile a database driver; the two planes meet only on
//! the wire.

mod admission;
mod backoff;
pub mod breaker;
mod budget;
pub mod config;
mod control_plane;
mod edge;
mod engine;
pub mod health;
pub mod limits;
mod metrics;
mod plan_wire;
pub mod providers;
mod reporter;
pub mod request;
pub mod scoring;
mod server;
mod shutdown;
pub mod snapshot;
pub mod spans;
mod spool;
mod state_dir;
mod subscriber;
pub mod tool_args;
pub mod workload;

pub use config::{DataPlaneArgs, DataPlaneConfig};
/// The OpenAI request parser and validator, for fuzzing.
pub use edge::openai;
pub use server::{RunningDataPlane, start};
pub use state_dir::StateDirError;

#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid control-plane URL {0:?}")]
    ControlPlaneUrl(String),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(reqwest::Error),
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(#[from] switchyard_proto::ReflectionError),
    #[error(transparent)]
    Limiter(#[from] limits::LimiterError),
    #[error("TLS setup failed: {0}")]
    Tls(tonic::transport::Error),
    #[error(transparent)]
    TlsFiles(switchyard_tls::TlsError),
}

//! The Switchyard control plane: the provider registry, the snapshot publisher
//! that streams versioned routing snapshots to data planes, and the trace store
//! that ingests, keeps and answers for every request's execution trace.
//!
//! It owns everything slow and global. It must never depend on the data plane
//! or compile provider adapters; the two planes meet only on the wire.

pub mod admin;
mod aggregation;
mod api;
mod bootstrap;
pub mod config;
mod election;
mod fleet;
pub mod health;
mod leadership;
mod metrics;
pub mod quality;
mod replay;
mod retention;
mod server;
mod snapshots;
pub mod store;
pub mod whatif;

pub use aggregation::AggregationConfig;
pub use api::access::generate_secret;
pub use config::{ControlPlaneArgs, ControlPlaneConfig, LogArgs};
pub use election::ElectionConfig;
pub use server::{RunningControlPlane, start};

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Snapshot(#[from] snapshots::SnapshotError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client for replays: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("leader election setup failed: {0}")]
    Election(#[from] election::ElectionError),
    #[error("TLS setup failed: {0}")]
    Tls(#[from] tonic::transport::Error),
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(#[from] switchyard_proto::ReflectionError),
}

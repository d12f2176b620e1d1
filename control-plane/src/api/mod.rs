//! gRPC services of the control plane. Wire types are validated into domain
//! types here; store errors become gRPC statuses here.

pub mod access;
pub mod cluster;
pub mod health;
mod references;
pub mod registry;
pub mod snapshot;
pub mod traces;

use tonic::Status;

use crate::snapshots::SnapshotError;
use crate::store::StoreError;

pub(crate) fn invalid(e: &switchyard_domain::ValidationError) -> Status {
    Status::invalid_argument(e.to_string())
}

pub(crate) fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound { .. } => Status::not_found(e.to_string()),
        StoreError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        StoreError::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
        StoreError::Database(_) | StoreError::Migration(_) | StoreError::UnsupportedUrl(_) => {
            tracing::warn!(error = %e, "database error");
            Status::unavailable("database unavailable; try again")
        }
        StoreError::Fenced { .. } => {
            Status::unavailable(format!("{e}; this replica no longer leads, try again"))
        }
        StoreError::Corrupt { .. } => {
            tracing::error!(error = %e, "corrupt row");
            Status::internal(e.to_string())
        }
    }
}

pub(crate) fn snapshot_status(e: SnapshotError) -> Status {
    match e {
        SnapshotError::Store(e) => store_status(e),
        SnapshotError::Invalid { .. } | SnapshotError::Deferred { invalid: true, .. } => {
            Status::failed_precondition(e.to_string())
        }
        SnapshotError::Deferred { invalid: false, .. }
        | SnapshotError::Stopped
        | SnapshotError::NotLeader => Status::unavailable(format!("{e}; try again")),
    }
}

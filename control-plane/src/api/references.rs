//! Cross-entity rules checked before a registry write, so a write that would
//! leave the registry unpublishable (a default strategy that no longer exists,
//! or one its workspace may not use) is refused instead of committed.

use switchyard_domain::{StrategySpec, WorkspaceSpec};
use tonic::Status;

use super::store_status;
use crate::store::{Store, StoreError};

fn in_use(what: String) -> Status {
    Status::failed_precondition(what)
}

/// A strategy may go only when nothing names it as its default.
pub async fn strategy_deletable(
    store: &Store,
    global_default: &str,
    name: &str,
) -> Result<(), Status> {
    if name == global_default {
        return Err(in_use(format!(
            "strategy {name:?} is the default strategy of this control plane"
        )));
    }
    let workspaces = store.list::<WorkspaceSpec>().await.map_err(store_status)?;
    if let Some(w) = workspaces.iter().find(|w| w.spec.default_strategy == name) {
        return Err(in_use(format!(
            "strategy {name:?} is the default strategy of workspace {:?}",
            w.spec.name
        )));
    }
    Ok(())
}

/// Scoping a strategy to one workspace must not take it from another that defaults to it.
pub async fn strategy_scope_allowed(store: &Store, spec: &StrategySpec) -> Result<(), Status> {
    if spec.workspace.is_empty() {
        return Ok(());
    }
    let workspaces = store.list::<WorkspaceSpec>().await.map_err(store_status)?;
    if let Some(w) = workspaces
        .iter()
        .find(|w| w.spec.default_strategy == spec.name && w.spec.name != spec.workspace)
    {
        return Err(in_use(format!(
            "strategy.workspace: workspace {:?} uses strategy {:?} as its default",
            w.spec.name, spec.name
        )));
    }
    Ok(())
}

/// A workspace's default strategy must exist and be usable by it.
pub async fn workspace_default_usable(store: &Store, spec: &WorkspaceSpec) -> Result<(), Status> {
    if spec.default_strategy.is_empty() {
        return Ok(());
    }
    let strategy = match store
        .get::<StrategySpec>(vec![spec.default_strategy.clone()])
        .await
    {
        Ok(s) => s.spec,
        Err(StoreError::NotFound { .. }) => {
            return Err(Status::failed_precondition(format!(
                "workspace.default_strategy: strategy {:?} does not exist",
                spec.default_strategy
            )));
        }
        Err(e) => return Err(store_status(e)),
    };
    if !strategy.workspace.is_empty() && strategy.workspace != spec.name {
        return Err(Status::failed_precondition(format!(
            "workspace.default_strategy: strategy {:?} belongs to workspace {:?}",
            strategy.name, strategy.workspace
        )));
    }
    Ok(())
}

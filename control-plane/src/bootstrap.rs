//! Start-up seeding: the built-in strategies, then the optional bootstrap file.
//! Idempotent: an entry that already matches is left alone (no new revision).

use switchyard_domain::{BootstrapConfig, builtin_strategies};

use crate::store::{Entity, Store, StoreError};

/// Creates the entry, or replaces it when it differs. Replicas starting
/// together race to create it: the loser updates instead.
async fn upsert<T: Entity + PartialEq + Clone>(store: &Store, spec: T) -> Result<(), StoreError> {
    match store.get::<T>(spec.key()).await {
        Ok(existing) if existing.spec == spec => Ok(()),
        Ok(_) => store.update(spec).await.map(|_| ()),
        Err(StoreError::NotFound { .. }) => match store.create(spec.clone()).await {
            Err(StoreError::AlreadyExists { .. }) => store.update(spec).await.map(|_| ()),
            other => other.map(|_| ()),
        },
        Err(e) => Err(e),
    }
}

/// Creates what is missing; never overwrites an operator's edit of a built-in.
async fn create_if_missing<T: Entity>(store: &Store, spec: T) -> Result<(), StoreError> {
    match store.create(spec).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn apply(store: &Store, config: Option<&BootstrapConfig>) -> Result<(), StoreError> {
    for strategy in builtin_strategies() {
        create_if_missing(store, strategy).await?;
    }
    let Some(config) = config else { return Ok(()) };
    for provider in &config.providers {
        upsert(store, provider.clone()).await?;
    }
    for model in &config.models {
        upsert(store, model.clone()).await?;
    }
    for strategy in &config.strategies {
        upsert(store, strategy.clone()).await?;
    }
    for workspace in &config.workspaces {
        upsert(store, workspace.clone()).await?;
    }
    tracing::info!(
        providers = config.providers.len(),
        models = config.models.len(),
        strategies = config.strategies.len(),
        workspaces = config.workspaces.len(),
        "applied bootstrap config"
    );
    Ok(())
}

//! Start-up seeding: the built-in strategies, then the optional bootstrap file.
//! Idempotent: an entry that already matches is left alone (no new revision).

use switchyard_domain::{
    BootstrapConfig, BootstrapKey, SecretRef, builtin_strategies, secret_prefix, secret_sha256,
    validate_secret,
};

use crate::store::{Entity, KeyRights, Store, StoreError};

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
    for key in &config.api_keys {
        register_key(store, key).await?;
    }
    tracing::info!(
        api_keys = config.api_keys.len(),
        providers = config.providers.len(),
        models = config.models.len(),
        strategies = config.strategies.len(),
        workspaces = config.workspaces.len(),
        "applied bootstrap config"
    );
    Ok(())
}

/// The secret of a bootstrap key, from the control plane's environment or a
/// mounted file.
fn read_secret(key: &BootstrapKey) -> Result<String, StoreError> {
    let missing = |why: String| {
        StoreError::FailedPrecondition(format!(
            "api key {:?} of workspace {:?}: {why}",
            key.name, key.workspace
        ))
    };
    let secret = match key.secret_ref().map_err(|e| missing(e.to_string()))? {
        SecretRef::Env(name) => std::env::var(&name)
            .map_err(|_| missing(format!("environment variable {name} is not set")))?,
        SecretRef::File(path) => std::fs::read_to_string(&path)
            .map_err(|e| missing(format!("cannot read {}: {e}", path.display())))?,
    };
    let secret = secret.trim().to_owned();
    validate_secret(&secret).map_err(|e| missing(e.to_string()))?;
    Ok(secret)
}

/// Registers a key the bootstrap file names, by workspace and name: a
/// working key of that name takes the file's secret and rights; a revoked
/// one is never brought back.
async fn register_key(store: &Store, key: &BootstrapKey) -> Result<(), StoreError> {
    let secret = read_secret(key)?;
    let sha = secret_sha256(&secret);
    let rights = KeyRights {
        allowed_models: key.allowed_models.clone(),
        limits: key.limits,
    };
    let named: Vec<_> = store
        .list_keys(Some(&key.workspace), true)
        .await?
        .into_iter()
        .filter(|k| k.name == key.name)
        .collect();
    if let Some(live) = named.iter().find(|k| k.revoked_at_ms.is_none()) {
        if live.secret_sha256 != sha || live.rights != rights {
            store
                .rotate_key(&live.id, sha, &secret_prefix(&secret), Some(&rights))
                .await?;
        }
        return Ok(());
    }
    if named.iter().any(|k| k.secret_sha256 == sha) {
        tracing::warn!(workspace = %key.workspace, name = %key.name, "bootstrap api key was revoked; not registering it again");
        return Ok(());
    }
    match crate::api::access::issue(
        store,
        key.workspace.clone(),
        key.name.clone(),
        rights,
        &secret,
    )
    .await
    {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

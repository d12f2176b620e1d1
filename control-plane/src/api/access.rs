//! AccessService: API keys, issued with a secret shown once and stored as
//! its hash. Every change is published at once, so data planes start or stop
//! accepting a key with the next snapshot.

use std::sync::Arc;

use rand::Rng;
use switchyard_domain::{
    DEFAULT_WORKSPACE, KEY_SECRET_PREFIX, RateLimits, ValidationError, WorkspaceSpec,
    secret_prefix, secret_sha256, timestamp_from_millis, validate_models, validate_name,
    validate_secret,
};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::access_service_server::AccessService;
use tonic::{Request, Response, Status};

use super::{invalid, snapshot_status, store_status};
use crate::snapshots::SnapshotPublisher;
use crate::store::{KeyRecord, KeyRights, NewKey, Store, StoreError};

/// Characters after the prefix: 43 base-62 characters carry 256 bits.
const SECRET_CHARS: usize = 43;

pub struct AccessApi {
    store: Store,
    publisher: Arc<SnapshotPublisher>,
}

impl AccessApi {
    pub fn new(store: Store, publisher: Arc<SnapshotPublisher>) -> Self {
        Self { store, publisher }
    }

    async fn publish(&self) -> Result<(), Status> {
        self.publisher
            .publish_soon()
            .await
            .map(|_| ())
            .map_err(snapshot_status)
    }
}

/// A new random secret.
pub fn generate_secret() -> String {
    let body: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(SECRET_CHARS)
        .map(char::from)
        .collect();
    format!("{KEY_SECRET_PREFIX}{body}")
}

fn new_key_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("key_{}", id.get(..16).unwrap_or(&id))
}

fn key_out(k: KeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id,
        workspace: k.workspace,
        name: k.name,
        prefix: k.prefix,
        allowed_models: k.rights.allowed_models,
        limits: Some(k.rights.limits.into()),
        created_at: Some(timestamp_from_millis(k.created_at_ms)),
        rotated_at: k.rotated_at_ms.map(timestamp_from_millis),
        revoked_at: k.revoked_at_ms.map(timestamp_from_millis),
    }
}

fn workspace_name(name: &str) -> Result<(), Status> {
    if name.is_empty() {
        return Err(invalid(&ValidationError::new("workspace", "required")));
    }
    WorkspaceSpec::unrestricted(name)
        .validate()
        .map_err(|e| invalid(&e.within("workspace")))
}

fn key_id(id: String) -> Result<String, Status> {
    if id.is_empty() {
        return Err(invalid(&ValidationError::new("id", "required")));
    }
    Ok(id)
}

/// Registers `secret` (already checked) as a new key of a workspace that
/// exists (requests for an unregistered one would all be refused).
pub async fn issue(
    store: &Store,
    workspace: String,
    name: String,
    rights: KeyRights,
    secret: &str,
) -> Result<KeyRecord, StoreError> {
    if workspace != DEFAULT_WORKSPACE {
        match store.get::<WorkspaceSpec>(vec![workspace.clone()]).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                return Err(StoreError::FailedPrecondition(format!(
                    "workspace {workspace:?} does not exist: register it first (RegistryService.CreateWorkspace)"
                )));
            }
            Err(e) => return Err(e),
        }
    }
    let key = NewKey {
        id: new_key_id(),
        workspace,
        name,
        prefix: secret_prefix(secret),
        rights,
        secret_sha256: secret_sha256(secret),
    };
    store.create_key(&key).await.map(|(record, _)| record)
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn create_api_key(
        &self,
        req: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::IssuedApiKey>, Status> {
        let req = req.into_inner();
        workspace_name(&req.workspace)?;
        validate_name(&req.name).map_err(|e| invalid(&e))?;
        validate_models(&req.allowed_models).map_err(|e| invalid(&e))?;
        let secret = if req.secret.is_empty() {
            generate_secret()
        } else {
            validate_secret(&req.secret).map_err(|e| invalid(&e))?;
            req.secret
        };
        let rights = KeyRights {
            allowed_models: req.allowed_models,
            limits: req.limits.map(RateLimits::from).unwrap_or_default(),
        };
        let record = issue(&self.store, req.workspace, req.name, rights, &secret)
            .await
            .map_err(store_status)?;
        tracing::info!(key = %record.id, workspace = %record.workspace, "api key created");
        self.publish().await?;
        Ok(Response::new(pb::IssuedApiKey {
            key: Some(key_out(record)),
            secret,
        }))
    }

    async fn list_api_keys(
        &self,
        req: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let req = req.into_inner();
        if !req.workspace.is_empty() {
            workspace_name(&req.workspace)?;
        }
        let keys = self
            .store
            .list_keys(Some(&req.workspace), req.include_revoked)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListApiKeysResponse {
            keys: keys.into_iter().map(key_out).collect(),
        }))
    }

    async fn rotate_api_key(
        &self,
        req: Request<pb::RotateApiKeyRequest>,
    ) -> Result<Response<pb::IssuedApiKey>, Status> {
        let id = key_id(req.into_inner().id)?;
        let secret = generate_secret();
        let (record, _) = self
            .store
            .rotate_key(&id, secret_sha256(&secret), &secret_prefix(&secret), None)
            .await
            .map_err(store_status)?;
        tracing::info!(key = %record.id, "api key rotated");
        self.publish().await?;
        Ok(Response::new(pb::IssuedApiKey {
            key: Some(key_out(record)),
            secret,
        }))
    }

    async fn revoke_api_key(
        &self,
        req: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::ApiKey>, Status> {
        let id = key_id(req.into_inner().id)?;
        let (record, _) = self.store.revoke_key(&id).await.map_err(store_status)?;
        tracing::info!(key = %record.id, "api key revoked");
        self.publish().await?;
        Ok(Response::new(key_out(record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_recognisable() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_SECRET_PREFIX));
        assert_eq!(a.len(), KEY_SECRET_PREFIX.len() + SECRET_CHARS);
        assert!(validate_secret(&a).is_ok());
        assert!(new_key_id().starts_with("key_"));
        assert_eq!(new_key_id().len(), 20);
    }
}

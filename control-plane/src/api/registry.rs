//! `RegistryService`: CRUD for providers, models and strategies. Every write
//! publishes a new snapshot before it returns.

use std::sync::Arc;

use switchyard_domain::{
    ModelSpec, ProviderSpec, StrategySpec, ValidationError, WorkspaceSpec, timestamp_from_millis,
};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::registry_service_server::RegistryService;
use tonic::{Request, Response, Status};

use super::{invalid, references, snapshot_status, store_status};
use crate::snapshots::SnapshotPublisher;
use crate::store::{Store, Stored};

pub struct RegistryApi {
    store: Store,
    publisher: Arc<SnapshotPublisher>,
    /// The control plane's default strategy, which cannot be deleted.
    default_strategy: String,
}

impl RegistryApi {
    pub fn new(store: Store, publisher: Arc<SnapshotPublisher>, default_strategy: String) -> Self {
        Self {
            store,
            publisher,
            default_strategy,
        }
    }

    async fn publish(&self) -> Result<(), Status> {
        self.publisher
            .publish_soon()
            .await
            .map(|_| ())
            .map_err(snapshot_status)
    }
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, Status> {
    value.ok_or_else(|| invalid(&ValidationError::new(field, "required")))
}

fn key_part(value: String, field: &str) -> Result<String, Status> {
    if value.is_empty() {
        Err(invalid(&ValidationError::new(field, "required")))
    } else {
        Ok(value)
    }
}

fn provider_out(s: Stored<ProviderSpec>) -> pb::Provider {
    pb::Provider {
        created_at: Some(timestamp_from_millis(s.created_at_ms)),
        updated_at: Some(timestamp_from_millis(s.updated_at_ms)),
        ..pb::Provider::from(&s.spec)
    }
}

fn model_out(s: Stored<ModelSpec>) -> pb::Model {
    pb::Model {
        created_at: Some(timestamp_from_millis(s.created_at_ms)),
        updated_at: Some(timestamp_from_millis(s.updated_at_ms)),
        ..pb::Model::from(&s.spec)
    }
}

fn strategy_out(s: Stored<StrategySpec>) -> pb::Strategy {
    pb::Strategy {
        created_at: Some(timestamp_from_millis(s.created_at_ms)),
        updated_at: Some(timestamp_from_millis(s.updated_at_ms)),
        ..pb::Strategy::from(&s.spec)
    }
}

fn provider_in(p: Option<pb::Provider>) -> Result<ProviderSpec, Status> {
    ProviderSpec::try_from(required(p, "provider")?).map_err(|e| invalid(&e.within("provider")))
}

fn model_in(m: Option<pb::Model>) -> Result<ModelSpec, Status> {
    ModelSpec::try_from(required(m, "model")?).map_err(|e| invalid(&e.within("model")))
}

fn workspace_in(w: Option<pb::Workspace>) -> Result<WorkspaceSpec, Status> {
    WorkspaceSpec::try_from(required(w, "workspace")?).map_err(|e| invalid(&e.within("workspace")))
}

fn workspace_out(s: Stored<WorkspaceSpec>) -> pb::Workspace {
    pb::Workspace {
        created_at: Some(timestamp_from_millis(s.created_at_ms)),
        updated_at: Some(timestamp_from_millis(s.updated_at_ms)),
        ..pb::Workspace::from(&s.spec)
    }
}

fn strategy_in(s: Option<pb::Strategy>) -> Result<StrategySpec, Status> {
    StrategySpec::try_from(required(s, "strategy")?).map_err(|e| invalid(&e.within("strategy")))
}

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn create_provider(
        &self,
        req: Request<pb::CreateProviderRequest>,
    ) -> Result<Response<pb::Provider>, Status> {
        let spec = provider_in(req.into_inner().provider)?;
        let (stored, _) = self.store.create(spec).await.map_err(store_status)?;
        self.publish().await?;
        Ok(Response::new(provider_out(stored)))
    }

    async fn get_provider(
        &self,
        req: Request<pb::GetProviderRequest>,
    ) -> Result<Response<pb::Provider>, Status> {
        let name = key_part(req.into_inner().name, "name")?;
        let stored = self
            .store
            .get::<ProviderSpec>(vec![name])
            .await
            .map_err(store_status)?;
        Ok(Response::new(provider_out(stored)))
    }

    async fn update_provider(
        &self,
        req: Request<pb::UpdateProviderRequest>,
    ) -> Result<Response<pb::Provider>, Status> {
        let spec = provider_in(req.into_inner().provider)?;
        let (stored, _) = self.store.update(spec).await.map_err(store_status)?;
        self.publish().await?;
        Ok(Response::new(provider_out(stored)))
    }

    async fn delete_provider(
        &self,
        req: Request<pb::DeleteProviderRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let name = key_part(req.into_inner().name, "name")?;
        let revision = self
            .store
            .delete::<ProviderSpec>(vec![name])
            .await
            .map_err(store_status)?;
        self.publish().await?;
        Ok(Response::new(pb::DeleteResponse { revision }))
    }

    async fn list_providers(
        &self,
        _req: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let all = self
            .store
            .list::<ProviderSpec>()
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListProvidersResponse {
            providers: all.into_iter().map(provider_out).collect(),
        }))
    }

    async fn create_model(
        &self,
        req: Request<pb::CreateModelRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        let spec = model_in(req.into_inner().model)?;
        let (stored, _) = self.store.create(spec).await.map_err(store_status)?;
        self.publish().await?;
        Ok(Response::new(model_out(stored)))
    }

    async fn get_model(
        &self,
        req: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        let req = req.into_inner();
        let key = vec![
            key_part(req.provider, "provider")?,
            key_part(req.name, "name")?,
        ];
        let stored = self
            .store
            .get::<ModelSpec>(key)
            .await
            .map_err(store_status)?;
        Ok(Response::new(model_out(stored)))
    }

    async fn update_model(
        &self,
        req: Request<pb::UpdateModelRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        let spec = model_in(req.into_inner().model)?;
        let (stored, _) = self.store.update(spec).await.map_err(store_status)?;
        self.publish().await?;
        Ok(Response::new(model_out(stored)))
    }

    async fn delete_model(
        &self,
        req: Request<pb::DeleteModelRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let req = req.into_inner();
        let key = vec![
            key_part(req.provider, "provider")?,
            key_part(req.name, "name")?,
        ];
        let revision = self
            .store
            .delete::<ModelSpec>(key)
            .await
            .map_err(store_status)?;
        self.publish().await?;
        Ok(Response::new(pb::DeleteResponse { revision }))
    }

    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let provider = req.into_inner().provider;
        let all = self.store.list::<ModelSpec>().await.map_err(store_status)?;
        Ok(Response::new(pb::ListModelsResponse {
            models: all
                .into_iter()
                .filter(|m| provider.is_empty() || m.spec.provider == provider)
                .map(model_out)
                .collect(),
        }))
    }

    async fn create_strategy(
        &self,
        req: Request<pb::CreateStrategyRequest>,
    ) -> Result<Response<pb::Strategy>, Status> {
        let spec = strategy_in(req.into_inner().strategy)?;
        references::strategy_scope_allowed(&self.store, &spec).await?;
        let (stored, _) = self.store.create(spec).await.map_err(store_status)?;
        self.publish().await?;
        Ok(Response::new(strategy_out(stored)))
    }

    async fn get_strategy(
        &self,
        req: Request<pb::GetStrategyRequest>,
    ) -> Result<Response<pb::Strategy>, Status> {
        let name = key_part(req.into_inner().name, "name")?;
        let stored = self
            .store
            .get::<StrategySpec>(vec![name])
            .await
            .map_err(store_status)?;
        Ok(Response::new(strategy_out(stored)))
    }

    async fn update_strategy(
        &self,
        req: Request<pb::UpdateStrategyRequest>,
    ) -> Result<Response<pb::Strategy>, Status> {
        let spec = strategy_in(req.into_inner().strategy)?;
        references::strategy_scope_allowed(&self.store, &spec).await?;
        let (stored, _) = self.store.update(spec).await.map_err(store_status)?;
        self.publish().await?;
        Ok(Response::new(strategy_out(stored)))
    }

    async fn delete_strategy(
        &self,
        req: Request<pb::DeleteStrategyRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let name = key_part(req.into_inner().name, "name")?;
        references::strategy_deletable(&self.store, &self.default_strategy, &name).await?;
        let revision = self
            .store
            .delete::<StrategySpec>(vec![name])
            .await
            .map_err(store_status)?;
        self.publish().await?;
        Ok(Response::new(pb::DeleteResponse { revision }))
    }

    async fn list_strategies(
        &self,
        _req: Request<pb::ListStrategiesRequest>,
    ) -> Result<Response<pb::ListStrategiesResponse>, Status> {
        let all = self
            .store
            .list::<StrategySpec>()
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListStrategiesResponse {
            strategies: all.into_iter().map(strategy_out).collect(),
        }))
    }

    async fn create_workspace(
        &self,
        req: Request<pb::CreateWorkspaceRequest>,
    ) -> Result<Response<pb::Workspace>, Status> {
        let spec = workspace_in(req.into_inner().workspace)?;
        references::workspace_default_usable(&self.store, &spec).await?;
        let (stored, _) = self.store.create(spec).await.map_err(store_status)?;
        self.publish().await?;
        Ok(Response::new(workspace_out(stored)))
    }

    async fn get_workspace(
        &self,
        req: Request<pb::GetWorkspaceRequest>,
    ) -> Result<Response<pb::Workspace>, Status> {
        let name = key_part(req.into_inner().name, "name")?;
        let stored = self
            .store
            .get::<WorkspaceSpec>(vec![name])
            .await
            .map_err(store_status)?;
        Ok(Response::new(workspace_out(stored)))
    }

    async fn update_workspace(
        &self,
        req: Request<pb::UpdateWorkspaceRequest>,
    ) -> Result<Response<pb::Workspace>, Status> {
        let spec = workspace_in(req.into_inner().workspace)?;
        references::workspace_default_usable(&self.store, &spec).await?;
        let (stored, _) = self.store.update(spec).await.map_err(store_status)?;
        self.publish().await?;
        Ok(Response::new(workspace_out(stored)))
    }

    async fn delete_workspace(
        &self,
        req: Request<pb::DeleteWorkspaceRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let name = key_part(req.into_inner().name, "name")?;
        let revision = self
            .store
            .delete::<WorkspaceSpec>(vec![name])
            .await
            .map_err(store_status)?;
        self.publish().await?;
        Ok(Response::new(pb::DeleteResponse { revision }))
    }

    async fn list_workspaces(
        &self,
        _req: Request<pb::ListWorkspacesRequest>,
    ) -> Result<Response<pb::ListWorkspacesResponse>, Status> {
        let all = self
            .store
            .list::<WorkspaceSpec>()
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListWorkspacesResponse {
            workspaces: all.into_iter().map(workspace_out).collect(),
        }))
    }
}

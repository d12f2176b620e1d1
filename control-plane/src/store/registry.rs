//! Registry persistence. Each entity is a validated JSON document keyed by its
//! identity; every write bumps the registry revision in the same transaction.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{Any, Row, Transaction};
use switchyard_domain::{ModelSpec, ProviderSpec, StrategySpec, WorkspaceSpec};

use super::{Store, StoreError, now_ms};

/// The registry revision: bumped by every write, never reused.
pub type Revision = u64;

/// An entity as stored, with its timestamps and the revision of the last write.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    pub spec: T,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What the generic CRUD needs to know about one registry table.
/// Binds are ordered: spec, now, then the key columns.
pub trait Entity: Serialize + DeserializeOwned + Send + Sync {
    const NAME: &'static str;
    const INSERT: &'static str;
    const UPDATE: &'static str;
    const DELETE: &'static str;
    const SELECT_ONE: &'static str;
    const SELECT_ALL: &'static str;
    /// Counts the rows that reference an entity and block its deletion.
    const COUNT_DEPENDENTS: Option<&'static str> = None;
    /// What those rows are and what to do about them, after their count.
    const DEPENDENTS: &'static str = "model(s); delete them first";
    fn key(&self) -> Vec<String>;
    /// The provider this entity belongs to, which must exist.
    fn provider_reference(&self) -> Option<&str> {
        None
    }
}

impl Entity for ProviderSpec {
    const NAME: &'static str = "provider";
    const INSERT: &'static str = "INSERT INTO providers (spec, created_at_ms, updated_at_ms, name) \
         VALUES ($1, $2, $2, $3) ON CONFLICT DO NOTHING";
    const UPDATE: &'static str =
        "UPDATE providers SET spec = $1, updated_at_ms = $2 WHERE name = $3";
    const DELETE: &'static str = "DELETE FROM providers WHERE name = $1";
    const SELECT_ONE: &'static str =
        "SELECT spec, created_at_ms, updated_at_ms FROM providers WHERE name = $1";
    const SELECT_ALL: &'static str =
        "SELECT spec, created_at_ms, updated_at_ms FROM providers ORDER BY name";
    const COUNT_DEPENDENTS: Option<&'static str> =
        Some("SELECT COUNT(*) FROM models WHERE provider = $1");
    fn key(&self) -> Vec<String> {
        vec![self.name.clone()]
    }
}

impl Entity for ModelSpec {
    const NAME: &'static str = "model";
    const INSERT: &'static str = "INSERT INTO models (spec, created_at_ms, updated_at_ms, provider, name) \
         VALUES ($1, $2, $2, $3, $4) ON CONFLICT DO NOTHING";
    const UPDATE: &'static str =
        "UPDATE models SET spec = $1, updated_at_ms = $2 WHERE provider = $3 AND name = $4";
    const DELETE: &'static str = "DELETE FROM models WHERE provider = $1 AND name = $2";
    const SELECT_ONE: &'static str =
        "SELECT spec, created_at_ms, updated_at_ms FROM models WHERE provider = $1 AND name = $2";
    const SELECT_ALL: &'static str =
        "SELECT spec, created_at_ms, updated_at_ms FROM models ORDER BY provider, name";
    fn key(&self) -> Vec<String> {
        vec![self.provider.clone(), self.name.clone()]
    }
    fn provider_reference(&self) -> Option<&str> {
        Some(&self.provider)
    }
}

impl Entity for StrategySpec {
    const NAME: &'static str = "strategy";
    const INSERT: &'static str = "INSERT INTO strategies (spec, created_at_ms, updated_at_ms, name) \
         VALUES ($1, $2, $2, $3) ON CONFLICT DO NOTHING";
    const UPDATE: &'static str =
        "UPDATE strategies SET spec = $1, updated_at_ms = $2 WHERE name = $3";
    const DELETE: &'static str = "DELETE FROM strategies WHERE name = $1";
    const SELECT_ONE: &'static str =
        "SELECT spec, created_at_ms, updated_at_ms FROM strategies WHERE name = $1";
    const SELECT_ALL: &'static str =
        "SELECT spec, created_at_ms, updated_at_ms FROM strategies ORDER BY name";
    fn key(&self) -> Vec<String> {
        vec![self.name.clone()]
    }
}

impl Entity for WorkspaceSpec {
    const NAME: &'static str = "workspace";
    const INSERT: &'static str = "INSERT INTO workspaces (spec, created_at_ms, updated_at_ms, name) \
         VALUES ($1, $2, $2, $3) ON CONFLICT DO NOTHING";
    const UPDATE: &'static str =
        "UPDATE workspaces SET spec = $1, updated_at_ms = $2 WHERE name = $3";
    const DELETE: &'static str = "DELETE FROM workspaces WHERE name = $1";
    const SELECT_ONE: &'static str =
        "SELECT spec, created_at_ms, updated_at_ms FROM workspaces WHERE name = $1";
    const SELECT_ALL: &'static str =
        "SELECT spec, created_at_ms, updated_at_ms FROM workspaces ORDER BY name";
    // Its keys would stop working without anyone having revoked them.
    const COUNT_DEPENDENTS: Option<&'static str> =
        Some("SELECT COUNT(*) FROM api_keys WHERE workspace = $1 AND revoked_at_ms IS NULL");
    const DEPENDENTS: &'static str =
        "active API key(s); revoke them first (`switchyard keys revoke`)";
    fn key(&self) -> Vec<String> {
        vec![self.name.clone()]
    }
}

fn display_key(key: &[String]) -> String {
    key.join("/")
}

fn decode<T: Entity>(row: &sqlx::any::AnyRow, key: &[String]) -> Result<Stored<T>, StoreError> {
    let spec: String = row.try_get("spec")?;
    let spec = serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt {
        entity: T::NAME,
        key: display_key(key),
        reason: e.to_string(),
    })?;
    Ok(Stored {
        spec,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn encode<T: Entity>(spec: &T) -> Result<String, StoreError> {
    serde_json::to_string(spec).map_err(|e| StoreError::Corrupt {
        entity: T::NAME,
        key: display_key(&spec.key()),
        reason: e.to_string(),
    })
}

pub(super) async fn bump_revision(
    tx: &mut Transaction<'static, Any>,
) -> Result<Revision, StoreError> {
    let revision: i64 = sqlx::query_scalar(
        "UPDATE registry_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision",
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(u64::try_from(revision).unwrap_or_default())
}

async fn provider_exists(
    tx: &mut Transaction<'static, Any>,
    name: &str,
) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM providers WHERE name = $1")
        .bind(name.to_owned())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

impl Store {
    pub async fn revision(&self) -> Result<Revision, StoreError> {
        let revision: i64 =
            sqlx::query_scalar("SELECT revision FROM registry_revision WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(u64::try_from(revision).unwrap_or_default())
    }

    pub async fn create<T: Entity>(&self, spec: T) -> Result<(Stored<T>, Revision), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        if let Some(provider) = spec.provider_reference()
            && !provider_exists(&mut tx, provider).await?
        {
            return Err(StoreError::FailedPrecondition(format!(
                "{}.provider: provider {provider:?} does not exist",
                T::NAME
            )));
        }
        let mut query = sqlx::query(T::INSERT).bind(encode(&spec)?).bind(now);
        for part in spec.key() {
            query = query.bind(part);
        }
        if query.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists {
                entity: T::NAME,
                key: display_key(&spec.key()),
            });
        }
        let revision = bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok((
            Stored {
                spec,
                created_at_ms: now,
                updated_at_ms: now,
            },
            revision,
        ))
    }

    pub async fn update<T: Entity>(&self, spec: T) -> Result<(Stored<T>, Revision), StoreError> {
        let now = now_ms();
        let key = spec.key();
        let mut tx = self.pool.begin().await?;
        let mut query = sqlx::query(T::UPDATE).bind(encode(&spec)?).bind(now);
        for part in &key {
            query = query.bind(part.clone());
        }
        if query.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                entity: T::NAME,
                key: display_key(&key),
            });
        }
        let revision = bump_revision(&mut tx).await?;
        let stored = fetch_one::<T>(&mut tx, &key).await?;
        tx.commit().await?;
        Ok((stored, revision))
    }

    pub async fn delete<T: Entity>(&self, key: Vec<String>) -> Result<Revision, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(count_dependents) = T::COUNT_DEPENDENTS {
            let dependents: i64 = sqlx::query_scalar(count_dependents)
                .bind(key.first().cloned().unwrap_or_default())
                .fetch_one(&mut *tx)
                .await?;
            if dependents > 0 {
                return Err(StoreError::FailedPrecondition(format!(
                    "{} {:?} is still referenced by {dependents} {}",
                    T::NAME,
                    display_key(&key),
                    T::DEPENDENTS
                )));
            }
        }
        let mut query = sqlx::query(T::DELETE);
        for part in &key {
            query = query.bind(part.clone());
        }
        if query.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                entity: T::NAME,
                key: display_key(&key),
            });
        }
        let revision = bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(revision)
    }

    pub async fn get<T: Entity>(&self, key: Vec<String>) -> Result<Stored<T>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let stored = fetch_one::<T>(&mut tx, &key).await?;
        tx.commit().await?;
        Ok(stored)
    }

    pub async fn list<T: Entity>(&self) -> Result<Vec<Stored<T>>, StoreError> {
        let rows = sqlx::query(T::SELECT_ALL).fetch_all(&self.pool).await?;
        rows.iter().map(|row| decode::<T>(row, &[])).collect()
    }

    /// The whole registry as of one revision. Reads the revision before and after
    /// the entities and retries when a write slipped in between, so the result is
    /// consistent on any isolation level.
    pub async fn registry_at_one_revision(&self) -> Result<RegistryState, StoreError> {
        loop {
            let revision = self.revision().await?;
            let state = RegistryState {
                revision,
                providers: specs(self.list::<ProviderSpec>().await?),
                models: specs(self.list::<ModelSpec>().await?),
                strategies: specs(self.list::<StrategySpec>().await?),
                workspaces: specs(self.list::<WorkspaceSpec>().await?),
                keys: self.key_grants().await?,
            };
            if self.revision().await? == revision {
                return Ok(state);
            }
        }
    }
}

/// The whole registry at one revision.
#[derive(Debug, Clone)]
pub struct RegistryState {
    pub revision: Revision,
    pub providers: Vec<ProviderSpec>,
    pub models: Vec<ModelSpec>,
    pub strategies: Vec<StrategySpec>,
    pub workspaces: Vec<WorkspaceSpec>,
    /// Working API keys.
    pub keys: Vec<switchyard_domain::KeyGrant>,
}

fn specs<T>(stored: Vec<Stored<T>>) -> Vec<T> {
    stored.into_iter().map(|s| s.spec).collect()
}

async fn fetch_one<T: Entity>(
    tx: &mut Transaction<'static, Any>,
    key: &[String],
) -> Result<Stored<T>, StoreError> {
    let mut query = sqlx::query(T::SELECT_ONE);
    for part in key {
        query = query.bind(part.clone());
    }
    let row = query
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            entity: T::NAME,
            key: display_key(key),
        })?;
    decode(&row, key)
}

//! API keys: issued, listed, rotated and revoked; the working ones become the
//! snapshot's key grants. Each write bumps the registry revision in its
//! transaction, like any registry write, so the leader publishes it.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use switchyard_domain::{KeyGrant, RateLimits};

use super::registry::bump_revision;
use super::{Revision, Store, StoreError, now_ms};

/// What a key may do, kept as JSON beside its identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRights {
    #[serde(default)]
    pub allowed_models: Vec<String>,
    #[serde(default)]
    pub limits: RateLimits,
}

/// A key as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub workspace: String,
    pub name: String,
    pub prefix: String,
    pub rights: KeyRights,
    pub secret_sha256: [u8; 32],
    pub created_at_ms: i64,
    pub rotated_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// A key to store: its secret already hashed.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub workspace: String,
    pub name: String,
    pub prefix: String,
    pub rights: KeyRights,
    pub secret_sha256: [u8; 32],
}

const COLUMNS: &str =
    "id, workspace, name, prefix, spec, secret_sha256, created_at_ms, rotated_at_ms, revoked_at_ms";

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0_u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn decode(row: &sqlx::any::AnyRow) -> Result<KeyRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        entity: "api key",
        key: id.clone(),
        reason,
    };
    let spec: String = row.try_get("spec")?;
    let rights = serde_json::from_str(&spec).map_err(|e| corrupt(e.to_string()))?;
    let sha: String = row.try_get("secret_sha256")?;
    let secret_sha256 =
        unhex(&sha).ok_or_else(|| corrupt("secret_sha256 is not 64 hex digits".into()))?;
    Ok(KeyRecord {
        workspace: row.try_get("workspace")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        rights,
        secret_sha256,
        created_at_ms: row.try_get("created_at_ms")?,
        rotated_at_ms: row.try_get("rotated_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
        id,
    })
}

fn encode(rights: &KeyRights) -> Result<String, StoreError> {
    serde_json::to_string(rights).map_err(|e| StoreError::Corrupt {
        entity: "api key",
        key: String::new(),
        reason: e.to_string(),
    })
}

impl Store {
    /// Stores a new key. A secret already in use (by any key, even a revoked
    /// one) is refused, so one secret never names two keys.
    pub async fn create_key(&self, key: &NewKey) -> Result<(KeyRecord, Revision), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let taken: Option<String> =
            sqlx::query_scalar("SELECT id FROM api_keys WHERE secret_sha256 = $1")
                .bind(hex(&key.secret_sha256))
                .fetch_optional(&mut *tx)
                .await?;
        if taken.is_some() {
            return Err(StoreError::AlreadyExists {
                entity: "api key with this secret",
                key: key.prefix.clone(),
            });
        }
        sqlx::query(
            "INSERT INTO api_keys (id, workspace, name, prefix, spec, secret_sha256, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.id.clone())
        .bind(key.workspace.clone())
        .bind(key.name.clone())
        .bind(key.prefix.clone())
        .bind(encode(&key.rights)?)
        .bind(hex(&key.secret_sha256))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let revision = bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok((
            KeyRecord {
                id: key.id.clone(),
                workspace: key.workspace.clone(),
                name: key.name.clone(),
                prefix: key.prefix.clone(),
                rights: key.rights.clone(),
                secret_sha256: key.secret_sha256,
                created_at_ms: now,
                rotated_at_ms: None,
                revoked_at_ms: None,
            },
            revision,
        ))
    }

    /// Newest first; one workspace's or everyone's.
    pub async fn list_keys(
        &self,
        workspace: Option<&str>,
        include_revoked: bool,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE ($1 = '' OR workspace = $1) \
             AND ($2 = 1 OR revoked_at_ms IS NULL) ORDER BY created_at_ms DESC, id DESC"
        )))
        .bind(workspace.unwrap_or_default().to_owned())
        .bind(i64::from(include_revoked))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    pub async fn get_key(&self, id: &str) -> Result<KeyRecord, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE id = $1"
        )))
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            entity: "api key",
            key: id.to_owned(),
        })?;
        decode(&row)
    }

    /// Gives a working key a new secret (and, when given, new rights); the
    /// old secret stops working with the next snapshot.
    pub async fn rotate_key(
        &self,
        id: &str,
        secret_sha256: [u8; 32],
        prefix: &str,
        rights: Option<&KeyRights>,
    ) -> Result<(KeyRecord, Revision), StoreError> {
        let now = now_ms();
        let current = self.get_key(id).await?;
        if current.revoked_at_ms.is_some() {
            return Err(StoreError::FailedPrecondition(format!(
                "api key {id:?} is revoked; create a new one"
            )));
        }
        let rights = rights.unwrap_or(&current.rights);
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE api_keys SET secret_sha256 = $1, prefix = $2, spec = $3, rotated_at_ms = $4 \
             WHERE id = $5 AND revoked_at_ms IS NULL",
        )
        .bind(hex(&secret_sha256))
        .bind(prefix.to_owned())
        .bind(encode(rights)?)
        .bind(now)
        .bind(id.to_owned())
        .execute(&mut *tx)
        .await;
        match done {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) => {
                return Err(StoreError::FailedPrecondition(format!(
                    "api key {id:?} was revoked meanwhile"
                )));
            }
            // The unique index: the new secret is some other key's.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::AlreadyExists {
                    entity: "api key with this secret",
                    key: prefix.to_owned(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        let revision = bump_revision(&mut tx).await?;
        tx.commit().await?;
        let record = KeyRecord {
            prefix: prefix.to_owned(),
            rights: rights.clone(),
            secret_sha256,
            rotated_at_ms: Some(now),
            ..current
        };
        Ok((record, revision))
    }

    /// Revokes a key; revoking it again changes nothing.
    pub async fn revoke_key(&self, id: &str) -> Result<(KeyRecord, Revision), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now)
        .bind(id.to_owned())
        .execute(&mut *tx)
        .await?;
        let revision = if done.rows_affected() == 1 {
            let revision = bump_revision(&mut tx).await?;
            tx.commit().await?;
            revision
        } else {
            tx.rollback().await?;
            self.revision().await?
        };
        Ok((self.get_key(id).await?, revision))
    }

    /// Every working key, as data planes check them.
    pub async fn key_grants(&self) -> Result<Vec<KeyGrant>, StoreError> {
        Ok(self
            .list_keys(None, false)
            .await?
            .into_iter()
            .map(|k| KeyGrant {
                id: k.id,
                secret_sha256: k.secret_sha256,
                workspace: k.workspace,
                allowed_models: k.rights.allowed_models,
                limits: k.rights.limits,
                any_workspace: false,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_through_hex() {
        let sha = switchyard_domain::secret_sha256("secret");
        assert_eq!(unhex(&hex(&sha)), Some(sha));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }
}

-- API keys. The secret is never stored: only its SHA-256 (hex), which is
-- what data planes receive. Revoked keys stay, for the record. Every key
-- write bumps registry_revision in its transaction, so data planes hear of a
-- new, rotated or revoked key with the next snapshot.
CREATE TABLE api_keys (
    id            TEXT   PRIMARY KEY,
    workspace     TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    secret_sha256 TEXT   NOT NULL UNIQUE,
    prefix        TEXT   NOT NULL,
    -- Allowed models and limits (JSON).
    spec          TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    rotated_at_ms BIGINT,
    revoked_at_ms BIGINT
);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace, created_at_ms DESC);

-- Registry: each entity's definition is a validated JSON document (`spec`), keyed
-- by its identity. Every write bumps registry_revision in the same transaction;
-- the revision is the snapshot version data planes see.
CREATE TABLE registry_revision (
    id       SMALLINT PRIMARY KEY CHECK (id = 1),
    revision BIGINT   NOT NULL
);
INSERT INTO registry_revision (id, revision) VALUES (1, 0);

CREATE TABLE providers (
    name          TEXT   PRIMARY KEY,
    spec          TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE models (
    provider      TEXT   NOT NULL REFERENCES providers (name),
    name          TEXT   NOT NULL,
    spec          TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (provider, name)
);

CREATE TABLE strategies (
    name          TEXT   PRIMARY KEY,
    spec          TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Execution traces: filterable columns beside the whole trace (protobuf `body`).
CREATE TABLE traces (
    trace_id         TEXT             PRIMARY KEY,
    request_id       TEXT             NOT NULL,
    workspace        TEXT             NOT NULL,
    requested_model  TEXT             NOT NULL,
    strategy         TEXT             NOT NULL,
    final_target     TEXT             NOT NULL,
    final_provider   TEXT             NOT NULL,
    final_model      TEXT             NOT NULL,
    outcome          BIGINT           NOT NULL,
    error_class      BIGINT           NOT NULL,
    attempt_count    BIGINT           NOT NULL,
    latency_ms       BIGINT           NOT NULL,
    ttft_ms          BIGINT           NOT NULL,
    tokens_in        BIGINT           NOT NULL,
    tokens_out       BIGINT           NOT NULL,
    cost_usd         DOUBLE PRECISION NOT NULL,
    received_at_ms   BIGINT           NOT NULL,
    snapshot_version BIGINT           NOT NULL,
    node_id          TEXT             NOT NULL,
    stored_at_ms     BIGINT           NOT NULL,
    body             BYTEA            NOT NULL
);

CREATE INDEX traces_by_time ON traces (received_at_ms DESC, trace_id DESC);
CREATE INDEX traces_by_provider ON traces (final_provider, received_at_ms DESC);
CREATE INDEX traces_by_model ON traces (final_model, received_at_ms DESC);
CREATE INDEX traces_by_workspace ON traces (workspace, received_at_ms DESC);

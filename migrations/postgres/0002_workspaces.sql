-- Workspace routing policies (allowed regions, preferred and avoided
-- providers, default strategy), stored like the other registry entities.
CREATE TABLE workspaces (
    name          TEXT   PRIMARY KEY,
    spec          TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

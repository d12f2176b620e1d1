-- One row per attempt, so the quality engine can ask what each target did
-- recently without decoding whole traces. Keyed by (trace_id, position): a
-- resent batch inserts nothing twice.
CREATE TABLE trace_attempts (
    trace_id       TEXT   NOT NULL,
    position       BIGINT NOT NULL,
    target_id      TEXT   NOT NULL,
    strategy       TEXT   NOT NULL,
    success        BIGINT NOT NULL,
    error_class    BIGINT NOT NULL,
    duration_ms    BIGINT NOT NULL,
    ttft_ms        BIGINT NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (trace_id, position)
);
CREATE INDEX trace_attempts_by_time ON trace_attempts (started_at_ms);

-- Snapshot versions: bumped by registry changes and by new telemetry alike, so
-- they only ever grow. Starts at the registry revision reached so far.
CREATE TABLE snapshot_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO snapshot_version (id, version) SELECT 1, revision FROM registry_revision WHERE id = 1;

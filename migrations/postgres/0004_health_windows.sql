-- Health windows: what each data plane saw of each target over a few seconds,
-- pre-aggregated (counts and quantile sketches, encoded as the wire message).
-- Any control-plane replica stores them with the trace batch that carried them;
-- the aggregator reads the newest and rebuilds its sliding windows from them
-- after a restart. Keyed by node, target and start: a resent batch is harmless.
CREATE TABLE health_windows (
    node_id        TEXT   NOT NULL,
    target_id      TEXT   NOT NULL,
    start_ms       BIGINT NOT NULL,
    end_ms         BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    body           BYTEA  NOT NULL,
    PRIMARY KEY (node_id, target_id, start_ms)
);
CREATE INDEX health_windows_by_arrival ON health_windows (received_at_ms);

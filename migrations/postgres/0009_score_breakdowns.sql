-- Every scored candidate of a trace, one row each: the score breakdown that
-- GetTrace shows inside the trace body, here for SQL (how often a target
-- ranked first, which dimension held it back). Scores are normalised to [0, 1].
CREATE TABLE trace_candidates (
    trace_id           TEXT             NOT NULL,
    position           BIGINT           NOT NULL,
    target_id          TEXT             NOT NULL,
    rank               BIGINT           NOT NULL,
    chain_position     BIGINT           NOT NULL,
    score              DOUBLE PRECISION NOT NULL,
    quality            DOUBLE PRECISION NOT NULL,
    speed              DOUBLE PRECISION NOT NULL,
    cost               DOUBLE PRECISION NOT NULL,
    health             DOUBLE PRECISION NOT NULL,
    workspace_fit      DOUBLE PRECISION NOT NULL,
    estimated_cost_usd DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (trace_id, position)
);

-- ListTraces's model filter also matches the model a client asked for, and a
-- rarely asked-for model must not cost a scan of every trace.
CREATE INDEX traces_by_requested_model ON traces (requested_model, received_at_ms DESC);

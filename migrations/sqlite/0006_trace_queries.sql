-- ListTraces filters by outcome and error class, newest first; strategy,
-- workspace, provider and model have theirs (or are served by the time
-- index). Retention deletes the oldest traces through traces_by_time.
CREATE INDEX traces_by_outcome ON traces (outcome, received_at_ms DESC);
CREATE INDEX traces_by_error_class ON traces (error_class, received_at_ms DESC);

-- A replayed request's trace names the trace it replays. Replays are few:
-- a partial index serves "replays" and "replays of X" (queries repeat the
-- index's predicate so the planner can use it); originals use the others.
ALTER TABLE traces ADD COLUMN replay_of TEXT NOT NULL DEFAULT '';
CREATE INDEX traces_replays ON traces (replay_of, received_at_ms DESC) WHERE replay_of <> '';

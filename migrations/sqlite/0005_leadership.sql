-- Fencing: the newest leader's epoch (its etcd election revision). A replica
-- that wins an election raises it; every leader-only write checks, inside its
-- own transaction, that the writer's epoch is still the one stored here, so a
-- deposed leader (frozen, partitioned, slow to notice) can write nothing.
CREATE TABLE leader_fence (
    id            SMALLINT PRIMARY KEY CHECK (id = 1),
    epoch         BIGINT   NOT NULL,
    leader        TEXT     NOT NULL,
    claimed_at_ms BIGINT   NOT NULL
);
INSERT INTO leader_fence (id, epoch, leader, claimed_at_ms) VALUES (1, 0, '', 0);

-- The newest published snapshots, as sent on the wire. The leader writes each
-- one under its fence; followers read them back and relay them to the data
-- planes connected to them.
CREATE TABLE published_snapshots (
    version         BIGINT PRIMARY KEY,
    epoch           BIGINT NOT NULL,
    published_at_ms BIGINT NOT NULL,
    body            BLOB  NOT NULL
);

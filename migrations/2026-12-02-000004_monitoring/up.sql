-- Workers announce themselves and heartbeat here, so the `workers` query is one indexed read.
CREATE TABLE worker_heartbeats (
    name              text PRIMARY KEY,
    version           text NOT NULL,
    started_at        timestamptz NOT NULL,
    last_heartbeat_at timestamptz NOT NULL,
    busy_slots        integer NOT NULL CHECK (busy_slots >= 0),
    total_slots       integer NOT NULL CHECK (total_slots >= 0)
);

-- `runStats(windowSeconds)` reads the runs created in a recent window through this index
-- instead of scanning every run.
CREATE INDEX runs_created_at ON runs (created_at);

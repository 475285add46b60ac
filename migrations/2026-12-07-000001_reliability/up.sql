-- Reliability: per-workflow run limits, runs waiting their turn, and dead-lettered runs.

-- At most this many runs of the workflow execute at once; NULL: no limit.
ALTER TABLE workflows ADD COLUMN max_concurrent_runs integer
    CHECK (max_concurrent_runs IS NULL OR max_concurrent_runs > 0);
-- At most `rate_limit_runs` runs start per `rate_limit_seconds`; both NULL or both set.
ALTER TABLE workflows ADD COLUMN rate_limit_runs integer
    CHECK (rate_limit_runs IS NULL OR rate_limit_runs > 0);
ALTER TABLE workflows ADD COLUMN rate_limit_seconds integer
    CHECK (rate_limit_seconds IS NULL OR rate_limit_seconds > 0);
ALTER TABLE workflows ADD CONSTRAINT workflows_rate_limit_pair
    CHECK ((rate_limit_runs IS NULL) = (rate_limit_seconds IS NULL));

-- A queued run held back by its workflow's limits is not re-delivered before this time (a run
-- that finishes wakes the next waiting ones earlier).
ALTER TABLE runs ADD COLUMN not_before timestamptz;
-- Set when a run was given up after its job kept failing to start (poison payload); the run is
-- then FAILED with the reason in `error`.
ALTER TABLE runs ADD COLUMN dead_lettered_at timestamptz;

-- Counting a workflow's executing and waiting runs (limits) without scanning its history.
CREATE INDEX runs_workflow_unfinished ON runs (workflow_id, created_at)
    WHERE status IN ('queued', 'running');
CREATE INDEX runs_dead_lettered ON runs (dead_lettered_at) WHERE dead_lettered_at IS NOT NULL;

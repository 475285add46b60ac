DROP INDEX IF EXISTS runs_dead_lettered;
DROP INDEX IF EXISTS runs_workflow_unfinished;
ALTER TABLE runs DROP COLUMN dead_lettered_at;
ALTER TABLE runs DROP COLUMN not_before;
ALTER TABLE workflows DROP CONSTRAINT workflows_rate_limit_pair;
ALTER TABLE workflows DROP COLUMN rate_limit_seconds;
ALTER TABLE workflows DROP COLUMN rate_limit_runs;
ALTER TABLE workflows DROP COLUMN max_concurrent_runs;

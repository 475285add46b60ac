DROP INDEX IF EXISTS job_outbox_run;
ALTER TABLE tasks DROP COLUMN IF EXISTS progress_at;
ALTER TABLE tasks DROP COLUMN IF EXISTS progress_percent;
ALTER TABLE runs DROP COLUMN IF EXISTS cancel_requested_at;
ALTER TABLE run_events DROP COLUMN IF EXISTS step_percent;
ALTER TABLE run_events DROP COLUMN IF EXISTS workflow_id;

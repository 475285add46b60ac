-- Back to text columns with CHECK constraints.
ALTER TABLE run_events ALTER COLUMN status TYPE TEXT USING status::text;
ALTER TABLE run_events ALTER COLUMN kind TYPE TEXT USING kind::text;

ALTER TABLE tasks ALTER COLUMN status TYPE TEXT USING status::text;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('pending','running','succeeded','failed','cached','skipped','cancelled'));

DROP INDEX runs_unfinished;
ALTER TABLE runs ALTER COLUMN status TYPE TEXT USING status::text;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('queued','running','succeeded','failed','cancelled','timed_out'));
CREATE INDEX runs_unfinished ON runs (lease_expires_at) WHERE status IN ('queued','running');

DROP TYPE event_status;
DROP TYPE event_kind;
DROP TYPE task_status;
DROP TYPE run_status;

-- Run, task and event states as Postgres enum types: the database refuses any value the code
-- does not know, and the code refuses (rather than guesses) any value it reads that it does not.
CREATE TYPE run_status AS ENUM ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out');
CREATE TYPE task_status AS ENUM ('pending', 'running', 'succeeded', 'failed', 'cached', 'skipped', 'cancelled');
CREATE TYPE event_kind AS ENUM ('run', 'task', 'progress', 'snapshot');
-- An event's status is its run's status (run events) or its step's status (task events).
CREATE TYPE event_status AS ENUM ('queued', 'pending', 'running', 'succeeded', 'failed', 'cached', 'skipped', 'cancelled', 'timed_out');

ALTER TABLE runs DROP CONSTRAINT runs_status_check;
DROP INDEX runs_unfinished;
ALTER TABLE runs ALTER COLUMN status TYPE run_status USING status::run_status;
CREATE INDEX runs_unfinished ON runs (lease_expires_at) WHERE status IN ('queued', 'running');

ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ALTER COLUMN status TYPE task_status USING status::task_status;

ALTER TABLE run_events ALTER COLUMN kind TYPE event_kind USING kind::event_kind;
ALTER TABLE run_events ALTER COLUMN status TYPE event_status USING status::event_status;

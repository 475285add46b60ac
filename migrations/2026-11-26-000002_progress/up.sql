-- Progress tracking: events carry their run's workflow (for per-workflow streams) and the
-- step's own reported percent; runs record cancellation requests.
ALTER TABLE run_events ADD COLUMN workflow_id UUID;
UPDATE run_events e SET workflow_id = r.workflow_id FROM runs r WHERE r.id = e.run_id;
ALTER TABLE run_events ALTER COLUMN workflow_id SET NOT NULL;
ALTER TABLE run_events ADD COLUMN step_percent DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN cancel_requested_at TIMESTAMPTZ;
-- A running step's latest self-reported progress (for the ETA without scanning events).
ALTER TABLE tasks ADD COLUMN progress_percent DOUBLE PRECISION;
ALTER TABLE tasks ADD COLUMN progress_at TIMESTAMPTZ;
-- The reconciler looks up a run's outbox rows.
CREATE INDEX job_outbox_run ON job_outbox (run_id, sent_at);

-- Cron schedules on workflows, how each run was started, and the scheduler's leader lease.

-- How a run was started. Existing runs were started by hand, except those `retryRun` created
-- (the audit log names them: `run.retry` on a run other than the one retried).
CREATE TYPE run_trigger AS ENUM ('manual', 'schedule', 'retry');
ALTER TABLE runs
    ADD COLUMN trigger run_trigger NOT NULL DEFAULT 'manual',
    -- The tick a scheduled run belongs to; unique per workflow, so no tick is ever fired twice,
    -- whichever scheduler instance tries (NULLs, i.e. unscheduled runs, never collide).
    ADD COLUMN scheduled_for TIMESTAMPTZ NULL,
    ADD CONSTRAINT runs_workflow_scheduled_for_key UNIQUE (workflow_id, scheduled_for),
    ADD CONSTRAINT runs_scheduled_for_iff_schedule
        CHECK ((scheduled_for IS NOT NULL) = (trigger = 'schedule'));
UPDATE runs SET trigger = 'retry'
WHERE id IN (
    SELECT substring(resource FROM 5)::uuid FROM audit_log
    WHERE action = 'run.retry' AND resource LIKE 'run:%'
      AND detail ? 'retryOf' AND resource <> 'run:' || (detail->>'retryOf')
);

-- A workflow's schedule: the cron expression as given, its IANA time zone, whether it fires,
-- and the instant up to which its ticks are handled (fired, or deliberately passed over when it
-- was enabled or changed).
ALTER TABLE workflows
    ADD COLUMN schedule_cron TEXT NULL,
    ADD COLUMN schedule_timezone TEXT NULL,
    ADD COLUMN schedule_enabled BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN schedule_fired_through TIMESTAMPTZ NULL,
    ADD CONSTRAINT workflows_schedule_complete CHECK (
        (schedule_cron IS NULL) = (schedule_timezone IS NULL)
        AND (schedule_cron IS NULL) = (schedule_fired_through IS NULL)
        AND (schedule_cron IS NOT NULL OR NOT schedule_enabled)
    );
CREATE INDEX workflows_schedules_due ON workflows (schedule_fired_through)
    WHERE schedule_enabled AND archived_at IS NULL;

-- The one scheduler lease. `epoch` grows on every change of holder: a fire commits only while
-- the epoch its scheduler acquired is still the current one (fencing a stalled former leader).
CREATE TABLE scheduler_lease (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
INSERT INTO scheduler_lease (id, holder, epoch, expires_at) VALUES (1, '', 0, 'epoch');

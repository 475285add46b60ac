DROP TABLE scheduler_lease;

DROP INDEX workflows_schedules_due;
ALTER TABLE workflows
    DROP CONSTRAINT workflows_schedule_complete,
    DROP COLUMN schedule_fired_through,
    DROP COLUMN schedule_enabled,
    DROP COLUMN schedule_timezone,
    DROP COLUMN schedule_cron;

ALTER TABLE runs
    DROP CONSTRAINT runs_scheduled_for_iff_schedule,
    DROP CONSTRAINT runs_workflow_scheduled_for_key,
    DROP COLUMN scheduled_for,
    DROP COLUMN trigger;
DROP TYPE run_trigger;

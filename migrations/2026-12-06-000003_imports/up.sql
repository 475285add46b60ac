-- Imports from legacy schedulers: batches, what each batch did to which workflow (enough to
-- roll it back exactly), and the legacy identity of imported workflows.

CREATE TYPE import_format AS ENUM ('json', 'crontab');
CREATE TYPE import_batch_status AS ENUM ('applied', 'rolled_back');
CREATE TYPE import_action AS ENUM ('created', 'updated');

CREATE TABLE import_batches (
    id UUID PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_id UUID NULL REFERENCES users (id),
    format import_format NOT NULL,
    -- SHA-256 of the source as submitted.
    checksum TEXT NOT NULL,
    tag TEXT NULL,
    task_count INTEGER NOT NULL,
    workflow_count INTEGER NOT NULL,
    created_count INTEGER NOT NULL,
    updated_count INTEGER NOT NULL,
    unchanged_count INTEGER NOT NULL,
    status import_batch_status NOT NULL DEFAULT 'applied',
    -- Problems of records left out with skipInvalid, and their legacy ids.
    problems JSONB NOT NULL DEFAULT '[]',
    skipped TEXT[] NOT NULL DEFAULT '{}',
    rolled_back_at TIMESTAMPTZ NULL
);
CREATE INDEX import_batches_created ON import_batches (created_at DESC, id DESC);

-- An imported workflow remembers its legacy id (the group's root task), the checksum of the
-- group as last imported, the legacy id of each step's task, and the tasks' tags.
ALTER TABLE workflows
    ADD COLUMN legacy_id TEXT NULL,
    ADD COLUMN import_checksum TEXT NULL,
    ADD COLUMN import_meta JSONB NULL,
    ADD CONSTRAINT workflows_legacy_id_key UNIQUE (legacy_id);

-- What one batch did to one workflow. `previous` holds the workflow row as it was before an
-- update (to restore it exactly on rollback); no foreign key to workflows, because a rollback
-- deletes the workflows its batch created and this row stays as history.
CREATE TABLE import_batch_workflows (
    batch_id UUID NOT NULL REFERENCES import_batches (id),
    workflow_id UUID NOT NULL,
    legacy_id TEXT NOT NULL,
    action import_action NOT NULL,
    version INTEGER NOT NULL,
    previous JSONB NULL,
    tags TEXT[] NOT NULL DEFAULT '{}',
    has_schedule BOOLEAN NOT NULL,
    -- Set when a phase of this batch enabled the workflow's schedule.
    enabled_at TIMESTAMPTZ NULL,
    PRIMARY KEY (batch_id, workflow_id)
);
CREATE INDEX import_batch_workflows_workflow ON import_batch_workflows (workflow_id);

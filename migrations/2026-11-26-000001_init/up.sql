-- Core tables of TMS: identities, workflows, runs, tasks, run events and the job outbox.

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL,
    display_name  TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));

CREATE TABLE user_roles (
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('admin','maintainer','operator','viewer','auditor','monitor')),
    granted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    granted_by UUID REFERENCES users(id),
    PRIMARY KEY (user_id, role)
);

CREATE TABLE workflows (
    id              UUID PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    description     TEXT NOT NULL DEFAULT '',
    current_version INTEGER NOT NULL,
    archived_at     TIMESTAMPTZ,
    created_by      UUID REFERENCES users(id),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE workflow_versions (
    workflow_id UUID NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL CHECK (version > 0),
    spec        JSONB NOT NULL,
    created_by  UUID REFERENCES users(id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, version)
);

CREATE TABLE runs (
    id               UUID PRIMARY KEY,
    workflow_id      UUID NOT NULL REFERENCES workflows(id),
    version          INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued','running','succeeded','failed','cancelled','timed_out')),
    inputs           JSONB NOT NULL DEFAULT '{}'::jsonb,
    idempotency_key  TEXT,
    no_cache         BOOLEAN NOT NULL DEFAULT FALSE,
    triggered_by     UUID REFERENCES users(id),
    error            TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    deliveries       INTEGER NOT NULL DEFAULT 0,
    last_seq         BIGINT NOT NULL DEFAULT 0,
    FOREIGN KEY (workflow_id, version) REFERENCES workflow_versions(workflow_id, version)
);
CREATE UNIQUE INDEX runs_idempotency ON runs (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_workflow_id ON runs (workflow_id, id DESC);
CREATE INDEX runs_status_id ON runs (status, id DESC);
CREATE INDEX runs_unfinished ON runs (lease_expires_at) WHERE status IN ('queued','running');

CREATE TABLE tasks (
    run_id      UUID NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    position    INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending','running','succeeded','failed','cached','skipped','cancelled')),
    attempt     INTEGER NOT NULL DEFAULT 0,
    depends_on  TEXT[] NOT NULL DEFAULT '{}',
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    exit_code   INTEGER,
    log_tail    TEXT NOT NULL DEFAULT '',
    error       TEXT,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE run_events (
    run_id      UUID NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT,
    step        TEXT,
    percent     DOUBLE PRECISION NOT NULL DEFAULT 0,
    eta_seconds DOUBLE PRECISION,
    message     TEXT,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);

-- Transactional outbox: a row is written with the run, relayed to the Redis queue, then marked sent.
CREATE TABLE job_outbox (
    id         BIGSERIAL PRIMARY KEY,
    run_id     UUID NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    payload    JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at    TIMESTAMPTZ,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX job_outbox_unsent ON job_outbox (id) WHERE sent_at IS NULL;

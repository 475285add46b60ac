-- Tamper-evident audit log: one row per security event, append-only in the database itself
-- and hash-chained (each row's hash covers its content and the previous row's hash).
CREATE TYPE audit_action AS ENUM (
    'auth.login', 'auth.refresh', 'auth.token_reuse', 'auth.logout',
    'role.assign', 'role.revoke', 'api_token.create', 'api_token.revoke',
    'access.denied',
    'workflow.create', 'workflow.update', 'workflow.archive',
    'run.trigger', 'run.cancel', 'run.retry',
    'import.apply', 'import.phase', 'import.rollback'
);
CREATE TYPE audit_outcome AS ENUM ('success', 'failure', 'denied');

-- `seq` is assigned by the appender under a lock (no sequence): a rolled-back append leaves
-- no gap, and the chain order is the seq order.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    actor_id UUID NULL,
    api_token_id UUID NULL,
    actor_email TEXT NULL,
    action audit_action NOT NULL,
    resource TEXT NOT NULL,
    outcome audit_outcome NOT NULL,
    ip TEXT NULL,
    user_agent TEXT NULL,
    detail JSONB NOT NULL DEFAULT '{}',
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_actor ON audit_log (actor_id, seq);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END;
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

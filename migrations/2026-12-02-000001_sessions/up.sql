-- Sessions: rotating refresh tokens grouped in families, and login throttling state shared by
-- every api instance.

-- Postgres 12+ accepts this inside the migration's transaction (the value is not used here).
ALTER TYPE audit_action ADD VALUE IF NOT EXISTS 'user.disable';

-- One family per sign-in: every refresh token rotated from it belongs to it, and revoking the
-- family (logout, re-use of a rotated token, user disabled) ends all of them at once.
CREATE TABLE refresh_families (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The absolute lifetime: no rotation extends a session past this.
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ NULL,
    revoked_reason TEXT NULL
);
CREATE INDEX refresh_families_live_by_user ON refresh_families (user_id) WHERE revoked_at IS NULL;

-- Only the SHA-256 of a token is stored. A token is live while its family is, it has not been
-- rotated, and neither its idle nor its family's absolute expiry has passed.
CREATE TABLE refresh_tokens (
    id UUID PRIMARY KEY,
    family_id UUID NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    idle_expires_at TIMESTAMPTZ NOT NULL,
    rotated_at TIMESTAMPTZ NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Failed-login counters, one row per account (`account:<lowercased email>`) and per client
-- address (`ip:<address>`).
CREATE TABLE login_throttle (
    key TEXT PRIMARY KEY,
    failures INT NOT NULL,
    window_started_at TIMESTAMPTZ NOT NULL,
    locked_until TIMESTAMPTZ NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- API tokens for service accounts: one role each, expiring, revocable. Only the SHA-256 of the
-- secret is stored; the secret itself is shown once, at creation.
CREATE TABLE api_tokens (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role         TEXT NOT NULL CHECK (role IN ('admin','maintainer','operator','viewer','auditor','monitor')),
    token_hash   TEXT NOT NULL UNIQUE,
    -- The admin who created it: requests made with the token are audited as this user.
    created_by   UUID NOT NULL REFERENCES users(id),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_tokens_created_at ON api_tokens (created_at);

-- Single sign-on: identities keyed on (issuer, subject), pending logins, one-time hand-off codes,
-- and which role rows group mapping granted.

ALTER TABLE users
    ADD COLUMN oidc_issuer  TEXT,
    ADD COLUMN oidc_subject TEXT,
    ADD CONSTRAINT users_oidc_pair CHECK ((oidc_issuer IS NULL) = (oidc_subject IS NULL));
CREATE UNIQUE INDEX users_oidc_identity ON users (oidc_issuer, oidc_subject)
    WHERE oidc_subject IS NOT NULL;

-- A login started by GET /auth/login, finished (once) by GET /auth/callback on any api instance.
-- Only hashes: of the `state` sent to the provider and of the secret held in the browser's cookie
-- (the PKCE verifier and the nonce are derived from that secret, so they are not stored at all).
CREATE TABLE sso_logins (
    state_hash   TEXT PRIMARY KEY,
    binding_hash TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    consumed_at  TIMESTAMPTZ
);
CREATE INDEX sso_logins_expires ON sso_logins (expires_at);

-- One-time code a browser carries to TMS_OIDC_POST_LOGIN_URL and exchanges once for tokens.
CREATE TABLE sso_handoffs (
    code_hash   TEXT PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    consumed_at TIMESTAMPTZ
);
CREATE INDEX sso_handoffs_expires ON sso_handoffs (expires_at);

-- Role rows that exist because of an IdP group: only these are removed when the group goes.
-- A manual revoke deletes the user_roles row and with it this marker.
CREATE TABLE sso_role_grants (
    user_id    UUID NOT NULL,
    role       TEXT NOT NULL,
    group_name TEXT NOT NULL,
    granted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role),
    FOREIGN KEY (user_id, role) REFERENCES user_roles(user_id, role) ON DELETE CASCADE
);

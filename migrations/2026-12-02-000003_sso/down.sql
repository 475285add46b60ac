DROP TABLE sso_role_grants;
DROP TABLE sso_handoffs;
DROP TABLE sso_logins;
DROP INDEX users_oidc_identity;
ALTER TABLE users
    DROP CONSTRAINT users_oidc_pair,
    DROP COLUMN oidc_subject,
    DROP COLUMN oidc_issuer;

ALTER TABLE sso_handoffs DROP COLUMN code_challenge;
ALTER TABLE sso_logins
    DROP CONSTRAINT sso_logins_native_all_or_none,
    DROP COLUMN client_state,
    DROP COLUMN code_challenge,
    DROP COLUMN native_redirect_uri;

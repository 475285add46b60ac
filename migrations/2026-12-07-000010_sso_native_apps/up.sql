-- Native-app sign-in (RFC 8252): a login started with a loopback `redirect_uri` keeps it, the
-- client's PKCE S256 challenge and its `state`; the callback hands the one-time code to that
-- URI, and the code is redeemed only with the matching verifier. All NULL for browser logins.

ALTER TABLE sso_logins
    ADD COLUMN native_redirect_uri TEXT,
    ADD COLUMN code_challenge      TEXT,
    ADD COLUMN client_state        TEXT,
    ADD CONSTRAINT sso_logins_native_all_or_none CHECK (
        (native_redirect_uri IS NULL) = (code_challenge IS NULL)
        AND (native_redirect_uri IS NULL) = (client_state IS NULL));

-- The S256 challenge a hand-off code was issued for: its exchange must carry the verifier.
ALTER TABLE sso_handoffs ADD COLUMN code_challenge TEXT;

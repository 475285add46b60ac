DROP TABLE login_throttle;
DROP TABLE refresh_tokens;
DROP TABLE refresh_families;
-- Postgres cannot drop one value of an enum type; 'user.disable' stays, unused (the up
-- migration adds it only if missing).

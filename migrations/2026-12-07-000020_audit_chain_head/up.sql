-- The audit chain's head in one row: appending is one statement that bumps the head (its row
-- lock, held until commit, orders appenders as the advisory lock did) and inserts the new row
-- with the hash computed from the head it just read. The chain's hashes are unchanged; the
-- head starts at the last row already written (or the genesis hash).

CREATE TABLE audit_chain_head (
    only_row  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    seq       BIGINT  NOT NULL,
    hash      TEXT    NOT NULL,
    -- The hash the head had before its last bump: the `prev_hash` of the row just appended.
    prev_hash TEXT    NOT NULL
);

INSERT INTO audit_chain_head (seq, hash, prev_hash)
SELECT coalesce(last.seq, 0),
       coalesce(last.hash, repeat('0', 64)),
       coalesce(last.prev_hash, repeat('0', 64))
FROM (SELECT 1) AS one
LEFT JOIN (SELECT seq, hash, prev_hash FROM audit_log ORDER BY seq DESC LIMIT 1) AS last ON TRUE;

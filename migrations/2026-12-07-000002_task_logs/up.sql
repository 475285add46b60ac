-- Full step logs: each attempt's output as ordered chunks appended while the step runs
-- (Postgres compresses large values in place: TOAST).
CREATE TABLE task_logs (
    run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step text NOT NULL,
    attempt integer NOT NULL CHECK (attempt > 0),
    seq integer NOT NULL CHECK (seq >= 0),
    content text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, step, attempt, seq)
);

-- Durable step outputs (content-addressed artifacts) and the step cache.

-- A manifest lists the files of one step's `/out`: path, SHA-256, size and whether executable,
-- sorted by path. Its hash (SHA-256 of the canonical JSON) names it. The blobs live in the
-- artifact store under their SHA-256; the manifests live here so that what is still referenced
-- can be computed in SQL. `last_used_at` keeps a manifest alive for a grace period after it is
-- registered (before its task row or cache entry points at it) or restored.
CREATE TABLE artifact_manifests (
    hash TEXT PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
    files JSONB NOT NULL,
    file_count INTEGER NOT NULL CHECK (file_count >= 0),
    total_bytes BIGINT NOT NULL CHECK (total_bytes >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX artifact_manifests_last_used ON artifact_manifests (last_used_at);

-- What a finished task produced, and the cache key it was looked up under (with the hashes of
-- the key's parts, so `explainCache` can say which part changed).
ALTER TABLE tasks
    ADD COLUMN output_manifest TEXT NULL REFERENCES artifact_manifests (hash),
    ADD COLUMN output_bytes BIGINT NULL CHECK (output_bytes >= 0),
    ADD COLUMN cache_key TEXT NULL,
    ADD COLUMN cache_parts JSONB NULL;
CREATE INDEX tasks_output_manifest ON tasks (output_manifest) WHERE output_manifest IS NOT NULL;

-- One reusable successful result per key. The key covers the workflow, the step's canonical
-- definition, the run's inputs and the dependencies' output manifests; never secrets.
CREATE TABLE cache_entries (
    key TEXT PRIMARY KEY CHECK (key ~ '^[0-9a-f]{64}$'),
    workflow_id UUID NOT NULL REFERENCES workflows (id),
    step TEXT NOT NULL,
    manifest TEXT NOT NULL REFERENCES artifact_manifests (hash),
    parts JSONB NOT NULL,
    source_run_id UUID NOT NULL REFERENCES runs (id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    hits BIGINT NOT NULL DEFAULT 0,
    last_hit_at TIMESTAMPTZ NULL
);
CREATE INDEX cache_entries_step ON cache_entries (workflow_id, step, created_at DESC);
CREATE INDEX cache_entries_manifest ON cache_entries (manifest);

-- The manifest of a step that wrote nothing: most steps. Always present, never swept.
INSERT INTO artifact_manifests (hash, files, file_count, total_bytes)
VALUES ('4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945', '[]', 0, 0);

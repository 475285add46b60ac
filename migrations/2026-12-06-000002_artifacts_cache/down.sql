DROP TABLE cache_entries;
ALTER TABLE tasks
    DROP COLUMN output_manifest,
    DROP COLUMN output_bytes,
    DROP COLUMN cache_key,
    DROP COLUMN cache_parts;
DROP TABLE artifact_manifests;

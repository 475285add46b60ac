DROP INDEX runs_created_at;
DROP TABLE worker_heartbeats;

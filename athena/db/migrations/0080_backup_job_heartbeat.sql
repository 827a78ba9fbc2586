-- Backup jobs: a heartbeat so that jobs of a gateway that died are marked failed (instead of
-- "running" forever), the stable error code of a failed job, and the expected size of a restore.
ALTER TABLE athena.backup_jobs
    ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz,
    ADD COLUMN IF NOT EXISTS error_code   text,
    ADD COLUMN IF NOT EXISTS total_bytes  bigint;

-- "Is a job running for this client?" is asked before every backup and restore.
CREATE INDEX IF NOT EXISTS backup_jobs_active_idx
    ON athena.backup_jobs (client_name) WHERE state IN ('queued', 'running');

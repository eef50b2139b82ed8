-- Migration 5: which sync job is uploading a row while it is `in_progress`,
-- so an upload whose job died (a SIGKILLed daemon) is found and queued
-- again. No foreign key: a job row may be pruned while its claim is stale.
ALTER TABLE sync_status ADD COLUMN job_id INTEGER;

-- Migration 6: retention's age preselection. A policy with `older_than_ms`
-- is shown only the ready files whose indexing, modification and last
-- access are all older than a cutoff; this index answers that with a range
-- scan instead of reading every file.
CREATE INDEX files_age ON files (max(created_ms, mtime_ms, coalesce(last_access_ms, 0))) WHERE state = 'ready';

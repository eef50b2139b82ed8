-- Migration 7: the job that absorbed a queued one (a full cleanup absorbs a
-- queued gc), so whoever follows the absorbed job finds the run that covers
-- it without parsing its error. No foreign key: job rows are pruned.
ALTER TABLE jobs ADD COLUMN absorbed_by INTEGER;

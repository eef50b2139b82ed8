-- Migration 4: the media type an exporter gave its result, served as the
-- download's Content-Type (NULL for rows written before it existed).
ALTER TABLE exports ADD COLUMN media_type TEXT;

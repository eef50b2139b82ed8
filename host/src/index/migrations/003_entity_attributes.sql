-- Migration 3: entity attributes (`released = true`, `branch = main`), which
-- retention policies read to keep released datasets or count per branch.
CREATE TABLE entity_attributes (
    entity_id  INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    key        TEXT    NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    value      TEXT    NOT NULL CHECK (length(value) <= 4096),
    PRIMARY KEY (entity_id, key)
) WITHOUT ROWID;

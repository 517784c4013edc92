-- The versions of the content-hash form (src/domain/canonical.rs) that every stored event's
-- hash is in. A database with events hashed before v1 is re-hashed when the store opens
-- (src/store/rehash.rs), which then records v1; a database with no events is already there.
CREATE TABLE content_hash_versions (
    version         TEXT PRIMARY KEY,
    completed_at_us BIGINT NOT NULL
);
INSERT INTO content_hash_versions (version, completed_at_us)
SELECT 'v1', 0 WHERE NOT EXISTS (SELECT 1 FROM events);

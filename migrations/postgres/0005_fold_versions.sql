-- The versions of the fold (src/domain/fold.rs, `VERSION`) that every stored entry was
-- folded by. A database with days folded by an earlier fold re-folds every day when a
-- command that folds opens it (`Store::upgrade_fold`), then records the version; a
-- database with no events is already there.
CREATE TABLE fold_versions (
    version         TEXT PRIMARY KEY,
    completed_at_us BIGINT NOT NULL
);
INSERT INTO fold_versions (version, completed_at_us)
SELECT '3', 0 WHERE NOT EXISTS (SELECT 1 FROM events);

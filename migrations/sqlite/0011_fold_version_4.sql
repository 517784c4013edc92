-- Fold version 4 (src/domain/fold.rs): a workout two reporters sent counts once. A
-- database with no events is already there; one with events re-folds every day when a
-- command that folds opens it (`Store::upgrade_fold`), then records the version.
INSERT INTO fold_versions (version, completed_at)
SELECT '4', 0 WHERE NOT EXISTS (SELECT 1 FROM events);

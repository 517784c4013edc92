-- The source-priority rule (src/domain/priority.rs) every instance folds with: the newest
-- version is in force from the commit that stores it. No row: the built-in default,
-- version 0. `applied_at_us` is set once every stored day has been re-folded under the
-- version; a pass that was interrupted is finished by the next command that folds
-- (`Store::refold_if_stale`).
CREATE TABLE priority_rules (
    version       BIGINT PRIMARY KEY,
    rule          TEXT NOT NULL,
    set_at_us     BIGINT NOT NULL,
    set_by        TEXT NOT NULL,
    applied_at_us BIGINT
);

-- The rule version each entry was last folded under.
ALTER TABLE entries ADD COLUMN rule_version BIGINT NOT NULL DEFAULT 0;

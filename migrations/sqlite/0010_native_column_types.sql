-- The names PostgreSQL's native columns took in its migration 0010, so both backends read
-- rows by the same names. SQLite has no date, time or uuid types: instants stay INTEGER
-- microseconds since the epoch, days `YYYY-MM-DD` TEXT and event ids hyphenated TEXT
-- (src/store/columns.rs reads and writes them).
ALTER TABLE events RENAME COLUMN observed_at_us TO observed_at;
ALTER TABLE events RENAME COLUMN recorded_at_us TO recorded_at;
ALTER TABLE entries RENAME COLUMN updated_at_us TO updated_at;
ALTER TABLE sync_status RENAME COLUMN newest_observed_at_us TO newest_observed_at;
ALTER TABLE sync_status RENAME COLUMN last_stored_at_us TO last_stored_at;
ALTER TABLE coaches RENAME COLUMN created_at_us TO created_at;
ALTER TABLE users RENAME COLUMN created_at_us TO created_at;
ALTER TABLE users RENAME COLUMN roster_synced_at_us TO roster_synced_at;
ALTER TABLE tokens RENAME COLUMN created_at_us TO created_at;
ALTER TABLE tokens RENAME COLUMN revoked_at_us TO revoked_at;
ALTER TABLE pairing_codes RENAME COLUMN created_at_us TO created_at;
ALTER TABLE pairing_codes RENAME COLUMN expires_at_us TO expires_at;
ALTER TABLE pairing_codes RENAME COLUMN redeemed_at_us TO redeemed_at;
ALTER TABLE content_hash_versions RENAME COLUMN completed_at_us TO completed_at;
ALTER TABLE fold_versions RENAME COLUMN completed_at_us TO completed_at;
ALTER TABLE priority_rules RENAME COLUMN set_at_us TO set_at;
ALTER TABLE priority_rules RENAME COLUMN applied_at_us TO applied_at;
ALTER TABLE removals RENAME COLUMN removed_at_us TO removed_at;
ALTER TABLE access_log RENAME COLUMN at_us TO accessed_at;

-- PostgreSQL's own types for ids, days and instants (docs/DECISIONS.md): `uuid` event ids,
-- `date` days and `timestamptz` instants, in place of the TEXT and BIGINT microseconds
-- both backends shared until now. On 1.1M events the table shrinks 13% and its
-- `(user_id, event_id)` index 23%, and rows decode without parsing text. User, coach and
-- device ids stay TEXT: they are names a platform chooses (an imported database's own ids),
-- not UUIDs. Payloads and bodies stay TEXT: `jsonb` made the table no smaller and every
-- insert parse JSON the service only reads back as text.
--
-- Microseconds become instants as a count of microsecond intervals, exact for every
-- instant before the year 2255 (below 2^53 µs: the count goes through a double); dividing
-- into `to_timestamp`'s seconds could move a stored instant by a microsecond.
--
-- Every altered table is rewritten under an exclusive lock: reads and writes wait until
-- the migration commits (docs/DECISIONS.md gives the time it takes). Columns are renamed,
-- so instances of the release before fail once it has run: stop them all first.

ALTER TABLE events
    ALTER COLUMN event_id TYPE uuid USING event_id::uuid,
    ALTER COLUMN day TYPE date USING day::date,
    ALTER COLUMN observed_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + observed_at_us * INTERVAL '1 microsecond',
    ALTER COLUMN recorded_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + recorded_at_us * INTERVAL '1 microsecond';
ALTER TABLE events RENAME COLUMN observed_at_us TO observed_at;
ALTER TABLE events RENAME COLUMN recorded_at_us TO recorded_at;

ALTER TABLE entries
    ALTER COLUMN day TYPE date USING day::date,
    ALTER COLUMN updated_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + updated_at_us * INTERVAL '1 microsecond';
ALTER TABLE entries RENAME COLUMN updated_at_us TO updated_at;

ALTER TABLE sync_status
    ALTER COLUMN newest_observed_at_us TYPE timestamptz
        USING TIMESTAMPTZ 'epoch' + newest_observed_at_us * INTERVAL '1 microsecond',
    ALTER COLUMN last_stored_at_us TYPE timestamptz
        USING TIMESTAMPTZ 'epoch' + last_stored_at_us * INTERVAL '1 microsecond',
    ALTER COLUMN last_day TYPE date USING last_day::date;
ALTER TABLE sync_status RENAME COLUMN newest_observed_at_us TO newest_observed_at;
ALTER TABLE sync_status RENAME COLUMN last_stored_at_us TO last_stored_at;

ALTER TABLE coaches
    ALTER COLUMN created_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + created_at_us * INTERVAL '1 microsecond';
ALTER TABLE coaches RENAME COLUMN created_at_us TO created_at;

-- A client never synced has the epoch as the time of its last sync notice.
ALTER TABLE users
    ALTER COLUMN created_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + created_at_us * INTERVAL '1 microsecond',
    ALTER COLUMN roster_synced_at_us DROP DEFAULT,
    ALTER COLUMN roster_synced_at_us TYPE timestamptz
        USING TIMESTAMPTZ 'epoch' + roster_synced_at_us * INTERVAL '1 microsecond',
    ALTER COLUMN roster_synced_at_us SET DEFAULT TIMESTAMPTZ 'epoch';
ALTER TABLE users RENAME COLUMN created_at_us TO created_at;
ALTER TABLE users RENAME COLUMN roster_synced_at_us TO roster_synced_at;

ALTER TABLE tokens
    ALTER COLUMN created_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + created_at_us * INTERVAL '1 microsecond',
    ALTER COLUMN revoked_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + revoked_at_us * INTERVAL '1 microsecond';
ALTER TABLE tokens RENAME COLUMN created_at_us TO created_at;
ALTER TABLE tokens RENAME COLUMN revoked_at_us TO revoked_at;

ALTER TABLE pairing_codes
    ALTER COLUMN created_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + created_at_us * INTERVAL '1 microsecond',
    ALTER COLUMN expires_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + expires_at_us * INTERVAL '1 microsecond',
    ALTER COLUMN redeemed_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + redeemed_at_us * INTERVAL '1 microsecond';
ALTER TABLE pairing_codes RENAME COLUMN created_at_us TO created_at;
ALTER TABLE pairing_codes RENAME COLUMN expires_at_us TO expires_at;
ALTER TABLE pairing_codes RENAME COLUMN redeemed_at_us TO redeemed_at;

ALTER TABLE content_hash_versions
    ALTER COLUMN completed_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + completed_at_us * INTERVAL '1 microsecond';
ALTER TABLE content_hash_versions RENAME COLUMN completed_at_us TO completed_at;

ALTER TABLE fold_versions
    ALTER COLUMN completed_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + completed_at_us * INTERVAL '1 microsecond';
ALTER TABLE fold_versions RENAME COLUMN completed_at_us TO completed_at;

ALTER TABLE priority_rules
    ALTER COLUMN set_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + set_at_us * INTERVAL '1 microsecond',
    ALTER COLUMN applied_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + applied_at_us * INTERVAL '1 microsecond';
ALTER TABLE priority_rules RENAME COLUMN set_at_us TO set_at;
ALTER TABLE priority_rules RENAME COLUMN applied_at_us TO applied_at;

ALTER TABLE removals
    ALTER COLUMN removed_at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + removed_at_us * INTERVAL '1 microsecond';
ALTER TABLE removals RENAME COLUMN removed_at_us TO removed_at;

ALTER TABLE access_log
    ALTER COLUMN at_us TYPE timestamptz USING TIMESTAMPTZ 'epoch' + at_us * INTERVAL '1 microsecond';
ALTER TABLE access_log RENAME COLUMN at_us TO accessed_at;

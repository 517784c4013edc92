-- Erasure (docs/PRIVACY.md). A user's removal takes a feed position, so dashboards that
-- followed the user drop them, live or on resume; it names the user and their coach and
-- holds none of their data.
CREATE TABLE removals (
    position      BIGINT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    coach_id      TEXT NOT NULL,
    removed_at_us BIGINT NOT NULL,
    removed_by    TEXT NOT NULL
);
CREATE INDEX removals_by_user ON removals (user_id);
-- The position of the latest removal: the PostgreSQL relay reads it with the feed's head
-- and reads removals only when there is a new one.
ALTER TABLE feed_position ADD COLUMN removed_through BIGINT NOT NULL DEFAULT 0;

-- Events only of users who exist: an append authorized before its user was erased and
-- written after fails (nothing of it is stored) instead of leaving rows behind. Checked
-- once per statement over the rows it inserted, not per row.
CREATE FUNCTION events_of_existing_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted i WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = i.user_id)) THEN
        RAISE EXCEPTION 'user erased' USING ERRCODE = 'CF001';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_of_existing_users AFTER INSERT ON events
REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION events_of_existing_users();

-- The roster: a name a coach knows each client by, and what each device has sent.

ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE pairing_codes ADD COLUMN display_name TEXT;

-- Per user, author (`device:<id>`, `coach:<id>`, `admin`) and event kind: how many events
-- were stored, the newest observation among them, when the last one was stored and the
-- last day they fall on. Kept up to date by every append, in its own transaction, so that
-- a roster never reads a client's events.
CREATE TABLE sync_status (
    user_id              TEXT NOT NULL,
    actor                TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    events               BIGINT NOT NULL,
    newest_observed_at_us BIGINT NOT NULL,
    last_stored_at_us    BIGINT NOT NULL,
    last_day             TEXT,
    PRIMARY KEY (user_id, actor, kind)
);
INSERT INTO sync_status (user_id, actor, kind, events, newest_observed_at_us, last_stored_at_us, last_day)
SELECT user_id, actor, kind, COUNT(*), MAX(observed_at_us), MAX(recorded_at_us), MAX(day)
FROM events GROUP BY user_id, actor, kind;

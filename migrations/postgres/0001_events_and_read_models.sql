-- Coaches, their client users, and the tokens that act for them (SHA-256 hashes only).
CREATE TABLE coaches (
    coach_id    TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);

CREATE TABLE users (
    user_id     TEXT PRIMARY KEY,
    coach_id    TEXT NOT NULL REFERENCES coaches (coach_id),
    created_at_us BIGINT NOT NULL
);
CREATE INDEX users_by_coach ON users (coach_id);

CREATE TABLE tokens (
    token_hash  TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('device', 'coach')),
    -- the user (device tokens) or the coach (coach tokens)
    subject_id  TEXT NOT NULL,
    device_id   TEXT,
    device_name TEXT,
    created_at_us BIGINT NOT NULL,
    revoked_at_us BIGINT
);

-- The truth: one row per accepted report, never updated or deleted.
CREATE TABLE events (
    seq           BIGSERIAL NOT NULL,
    event_id      TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    -- local calendar day (YYYY-MM-DD); NULL only for the deletion of a workout never seen
    day           TEXT,
    kind          TEXT NOT NULL,
    source        TEXT NOT NULL,
    dedupe_key    TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    payload       TEXT NOT NULL,
    observed_at_us BIGINT NOT NULL,
    recorded_at_us BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    -- keyed by user first, so the table can be distributed by user_id (docs/SCALING.md)
    PRIMARY KEY (user_id, seq),
    UNIQUE (user_id, event_id)
);
CREATE INDEX events_by_day ON events (user_id, day, seq);
CREATE UNIQUE INDEX events_by_dedupe_key ON events (user_id, kind, dedupe_key, content_hash);

-- Read models: the fold of each user-day, with the feed position of its latest change.
CREATE TABLE entries (
    user_id       TEXT NOT NULL,
    day           TEXT NOT NULL,
    position      BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    body          TEXT NOT NULL,
    PRIMARY KEY (user_id, day)
);
CREATE INDEX entries_by_position ON entries (position);

-- The feed position counter, advanced inside each write transaction: its row lock orders
-- commits, so positions become visible in order (a plain sequence would not).
CREATE TABLE feed_position (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    position BIGINT NOT NULL
);
INSERT INTO feed_position (id, position) VALUES (1, 0);

-- Short codes a coach hands to a client to pair the app. Only the SHA-256 of the
-- normalized (upper-case) code is stored; a redeemed code is never accepted again.
CREATE TABLE pairing_codes (
    code_hash      TEXT PRIMARY KEY,
    coach_id       TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    created_at_us  BIGINT NOT NULL,
    expires_at_us  BIGINT NOT NULL,
    redeemed_at_us BIGINT
);
CREATE INDEX tokens_by_subject ON tokens (subject_id);

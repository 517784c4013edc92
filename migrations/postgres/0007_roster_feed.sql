-- Roster changes on the entry feed: each client's latest change (added, paired, renamed, a
-- device revoked, a sync) takes a feed position, from the same counter as entries, so a
-- stream resumes past both by one position. `roster_synced_at_us` is when a sync last
-- took one (a sync takes a new one at most once a minute).
ALTER TABLE users ADD COLUMN roster_position BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN roster_synced_at_us BIGINT NOT NULL DEFAULT 0;

-- Every client there is takes a position now, so a stream from position 0 lists them all.
UPDATE users SET roster_position = (SELECT position FROM feed_position) + numbered.n
FROM (SELECT user_id, ROW_NUMBER() OVER (ORDER BY user_id) AS n FROM users) AS numbered
WHERE numbered.user_id = users.user_id;
UPDATE feed_position SET position = position + (SELECT COUNT(*) FROM users);

CREATE INDEX users_by_roster_position ON users (roster_position);

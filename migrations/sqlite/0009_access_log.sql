-- The access log (docs/PRIVACY.md): a row for each read of a client's health data by
-- someone other than the client (a coach, an admin). Written in batches off the read path.
-- It is the client's: it goes with them when they are erased (store/erasure.rs); a batch
-- takes its users' write locks and keeps only users that exist, so none outlives them.
CREATE TABLE access_log (
    seq      INTEGER PRIMARY KEY,
    user_id  TEXT NOT NULL,
    -- who read: "coach:<coach id>" or "admin", as events name their authors
    accessor TEXT NOT NULL,
    rpc      TEXT NOT NULL,
    -- what the call named of the data (dates), '' when it read everything it could see
    detail   TEXT NOT NULL,
    -- the IP address the call came from, '' when unknown
    peer     TEXT NOT NULL,
    at_us    INTEGER NOT NULL
);
CREATE INDEX access_log_by_user ON access_log (user_id, seq);

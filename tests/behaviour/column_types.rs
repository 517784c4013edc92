//! Migration 0010 gives PostgreSQL's columns their own types (uuid, date, timestamptz) and
//! both backends' columns the same names: every instant, day and event id a database of the
//! release before holds reads back as it was written, to the microsecond.

use chrono::{DateTime, NaiveDate, Utc};
use coachfit::store::columns::{Day, EventId, Timestamp};
use coachfit::store::postgres::{PgSettings, PostgresStore};

use crate::common::*;
use crate::database::TestDatabase;
use crate::each_backend;

each_backend!(every_instant_day_and_event_id_reads_back_as_the_release_before_wrote_it);

/// One row in each table, as the release before stored it (migrations 0001–0009): instants
/// as microseconds since the epoch, none of them a whole second, one before 1970; and a
/// second row where a column may be NULL.
const BEFORE: &str = "
INSERT INTO coaches (coach_id, name, created_at_us) VALUES ('c1', 'Coach', 1772488800000001);
INSERT INTO users (user_id, coach_id, created_at_us, roster_synced_at_us) VALUES ('u1', 'c1', 1772488800000002, 1772488800000003);
INSERT INTO tokens (token_hash, role, subject_id, device_id, device_name, created_at_us, revoked_at_us)
    VALUES ('h1', 'device', 'u1', 'd1', 'iPhone', 1772488800000004, 1772488800999999),
           ('h2', 'device', 'u1', 'd2', 'iPad', 1772488800000004, NULL);
INSERT INTO events (seq, event_id, user_id, day, kind, source, dedupe_key, content_hash, payload, observed_at_us, recorded_at_us, actor)
    VALUES (1, '01a22a6a-8f25-72ad-8f99-a1c0c2ebfdc0', 'u1', '2026-03-02', 'steps', 'healthkit', 'k1', 'h1',
            '{\"kind\":\"steps\",\"total_steps\":8432,\"source_devices\":[]}', -1000001, 1796007956261595, 'device:d1'),
           (2, '01a22a6a-8f25-72ad-8f99-a1c1c1a8cef4', 'u1', NULL, 'workout_deleted', 'healthkit', 'w1', 'h2',
            '{\"kind\":\"workout_deleted\"}', -1000001, 1796007956261595, 'device:d1');
INSERT INTO entries (user_id, day, position, updated_at_us, body) VALUES ('u1', '2026-03-02', 1, 1796007956261596, '{}');
INSERT INTO pairing_codes (code_hash, coach_id, user_id, created_at_us, expires_at_us, redeemed_at_us)
    VALUES ('p1', 'c1', 'u1', 1772488800000005, 4102444800000006, 1772488800000007),
           ('p2', 'c1', 'u1', 1772488800000005, 4102444800000006, NULL);
INSERT INTO sync_status (user_id, actor, kind, events, newest_observed_at_us, last_stored_at_us, last_day)
    VALUES ('u1', 'device:d1', 'steps', 1, 1772488800000008, 1796007956261597, '2029-12-31'),
           ('u1', 'device:d1', 'workout_deleted', 1, 1772488800000008, 1796007956261597, NULL);
INSERT INTO priority_rules (version, rule, set_at_us, set_by, applied_at_us)
    VALUES (1, '{}', 1772488800000009, 'admin', 1772488800000010), (2, '{}', 1772488800000009, 'admin', NULL);
INSERT INTO removals (position, user_id, coach_id, removed_at_us, removed_by) VALUES (2, 'u2', 'c1', 1772488800000011, 'admin');
INSERT INTO access_log (user_id, accessor, rpc, detail, peer, at_us) VALUES ('u1', 'admin', 'GetEntry', '', '', 1772488800000012);
DELETE FROM content_hash_versions;
INSERT INTO content_hash_versions (version, completed_at_us) VALUES ('v1', 1772488800000013);
DELETE FROM fold_versions;
INSERT INTO fold_versions (version, completed_at_us) VALUES ('3', 1772488800000014);
";

/// Each instant column of `BEFORE` under its new name, and the microseconds written there.
const INSTANTS: [(&str, &str, &[Option<i64>]); 19] = [
    ("coaches", "created_at", &[Some(1_772_488_800_000_001)]),
    ("users", "created_at", &[Some(1_772_488_800_000_002)]),
    ("users", "roster_synced_at", &[Some(1_772_488_800_000_003)]),
    ("tokens", "created_at", &[Some(1_772_488_800_000_004), Some(1_772_488_800_000_004)]),
    ("tokens", "revoked_at", &[Some(1_772_488_800_999_999), None]),
    ("events", "observed_at", &[Some(-1_000_001), Some(-1_000_001)]),
    ("events", "recorded_at", &[Some(1_796_007_956_261_595), Some(1_796_007_956_261_595)]),
    ("entries", "updated_at", &[Some(1_796_007_956_261_596)]),
    ("pairing_codes", "created_at", &[Some(1_772_488_800_000_005), Some(1_772_488_800_000_005)]),
    ("pairing_codes", "expires_at", &[Some(4_102_444_800_000_006), Some(4_102_444_800_000_006)]),
    ("pairing_codes", "redeemed_at", &[Some(1_772_488_800_000_007), None]),
    ("sync_status", "newest_observed_at", &[Some(1_772_488_800_000_008), Some(1_772_488_800_000_008)]),
    ("sync_status", "last_stored_at", &[Some(1_796_007_956_261_597), Some(1_796_007_956_261_597)]),
    ("priority_rules", "set_at", &[Some(1_772_488_800_000_009), Some(1_772_488_800_000_009)]),
    ("priority_rules", "applied_at", &[Some(1_772_488_800_000_010), None]),
    ("removals", "removed_at", &[Some(1_772_488_800_000_011)]),
    ("access_log", "accessed_at", &[Some(1_772_488_800_000_012)]),
    ("content_hash_versions", "completed_at", &[Some(1_772_488_800_000_013)]),
    ("fold_versions", "completed_at", &[Some(1_772_488_800_000_014)]),
];

/// The instant `micros` after the epoch: whole seconds and the microseconds apart, as
/// chrono counts them.
fn instant(micros: i64) -> Timestamp {
    let seconds = DateTime::<Utc>::from_timestamp(micros.div_euclid(1_000_000), 0).unwrap();
    Timestamp(seconds + chrono::Duration::microseconds(micros.rem_euclid(1_000_000)))
}

/// `values` in order, so that tables read in any order compare.
fn sorted<T: Ord>(mut values: Vec<T>) -> Vec<T> {
    values.sort();
    values
}

async fn every_instant_day_and_event_id_reads_back_as_the_release_before_wrote_it(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    database.migrate_up_to(9).await;
    database.execute_script(BEFORE).await;
    database.migrate_up_to(i64::MAX).await;

    for (table, column, written) in INSTANTS {
        let expected: Vec<Option<Timestamp>> = written.iter().map(|micros| micros.map(instant)).collect();
        let read: Vec<Option<Timestamp>> = database.column(table, column).await;
        assert_eq!(sorted(read), sorted(expected), "{table}.{column}");
    }
    // Two written out by hand.
    let read: Vec<Timestamp> = database.column("fold_versions", "completed_at").await;
    assert_eq!(read[0].0.to_rfc3339(), "2026-03-02T22:00:00.000014+00:00");
    let read: Vec<Timestamp> = database.column("events", "observed_at").await;
    assert_eq!(read[0].0.to_rfc3339(), "1969-12-31T23:59:58.999999+00:00");

    let day = |text: &str| Day(text.parse::<NaiveDate>().unwrap());
    let database = &database;
    let days = |table, column| async move { sorted(database.column::<Option<Day>>(table, column).await) };
    assert_eq!(days("events", "day").await, [None, Some(day("2026-03-02"))]);
    assert_eq!(days("entries", "day").await, [Some(day("2026-03-02"))]);
    assert_eq!(days("sync_status", "last_day").await, [None, Some(day("2029-12-31"))]);
    let ids: Vec<EventId> = database.column("events", "event_id").await;
    let ids: Vec<String> = sorted(ids.iter().map(|id| id.0.to_string()).collect());
    assert_eq!(ids, ["01a22a6a-8f25-72ad-8f99-a1c0c2ebfdc0", "01a22a6a-8f25-72ad-8f99-a1c1c1a8cef4"]);

    // A client added after the upgrade has never had a sync notice: the epoch.
    database
        .execute_script("INSERT INTO users (user_id, coach_id, created_at) SELECT 'u3', 'c1', created_at FROM coaches")
        .await;
    let synced: Vec<Timestamp> = database.column("users", "roster_synced_at").await;
    assert!(synced.contains(&Timestamp(DateTime::UNIX_EPOCH)), "{synced:?}");
}

/// A migration that rewrites a large table takes longer than any request may: migrations
/// run without the statement timeout (here 100 ms; migration 0010 over 110,000 events
/// takes several times that).
#[tokio::test]
async fn migrations_run_without_the_statement_timeout_of_requests() {
    let database = TestDatabase::create(Backend::Postgres).await;
    database.migrate_up_to(9).await;
    database
        .execute_script(
            "INSERT INTO coaches (coach_id, name, created_at_us) VALUES ('c1', 'Coach', 0);
             INSERT INTO users (user_id, coach_id, created_at_us)
                 SELECT 'u' || u, 'c1', 0 FROM generate_series(1, 100) u;
             INSERT INTO events (event_id, user_id, day, kind, source, dedupe_key, content_hash, payload,
                                 observed_at_us, recorded_at_us, actor)
                 SELECT gen_random_uuid()::text, 'u' || u, (DATE '2025-01-01' + d)::text, 'steps', 'healthkit',
                        md5(u || '-' || d || '-' || k), md5(u || '-' || d || '-' || k),
                        '{\"kind\":\"steps\",\"total_steps\":1000,\"source_devices\":[]}', 0, 0, 'device:d1'
                 FROM generate_series(1, 100) u, generate_series(0, 364) d, generate_series(1, 3) k;",
        )
        .await;
    let settings = PgSettings { statement_timeout: std::time::Duration::from_millis(100), ..PgSettings::default() };
    let store = PostgresStore::open(&database.url, &settings).await;
    assert!(store.is_ok(), "{:?}", store.err());
    let ids: Vec<EventId> = database.column("events", "event_id").await;
    assert_eq!(ids.len(), 109_500);
}

//! Re-hashing events stored before the current content-hash form (`domain::canonical`),
//! so that a report sent before an upgrade and re-sent after it is still a duplicate.
//! Runs once when the store opens (`upgrade_content_hashes`), a chunk of
//! events per transaction, and records the version as done.

use std::collections::HashSet;

use super::backend::{Backend, Upgrade};
use super::{now, StoreResult};
use crate::domain::canonical;
use crate::domain::event::StoredEvent;

/// Events read per transaction.
pub(crate) const CHUNK: i64 = 1_000;

/// A stored event of a user, with its dedupe key and content hash.
pub struct StoredHash {
    pub user_id: String,
    pub event: StoredEvent,
    pub dedupe_key: String,
    pub content_hash: String,
}

/// New hash (and key) of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashUpgrade {
    pub user_id: String,
    pub seq: i64,
    pub dedupe_key: String,
    pub content_hash: String,
}

/// The upgrades of the events of `rows` whose hash is of an earlier form. A dedupe key that
/// was the content hash (the client sent no idempotency key) becomes the new hash; a
/// client's key, a workout id or an event id stays. Two events of one user and kind that
/// now say the same (they differed only in what the earlier form kept, such as
/// nanoseconds) are the same report: the first takes the new hash, the other keeps its
/// old one. Within `rows` that is decided here; against events of earlier chunks, by the
/// update itself (it skips a row whose new key and hash another event has).
pub(crate) fn upgrades(rows: &[StoredHash]) -> Vec<HashUpgrade> {
    let mut seen = HashSet::new();
    rows.iter()
        .filter(|row| !canonical::is_current(&row.content_hash))
        .filter_map(|row| {
            let event = &row.event;
            let content_hash = canonical::content_hash(event.day, event.source, event.observed_at, &event.payload);
            let dedupe_key =
                if row.dedupe_key == row.content_hash { content_hash.clone() } else { row.dedupe_key.clone() };
            let kind = event.payload.kind().as_str();
            let unique = (format!("{}\u{0}{kind}", row.user_id), dedupe_key.clone(), content_hash.clone());
            seen.insert(unique).then(|| HashUpgrade {
                user_id: row.user_id.clone(),
                seq: event.seq,
                dedupe_key,
                content_hash,
            })
        })
        .collect()
}

/// Re-hashes the events stored before the current content-hash form, once, a chunk per
/// transaction along the table's key.
pub(crate) async fn upgrade_content_hashes<B: Backend>(backend: &B) -> StoreResult<()> {
    if B::upgraded(&mut *backend.reader().await?, Upgrade::ContentHashes, canonical::VERSION).await? {
        return Ok(());
    }
    let (mut after, mut upgraded) = ((String::new(), -1_i64), 0_usize);
    loop {
        let mut write = backend.write(&[]).await?;
        let stored = B::events_after(&mut write, &after, CHUNK).await?;
        let Some(last) = stored.last() else {
            B::commit(write).await?;
            break;
        };
        after = (last.user_id.clone(), last.event.seq);
        let upgrades = upgrades(&stored);
        if !upgrades.is_empty() {
            B::update_hashes(&mut write, &upgrades).await?;
            upgraded += upgrades.len();
        }
        B::commit(write).await?;
    }
    let mut write = backend.write(&[]).await?;
    B::mark_upgraded(&mut write, Upgrade::ContentHashes, canonical::VERSION, now()).await?;
    B::commit(write).await?;
    tracing::info!(upgraded, version = canonical::VERSION, "stored events re-hashed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::domain::event::{Payload, StepsReport};
    use crate::domain::Source;

    fn row(seq: i64, dedupe_key: &str, content_hash: &str, steps: u32) -> StoredHash {
        let at = Utc.with_ymd_and_hms(2026, 3, 2, 22, 0, 0).unwrap();
        let event = StoredEvent {
            seq,
            event_id: Uuid::from_u128(seq as u128),
            day: NaiveDate::from_ymd_opt(2026, 3, 2),
            source: Source::Healthkit,
            observed_at: at,
            recorded_at: at,
            actor: "device:d1".into(),
            payload: Payload::Steps(StepsReport { total_steps: steps, source_devices: vec!["iPhone".into()] }),
        };
        StoredHash { user_id: "u1".into(), event, dedupe_key: dedupe_key.into(), content_hash: content_hash.into() }
    }

    /// The v1 hash of `row(_, _, _, 8432)`, pinned in `canonical`'s tests.
    const STEPS_8432: &str = "v1:0a8fc3ceb2b54de249980f6d77362f41cb9335805171ae535b19a226b3e7a8f4";

    #[test]
    fn derived_keys_follow_the_new_hash_and_client_keys_stay() {
        let rows = [row(1, "aaaa", "aaaa", 8_432), row(2, "client-key", "bbbb", 8_432), row(3, "x", STEPS_8432, 1)];
        let upgrades = upgrades(&rows[..1]);
        assert_eq!(
            upgrades,
            [HashUpgrade {
                user_id: "u1".into(),
                seq: 1,
                dedupe_key: STEPS_8432.into(),
                content_hash: STEPS_8432.into()
            }]
        );
        let upgrades = super::upgrades(&rows[1..]);
        assert_eq!(
            upgrades,
            [HashUpgrade {
                user_id: "u1".into(),
                seq: 2,
                dedupe_key: "client-key".into(),
                content_hash: STEPS_8432.into()
            }],
            "a current hash is left alone"
        );
    }

    #[test]
    fn reports_that_now_say_the_same_take_the_new_hash_once() {
        let rows = [row(1, "aaaa", "aaaa", 8_432), row(2, "bbbb", "bbbb", 8_432), row(3, "cccc", "cccc", 9_000)];
        assert_eq!(upgrades(&rows).iter().map(|u| u.seq).collect::<Vec<_>>(), [1, 3]);
    }
}

//! Each entry version's protobuf encoding, shared by the streams that send it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prost::bytes::Bytes;
use prost::Message;

use super::convert;
use crate::store::StoredEntry;

/// Encodings kept: a few seconds of changes at the benchmark's 500 a second, enough for
/// every stream to send a change while its encoding is kept.
const KEPT: usize = 4096;

/// Encodings by feed position: a position names one version of one entry, so its
/// encoding never changes. The lowest positions go first.
#[derive(Default)]
pub struct EncodedEntries {
    by_position: Mutex<BTreeMap<i64, Bytes>>,
}

impl EncodedEntries {
    /// `entry` converted and encoded, or its encoding as an earlier stream made it.
    pub fn get(&self, entry: &StoredEntry) -> Bytes {
        if let Some(bytes) = self.kept().get(&entry.position) {
            return bytes.clone();
        }
        // Encoded outside the lock; two streams may both encode a new entry, to the same bytes.
        let bytes = Bytes::from(convert::entry(entry).encode_to_vec());
        let mut kept = self.kept();
        kept.insert(entry.position, bytes.clone());
        if kept.len() > KEPT {
            kept.pop_first();
        }
        bytes
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Bytes>> {
        // The map is valid after any panic (an insert or a removal either happened or not).
        self.by_position.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;
    use crate::domain::fold::Day;
    use crate::proto::v1 as pb;

    fn entry(position: i64) -> StoredEntry {
        StoredEntry {
            user_id: "u1".into(),
            day: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            position,
            updated_at: Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap(),
            body: Day { steps: Some(8_432), ..Day::default() },
            rule_version: 0,
        }
    }

    #[test]
    fn streams_share_one_encoding_per_position_and_only_the_newest_are_kept() {
        let encoded = EncodedEntries::default();
        let first = encoded.get(&entry(1));
        assert_eq!(pb::Entry::decode(first.clone()).unwrap(), convert::entry(&entry(1)));
        assert_eq!(encoded.get(&entry(1)).as_ptr(), first.as_ptr(), "a second stream reuses the bytes");
        for position in 2..=KEPT as i64 + 1 {
            encoded.get(&entry(position));
        }
        assert_eq!(encoded.kept().len(), KEPT);
        assert!(!encoded.kept().contains_key(&1), "the oldest encoding went first");
    }
}

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

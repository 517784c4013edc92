//! Erasure: every row of a user's gone in one transaction, and their removal on the feed.
//! The one deliberate exception to immutable events (docs/PRIVACY.md).

use super::backend::Backend;
use super::roster::Published;
use super::{now, Removal, StoreResult};

/// Where a user's rows are: each table with the column that names the user. Events (and
/// with them their dedupe keys), the read models, what the roster knows, who read their
/// data, device tokens (a device token's subject is its user; coach tokens name coaches),
/// pairing codes (also one reserved for a user not yet created), and the user last. A table added later that
/// holds a user's rows belongs here: the erasure test looks for the user in every table.
pub(crate) const USER_ROWS: [(&str, &str); 7] = [
    // First: a redeem of the user's code that claimed it waits for this (its row lock), so
    // the token it adds is seen, and deleted, below; one that comes later finds no code.
    ("pairing_codes", "user_id"),
    ("events", "user_id"),
    ("entries", "user_id"),
    ("sync_status", "user_id"),
    ("access_log", "user_id"),
    ("tokens", "subject_id"),
    ("users", "user_id"),
];

/// Deletes the user's rows under the user's write lock (so no append of theirs is half
/// done), and, if there was a user, takes a feed position for their removal.
pub(crate) async fn erase<B: Backend>(backend: &B, user_id: &str, by: &str) -> StoreResult<Option<Removal>> {
    let mut write = backend.write(&[user_id]).await?;
    let Some(coach_id) = B::coach_of(&mut write, user_id).await? else {
        // No such user (erased before, or the id is a coach's): only a code reserved for a
        // new client under this id can be left.
        let (table, column) = USER_ROWS[0];
        B::delete_rows(&mut write, table, column, user_id).await?;
        B::commit(write).await?;
        return Ok(None);
    };
    for (table, column) in USER_ROWS {
        B::delete_rows(&mut write, table, column, user_id).await?;
    }
    // After the user's row is locked (deleted), as roster changes take them: then the counter.
    let position = B::take_positions(&mut write, 1).await?;
    let removal = Removal { user_id: user_id.to_string(), coach_id, position, removed_at: now() };
    B::insert_removal(&mut write, &removal, by).await?;
    backend.commit_and_publish(write, Published { removals: vec![removal.clone()], ..Published::default() }).await?;
    tracing::info!(user_id, by, position, "user erased");
    Ok(Some(removal))
}

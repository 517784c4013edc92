//! The access log: reads of a client's health data by someone else, appended in batches
//! (`api::access_log` queues them off the read path) and read back by the client or an
//! admin (docs/PRIVACY.md).

use std::collections::{BTreeSet, HashSet};

use super::backend::Backend;
use super::roster::Clients;
use super::rows::AccessRow;
use super::{Access, LoggedAccess, StoreResult};

/// Appends `accesses` in one transaction, under their users' write locks: an erasure of a
/// user either came first (their reads are left out: there is no one to tell) or waits
/// for this write and deletes what it added.
pub(crate) async fn append<B: Backend>(backend: &B, accesses: &[Access]) -> StoreResult<()> {
    let users: BTreeSet<&str> = accesses.iter().map(|access| access.user_id.as_str()).collect();
    let users: Vec<&str> = users.into_iter().collect();
    let mut write = backend.write(&users).await?;
    let named: Vec<String> = users.iter().map(|user| user.to_string()).collect();
    let existing: HashSet<String> =
        B::clients(&mut write, Clients::Named(&named)).await?.into_iter().map(|row| row.user_id).collect();
    let kept: Vec<&Access> = accesses.iter().filter(|access| existing.contains(&access.user_id)).collect();
    if !kept.is_empty() {
        B::insert_accesses(&mut write, &kept).await?;
    }
    B::commit(write).await
}

/// The user's log, newest first, before `before` (a `seq`; from the newest when `None`).
pub(crate) async fn read<B: Backend>(
    conn: &mut B::Conn,
    user_id: &str,
    before: Option<i64>,
    limit: u32,
) -> StoreResult<Vec<LoggedAccess>> {
    let rows = B::access_rows(conn, user_id, before.unwrap_or(i64::MAX), limit).await?;
    Ok(rows.into_iter().map(AccessRow::into_logged).collect())
}

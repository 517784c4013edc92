//! Clients as a roster shows them, and the roster changes that take feed positions: a
//! client added or paired, renamed, a device revoked, a sync. A change takes the next
//! position from the counter entries take theirs from, so a stream resumes past both by one
//! position, and reads the client as it is after the change.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use super::backend::Backend;
use super::rows::from_micros;
use super::{RosterClient, StoreResult};

/// How often a client's syncs take a new feed position, at most: a phone reporting every
/// few minutes moves its roster entry once a minute, not with every report (its entries
/// show each report). Adding, pairing, renaming and revoking always take one.
pub const SYNC_NOTICE_EVERY: Duration = Duration::minutes(1);

/// Which clients a roster read covers.
#[derive(Debug, Clone, Copy)]
pub enum Clients<'a> {
    OfCoach(&'a str),
    Named(&'a [String]),
}

/// What a write changed that the live feed publishes once it commits.
#[derive(Debug, Default)]
pub struct Published {
    /// Entries stored under new positions.
    pub entries: Vec<super::StoredEntry>,
    /// Clients whose roster changes took new positions.
    pub clients: Vec<String>,
}

/// The clients, by user id, with their devices and what each author stored of each kind.
pub(crate) async fn read_clients<B: Backend>(
    conn: &mut B::Conn,
    clients: Clients<'_>,
) -> StoreResult<Vec<RosterClient>> {
    let mut read = Vec::new();
    for row in B::clients(conn, clients).await? {
        read.push(RosterClient {
            added_at: from_micros(row.created_at_us)?,
            user_id: row.user_id,
            coach_id: row.coach_id,
            position: row.roster_position,
            display_name: row.display_name,
            devices: vec![],
            synced: vec![],
        });
    }
    if read.is_empty() {
        return Ok(read);
    }
    let index: HashMap<String, usize> =
        read.iter().enumerate().map(|(i, client)| (client.user_id.clone(), i)).collect();
    for device in B::devices(conn, clients).await? {
        if let Some(&i) = index.get(&device.user_id) {
            read[i].devices.push(device.into_device()?);
        }
    }
    for synced in B::syncs(conn, clients).await? {
        if let Some(&i) = index.get(&synced.user_id) {
            read[i].synced.push(synced.into_synced()?);
        }
    }
    Ok(read)
}

/// Where a read of the feed by position ends: at `up_to`, or at the last position of a page
/// that came back full (each page as its rows and last position; the rest comes in the next
/// read).
pub(crate) fn read_to(up_to: i64, limit: usize, pages: [(usize, Option<i64>); 2]) -> i64 {
    pages.into_iter().filter(|(rows, _)| *rows == limit).filter_map(|(_, last)| last).fold(up_to, i64::min)
}

/// The clients among `touched` (user, roster position) whose change is at or before
/// `read_to`, as they are now (one changed again since comes with that later change).
pub(crate) async fn clients_read_to<B: Backend>(
    conn: &mut B::Conn,
    touched: Vec<(String, i64)>,
    read_to: i64,
) -> StoreResult<Vec<RosterClient>> {
    let users: Vec<String> =
        touched.into_iter().filter(|(_, position)| *position <= read_to).map(|(user_id, _)| user_id).collect();
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let mut clients = read_clients::<B>(conn, Clients::Named(&users)).await?;
    clients.retain(|client| client.position <= read_to);
    Ok(clients)
}

/// Gives each of `users` (distinct) the next feed position, in order. Returns the users.
pub(crate) async fn touch<B: Backend>(conn: &mut B::Conn, users: &[&str]) -> StoreResult<Vec<String>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let last = B::take_positions(conn, users.len() as i64).await?;
    let first = last - users.len() as i64 + 1;
    let positions: Vec<(&str, i64)> = users.iter().enumerate().map(|(i, user)| (*user, first + i as i64)).collect();
    B::set_roster_positions(conn, &positions).await?;
    Ok(users.iter().map(|user| user.to_string()).collect())
}

/// When this instance last gave each client a sync notice, so that the write path asks the
/// database only when one may be due (a group commit pays nothing the rest of the minute).
/// The database has the last word: another instance may have noticed the sync already.
#[derive(Default)]
pub(crate) struct SyncNotices {
    last: Mutex<HashMap<String, DateTime<Utc>>>,
}

/// Clients remembered before the memory of old notices is swept.
const NOTICES_KEPT: usize = 10_000;

impl SyncNotices {
    /// After an append stored events of `users` (distinct): those whose last sync notice
    /// is older than `SYNC_NOTICE_EVERY` take new positions. Returns them.
    pub(crate) async fn notice<B: Backend>(
        &self,
        conn: &mut B::Conn,
        users: &[&str],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<String>> {
        let before = now - SYNC_NOTICE_EVERY;
        let due: Vec<&str> = {
            let mut last = self.last.lock().expect("sync notices");
            let due: Vec<&str> =
                users.iter().copied().filter(|user| last.get(*user).is_none_or(|at| *at < before)).collect();
            if !due.is_empty() && last.len() >= NOTICES_KEPT {
                last.retain(|_, at| *at >= before);
            }
            // Noted now, whatever the transaction's end: one that rolls back delays the
            // next notice by a minute at most.
            last.extend(due.iter().map(|user| (user.to_string(), now)));
            due
        };
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let claimed = B::claim_sync_notices(conn, &due, before, now).await?;
        let claimed: Vec<&str> = claimed.iter().map(String::as_str).collect();
        touch::<B>(conn, &claimed).await
    }
}

#[cfg(test)]
mod tests {
    use super::read_to;

    #[test]
    fn a_read_ends_at_its_limit_or_where_the_first_full_page_ends() {
        assert_eq!(read_to(100, 3, [(2, Some(50)), (1, Some(70))]), 100, "no page full: everything read");
        assert_eq!(read_to(100, 3, [(3, Some(50)), (1, Some(70))]), 50);
        assert_eq!(read_to(100, 3, [(3, Some(80)), (3, Some(60))]), 60, "both full: the earlier end");
        assert_eq!(read_to(100, 3, [(0, None), (0, None)]), 100);
    }
}

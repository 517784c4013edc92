//! Clients as a roster shows them, and the roster changes that take feed positions: a
//! client added or paired, renamed, a device revoked, a sync. A change takes the next
//! position from the counter entries take theirs from, so a stream resumes past both by one
//! position, and reads the client as it is after the change.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, Duration, Utc};

use super::backend::Backend;
use super::{now, RosterClient, StoreResult};

/// How often a client's syncs take a new feed position, at most, unless configured
/// otherwise (`StoreOptions::sync_notice_every`): a phone reporting every few minutes moves
/// its roster entry once a minute, not with every report (its entries show each report). A
/// sync that came too soon for a notice of its own gets a trailing one once the interval
/// has passed, so the last sync of a burst always reaches the feed. Adding, pairing,
/// renaming and revoking always take a position.
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
    /// Users erased.
    pub removals: Vec<super::Removal>,
}

impl Published {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.clients.is_empty() && self.removals.is_empty()
    }
}

/// The clients, by user id, with their devices and what each author stored of each kind.
pub(crate) async fn read_clients<B: Backend>(
    conn: &mut B::Conn,
    clients: Clients<'_>,
) -> StoreResult<Vec<RosterClient>> {
    let mut read = Vec::new();
    for row in B::clients(conn, clients).await? {
        read.push(RosterClient {
            added_at: row.created_at.0,
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
            read[i].devices.push(device.into_device());
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
pub(crate) fn read_to<const N: usize>(up_to: i64, limit: usize, pages: [(usize, Option<i64>); N]) -> i64 {
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
    B::lock_clients(conn, users).await?;
    let last = B::take_positions(conn, users.len() as i64).await?;
    let first = last - users.len() as i64 + 1;
    let positions: Vec<(&str, i64)> = users.iter().enumerate().map(|(i, user)| (*user, first + i as i64)).collect();
    B::set_roster_positions(conn, &positions).await?;
    Ok(users.iter().map(|user| user.to_string()).collect())
}

/// When this instance last gave each client a sync notice, so that the write path asks the
/// database only when one may be due (a group commit pays nothing the rest of the minute),
/// and the clients whose latest sync no notice has covered yet. The database has the last
/// word: another instance may have noticed a sync already.
pub(crate) struct SyncNotices {
    every: Duration,
    last: Mutex<HashMap<String, DateTime<Utc>>>,
    pending: Mutex<BTreeSet<String>>,
}

/// Clients remembered before the memory of old notices is swept.
const NOTICES_KEPT: usize = 10_000;

impl SyncNotices {
    pub(crate) fn new(every: std::time::Duration) -> SyncNotices {
        let every = Duration::from_std(every).unwrap_or(SYNC_NOTICE_EVERY);
        SyncNotices { every, last: Mutex::default(), pending: Mutex::default() }
    }

    /// After an append stored events of `users` (distinct): those whose last sync notice
    /// is older than the interval take new positions; the others wait for a trailing
    /// notice. Returns the ones noticed.
    pub(crate) async fn notice<B: Backend>(
        &self,
        conn: &mut B::Conn,
        users: &[&str],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<String>> {
        let before = now - self.every;
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
        let claimed = match due.is_empty() {
            true => Vec::new(),
            false => B::claim_sync_notices(conn, &due, before, now).await?,
        };
        let unnoticed = users.iter().filter(|user| !claimed.iter().any(|c| c == *user)).map(|user| user.to_string());
        self.pending.lock().expect("sync notices").extend(unnoticed);
        let claimed: Vec<&str> = claimed.iter().map(String::as_str).collect();
        touch::<B>(conn, &claimed).await
    }

    /// Gives the clients whose last sync no notice covered the notice they are due, in a
    /// write of their own (under their locks, as an append is). Only those this instance
    /// gave no notice within the interval are asked about; the rest wait, without a write.
    async fn notice_pending<B: Backend>(&self, backend: &B) -> StoreResult<()> {
        let now = now();
        let pending: Vec<String> = {
            let last = self.last.lock().expect("sync notices");
            let mut waiting = self.pending.lock().expect("sync notices");
            let (due, not_yet): (Vec<String>, Vec<String>) = std::mem::take(&mut *waiting)
                .into_iter()
                .partition(|user| last.get(user).is_none_or(|at| *at < now - self.every));
            *waiting = not_yet.into_iter().collect();
            due
        };
        if pending.is_empty() {
            return Ok(());
        }
        let users: Vec<&str> = pending.iter().map(String::as_str).collect();
        let noticed = async {
            let mut write = backend.write(&users).await?;
            let claimed = B::claim_sync_notices(&mut write, &users, now - self.every, now).await?;
            let claimed_refs: Vec<&str> = claimed.iter().map(String::as_str).collect();
            let clients = touch::<B>(&mut write, &claimed_refs).await?;
            // A client erased meanwhile can never be noticed again.
            let existing: BTreeSet<String> =
                B::clients(&mut write, Clients::Named(&pending)).await?.into_iter().map(|row| row.user_id).collect();
            backend.commit_and_publish(write, Published { clients, ..Published::default() }).await?;
            StoreResult::Ok((claimed, existing))
        };
        // Those another notice covered within the interval wait for the next round.
        let unnoticed: Vec<String> = match noticed.await {
            Ok((claimed, existing)) => {
                self.last.lock().expect("sync notices").extend(claimed.iter().map(|user| (user.clone(), now)));
                pending.into_iter().filter(|user| !claimed.contains(user) && existing.contains(user)).collect()
            }
            Err(error) => {
                tracing::warn!(%error, "trailing sync notices failed; retrying");
                pending
            }
        };
        self.pending.lock().expect("sync notices").extend(unnoticed);
        Ok(())
    }
}

/// Gives trailing sync notices every quarter interval until the store is dropped.
pub(crate) async fn trailing_notices<B: Backend>(backend: Weak<B>, notices: Arc<SyncNotices>) {
    let tick = (notices.every / 4).to_std().unwrap_or(std::time::Duration::from_secs(15));
    loop {
        tokio::time::sleep(tick).await;
        let Some(backend) = backend.upgrade() else { return };
        let _ = notices.notice_pending(backend.as_ref()).await;
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

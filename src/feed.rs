//! The live feed behind `StreamEntries`: entries, users' removals and (for a subscriber that
//! asks) clients' roster changes; catch up from the store by position, then follow the store's change
//! broadcast.
//!
//! Positions are committed in order, and each published change says after which position it
//! follows, so a follower that tracks the last global position it has accounted for (its
//! cursor) can tell a complete live sequence from a gap.
//! On a gap, or when it lagged behind the broadcast buffer, it reads the missed range back
//! from the store instead of being dropped or slowing writers. Entries are read back in
//! their latest state, so intermediate versions may collapse; positions never go backwards.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, Stream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use crate::store::{FeedChange, FeedFilter, FeedRecord, Removal, RosterClient, Store, StoreError, StoredEntry};

/// Entries read from the store per catch-up query (and held per subscriber, at most).
const CATCH_UP_PAGE: u32 = 256;

#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    Update(Arc<StoredEntry>),
    /// A client as it is after a roster change.
    Client(Arc<RosterClient>),
    /// A user erased: drop them (their entries are gone).
    Removed(Arc<Removal>),
    /// The latest position accounted for; resuming from it misses nothing.
    Heartbeat(i64),
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("position {requested} is ahead of the feed (latest is {head})")]
    AheadOfFeed { requested: i64, head: i64 },
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// What a subscription asks for.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub filter: FeedFilter,
    /// Resume after this position; `None` means live changes only.
    pub after: Option<i64>,
    pub heartbeat: Duration,
    /// Whether to send roster changes too.
    pub clients: bool,
}

/// The subscription's items, until an error (the last item) or `shutdown` turns true. The
/// stream does its work when polled, in the task of the call that streams it (no task of its
/// own: with 1,000 subscribers that was a task wake-up and a channel hop per delivery). A
/// subscriber that stops reading only lags the change broadcast, then reads back from the
/// store by position.
pub fn follow<S: Store>(
    store: S,
    subscription: Subscription,
    shutdown: watch::Receiver<bool>,
) -> impl Stream<Item = Result<FeedItem, FeedError>> + Send + 'static {
    // Subscribe before reading the head, so no change falls between the two.
    let live = store.changes();
    let heartbeat = subscription.heartbeat;
    let mut idle = interval_at(Instant::now() + heartbeat, heartbeat);
    idle.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let follower = Follower {
        store,
        filter: subscription.filter,
        clients: subscription.clients,
        live,
        shutdown,
        idle,
        start: Some(subscription.after),
        cursor: 0,
        catching_up_to: None,
        pending: VecDeque::new(),
    };
    stream::unfold(Some(follower), |follower| async move {
        let mut follower = follower?;
        match follower.next().await {
            Ok(item) => Some((Ok(item), Some(follower))),
            Err(e) => Some((Err(e), None)),
        }
    })
}

struct Follower<S> {
    store: S,
    filter: FeedFilter,
    clients: bool,
    live: broadcast::Receiver<Arc<FeedChange>>,
    shutdown: watch::Receiver<bool>,
    idle: Interval,
    /// Where to begin, until the first item: after a position, or live only.
    start: Option<Option<i64>>,
    /// Every change up to this position has been sent or was not for this subscriber.
    cursor: i64,
    /// The head position a catch-up from the store reads up to.
    catching_up_to: Option<i64>,
    /// Items read and not yet taken (at most one catch-up page).
    pending: VecDeque<FeedItem>,
}

impl<S: Store> Follower<S> {
    async fn next(&mut self) -> Result<FeedItem, FeedError> {
        if let Some(start) = self.start.take() {
            let head = self.store.head_position().await?;
            match start {
                Some(after) if after > head => return Err(FeedError::AheadOfFeed { requested: after, head }),
                Some(after) => {
                    self.cursor = after;
                    self.catch_up_to(head);
                }
                None => {
                    self.cursor = head;
                    return Ok(FeedItem::Heartbeat(head));
                }
            }
        }
        loop {
            // Checked between items too: a long catch-up must not hold up a shutdown.
            if *self.shutdown.borrow() {
                return Err(FeedError::ShuttingDown);
            }
            if let Some(item) = self.pending.pop_front() {
                self.idle.reset();
                return Ok(item);
            }
            if let Some(head) = self.catching_up_to {
                self.read_page(head).await?;
                continue;
            }
            tokio::select! {
                _ = stopped(&mut self.shutdown) => return Err(FeedError::ShuttingDown),
                received = self.live.recv() => match received {
                    Ok(change) => self.apply(change).await?,
                    Err(RecvError::Lagged(_)) => self.catch_up_to(self.store.head_position().await?),
                    Err(RecvError::Closed) => return Err(FeedError::ShuttingDown),
                },
                _ = self.idle.tick() => return Ok(FeedItem::Heartbeat(self.cursor)),
            }
        }
    }

    /// Takes one live change: queues it if it is for this subscriber, or starts a catch-up
    /// if changes before it were missed.
    async fn apply(&mut self, change: Arc<FeedChange>) -> Result<(), FeedError> {
        let position = change.record.position();
        if position <= self.cursor {
            return Ok(());
        }
        if change.after > self.cursor {
            self.catch_up_to(self.store.head_position().await?);
            return Ok(());
        }
        self.cursor = position;
        if self.filter.matches(&change) {
            self.pending.extend(self.item(&change.record));
        }
        Ok(())
    }

    /// What the subscriber is sent of a record, if anything.
    fn item(&self, record: &FeedRecord) -> Option<FeedItem> {
        match record {
            FeedRecord::Entry(entry) => Some(FeedItem::Update(entry.clone())),
            FeedRecord::Client(client) => self.clients.then(|| FeedItem::Client(client.clone())),
            FeedRecord::Removal(removal) => Some(FeedItem::Removed(removal.clone())),
        }
    }

    /// Reads what changed after the cursor, up to `head`, from the store before following
    /// live changes again.
    fn catch_up_to(&mut self, head: i64) {
        if head > self.cursor {
            self.catching_up_to = Some(head);
        }
    }

    /// Queues the next page of matching records after the cursor, up to `head`.
    async fn read_page(&mut self, head: i64) -> Result<(), FeedError> {
        let page = self.store.feed_page(&self.filter, self.cursor, head, CATCH_UP_PAGE, self.clients).await?;
        self.cursor = page.read_to;
        if self.cursor >= head {
            self.catching_up_to = None;
        }
        let items: Vec<FeedItem> = page.records.iter().filter_map(|record| self.item(record)).collect();
        self.pending.extend(items);
        Ok(())
    }
}

/// Resolves once shutdown is signalled (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

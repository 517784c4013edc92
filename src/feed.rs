//! The live entry feed behind `StreamEntries`: catch up from the store by position, then
//! follow the store's change broadcast.
//!
//! Positions are committed in order, and each published change says after which position it
//! follows, so a follower that tracks the last global position it has accounted for (its
//! cursor) can tell a complete live sequence from a gap.
//! On a gap, or when it lagged behind the broadcast buffer, it reads the missed range back
//! from the store instead of being dropped or slowing writers. Entries are read back in
//! their latest state, so intermediate versions may collapse; positions never go backwards.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use crate::store::{EntryChange, FeedFilter, Store, StoreError, StoredEntry};

/// Items buffered per subscriber before its follower waits (and may lag).
const SUBSCRIBER_BUFFER: usize = 64;
/// Entries read from the store per catch-up query.
const CATCH_UP_PAGE: u32 = 256;

#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    Update(Arc<StoredEntry>),
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
    /// The subscriber went away; nothing to report.
    #[error("subscriber gone")]
    Gone,
}

/// What a subscription asks for.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub filter: FeedFilter,
    /// Resume after this position; `None` means live changes only.
    pub after: Option<i64>,
    pub heartbeat: Duration,
}

/// Starts following the feed; items arrive on the returned channel until the subscriber
/// drops it, an error ends it, or `shutdown` turns true.
pub fn follow<S: Store>(
    store: S,
    subscription: Subscription,
    shutdown: watch::Receiver<bool>,
) -> mpsc::Receiver<Result<FeedItem, FeedError>> {
    let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
    tokio::spawn(async move {
        let mut follower = Follower { store, filter: subscription.filter, tx, shutdown, cursor: 0 };
        match follower.run(subscription.after, subscription.heartbeat).await {
            Ok(()) | Err(FeedError::Gone) => {}
            Err(e) => {
                // Best effort: a stalled subscriber does not get to hold the task.
                let _ = follower.tx.try_send(Err(e));
            }
        }
    });
    rx
}

struct Follower<S> {
    store: S,
    filter: FeedFilter,
    tx: mpsc::Sender<Result<FeedItem, FeedError>>,
    shutdown: watch::Receiver<bool>,
    /// Every change up to this position has been sent or was not for this subscriber.
    cursor: i64,
}

impl<S: Store> Follower<S> {
    async fn run(&mut self, after: Option<i64>, heartbeat: Duration) -> Result<(), FeedError> {
        // Subscribe before reading the head, so no change falls between the two.
        let mut live = self.store.changes();
        match after {
            Some(after) => {
                let head = self.store.head_position().await?;
                if after > head {
                    return Err(FeedError::AheadOfFeed { requested: after, head });
                }
                self.cursor = after;
                self.catch_up().await?;
            }
            None => {
                self.cursor = self.store.head_position().await?;
                self.send(FeedItem::Heartbeat(self.cursor)).await?;
            }
        }
        let mut idle = interval_at(Instant::now() + heartbeat, heartbeat);
        idle.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.tx.closed() => return Err(FeedError::Gone),
                _ = stopped(&mut self.shutdown) => return Err(FeedError::ShuttingDown),
                received = live.recv() => {
                    let sent = match received {
                        Ok(change) => self.apply(change).await?,
                        Err(RecvError::Lagged(_)) => self.catch_up().await?,
                        Err(RecvError::Closed) => return Err(FeedError::ShuttingDown),
                    };
                    if sent {
                        idle.reset();
                    }
                }
                _ = idle.tick() => self.send(FeedItem::Heartbeat(self.cursor)).await?,
            }
        }
    }

    /// Takes one live change; returns whether anything was sent.
    async fn apply(&mut self, change: Arc<EntryChange>) -> Result<bool, FeedError> {
        let position = change.entry.position;
        if position <= self.cursor {
            return Ok(false);
        }
        if change.after > self.cursor {
            return self.catch_up().await;
        }
        self.cursor = position;
        if !self.filter.matches(&change) {
            return Ok(false);
        }
        self.send(FeedItem::Update(change.entry.clone())).await?;
        Ok(true)
    }

    /// Reads every matching entry after the cursor up to the store's head; returns whether
    /// anything was sent.
    async fn catch_up(&mut self) -> Result<bool, FeedError> {
        let head = self.store.head_position().await?;
        let mut sent = false;
        while self.cursor < head {
            let page = self.store.feed_page(&self.filter, self.cursor, head, CATCH_UP_PAGE).await?;
            let complete = page.len() < CATCH_UP_PAGE as usize;
            let last = page.last().map(|e| e.position);
            for entry in page {
                self.send(FeedItem::Update(Arc::new(entry))).await?;
                sent = true;
            }
            self.cursor = match (complete, last) {
                (false, Some(last)) => last,
                _ => head,
            };
        }
        Ok(sent)
    }

    async fn send(&mut self, item: FeedItem) -> Result<(), FeedError> {
        tokio::select! {
            sent = self.tx.send(Ok(item)) => sent.map_err(|_| FeedError::Gone),
            _ = stopped(&mut self.shutdown) => Err(FeedError::ShuttingDown),
        }
    }
}

/// Resolves once shutdown is signalled (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

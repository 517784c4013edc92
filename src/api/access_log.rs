//! The access log's queue: a read of a client's data by a coach or an admin queues a
//! record and goes on; one task stores what has gathered, a batch per transaction, so a
//! read pays a channel send, not a write (docs/PRIVACY.md).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::auth::Principal;
use crate::metrics::ACCESS_LOG_LOST;
use crate::store::{now, Access, Store};

/// Records that may wait for the writer (a few MiB at most). A read waits for room rather
/// than go unrecorded; room enough that a thousand dashboards opening at once do not.
const QUEUE: usize = 32_768;
/// Records per transaction, at most.
const BATCH: usize = 2_048;
/// How long the first record of a batch waits for others: a transaction (an fsync, on
/// SQLite the one writer) per record would cost reads what the log must not.
const GATHER: std::time::Duration = std::time::Duration::from_millis(25);
/// Tries to store a batch: waits of 0.1 s doubling to 26 s, about 50 s in all, ride out a
/// failover; after that the batch is counted lost (`ACCESS_LOG_LOST`) and logged.
const ATTEMPTS: u32 = 10;
const FIRST_PAUSE: Duration = Duration::from_millis(100);

enum Queued {
    Access(Access),
    /// Answered once everything queued before it is stored.
    Flush(oneshot::Sender<()>),
}

/// Someone reading a user's data, authorized: who, whose, from which IP address (empty
/// when the transport does not say).
#[derive(Debug, Clone)]
pub struct Reader {
    pub principal: Principal,
    pub user_id: String,
    pub peer: String,
}

/// Where reads are recorded; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    queue: mpsc::Sender<Queued>,
}

impl AccessLog {
    /// Starts the task that stores records (inside a tokio runtime).
    pub fn start<S: Store>(store: S) -> AccessLog {
        let (queue, queued) = mpsc::channel(QUEUE);
        tokio::spawn(store_queued(store, queued));
        AccessLog { queue }
    }

    /// Records a read with `rpc` of what `detail` names. A device reads only its own
    /// user, which is not recorded.
    pub async fn record(&self, reader: &Reader, rpc: &str, detail: String) {
        if matches!(reader.principal, Principal::Device { .. }) {
            return;
        }
        let access = Access {
            user_id: reader.user_id.clone(),
            accessor: reader.principal.actor(),
            rpc: rpc.to_string(),
            detail,
            peer: reader.peer.clone(),
            at: now(),
        };
        // Fails only when the task has stopped, with the runtime.
        let _ = self.queue.send(Queued::Access(access)).await;
    }

    /// Waits until everything recorded before this call is stored (or counted lost): a
    /// log read on this instance shows the reads that came before it.
    pub async fn flushed(&self) {
        let (done, stored) = oneshot::channel();
        if self.queue.send(Queued::Flush(done)).await.is_ok() {
            let _ = stored.await;
        }
    }
}

async fn store_queued<S: Store>(store: S, mut queued: mpsc::Receiver<Queued>) {
    let mut received = Vec::with_capacity(BATCH);
    while queued.recv_many(&mut received, BATCH).await > 0 {
        // A burst gathers into one transaction, unless someone waits for what is queued.
        if received.len() < BATCH && !received.iter().any(|item| matches!(item, Queued::Flush(_))) {
            tokio::time::sleep(GATHER).await;
            while received.len() < BATCH {
                match queued.try_recv() {
                    Ok(item) => received.push(item),
                    Err(_) => break,
                }
            }
        }
        let mut accesses = Vec::with_capacity(received.len());
        let mut flushes = Vec::new();
        for item in received.drain(..) {
            match item {
                Queued::Access(access) => accesses.push(access),
                Queued::Flush(done) => flushes.push(done),
            }
        }
        if !accesses.is_empty() {
            store_with_retries(&store, &accesses).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn store_with_retries<S: Store>(store: &S, accesses: &[Access]) {
    let mut pause = FIRST_PAUSE;
    for attempt in 1..=ATTEMPTS {
        match store.log_accesses(accesses).await {
            Ok(()) => return,
            Err(error) if attempt < ATTEMPTS => {
                tracing::warn!(%error, attempt, records = accesses.len(), "storing access-log records failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(error) => {
                tracing::error!(%error, records = accesses.len(), "access-log records lost after every retry");
                metrics::counter!(ACCESS_LOG_LOST).increment(accesses.len() as u64);
            }
        }
    }
}

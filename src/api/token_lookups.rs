//! Token lookups of concurrent calls share one query. Every RPC authenticates, and one
//! round trip per call was over half of PostgreSQL's statements during single-item ingest.
//! Each lookup still reads the database after its call arrived, so a revocation committed
//! before a call is seen by that call, on every instance.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::store::{Store, StoreError, StoreResult, TokenOwner};

/// Queries in flight at once; lookups that arrive meanwhile wait and share the next one.
const IN_FLIGHT: usize = 2;
/// Token hashes per query at most (well under SQLite's parameter limit).
const MAX_BATCH: usize = 256;
/// Lookups that may wait before callers wait to hand theirs over.
const QUEUE: usize = 1024;

/// The handle calls look tokens up through; its task stops when every handle is dropped.
#[derive(Clone)]
pub(crate) struct TokenLookups {
    lookups: mpsc::Sender<Lookup>,
}

struct Lookup {
    token_hash: String,
    reply: oneshot::Sender<Result<Option<TokenOwner>, Arc<StoreError>>>,
}

impl TokenLookups {
    pub(crate) fn start<S: Store>(store: S) -> TokenLookups {
        let (lookups, queue) = mpsc::channel(QUEUE);
        tokio::spawn(serve(store, queue));
        TokenLookups { lookups }
    }

    /// Who owns the token with this hash, if it exists and is not revoked.
    pub(crate) async fn owner(&self, token_hash: String) -> StoreResult<Option<TokenOwner>> {
        let (reply, answer) = oneshot::channel();
        self.lookups.send(Lookup { token_hash, reply }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?.map_err(StoreError::Shared)
    }
}

async fn serve<S: Store>(store: S, mut queue: mpsc::Receiver<Lookup>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        // Gather only once a query may start, so that whatever arrived while all were busy
        // goes in this one.
        let permit = in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(lookup) = queue.try_recv() else { break };
            batch.push(lookup);
        }
        let store = store.clone();
        tokio::spawn(async move {
            let hashes: Vec<&str> = batch.iter().map(|lookup| lookup.token_hash.as_str()).collect();
            let found = store.token_owners(&hashes).await;
            drop(permit);
            match found {
                Ok(owners) => {
                    let owners: HashMap<String, TokenOwner> = owners.into_iter().collect();
                    for lookup in batch {
                        let _ = lookup.reply.send(Ok(owners.get(&lookup.token_hash).cloned()));
                    }
                }
                Err(e) => {
                    let e = Arc::new(e);
                    for lookup in batch {
                        let _ = lookup.reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts;
    use crate::store::sqlite::SqliteStore;
    use coachfit_testkit::ScratchDatabase;

    #[tokio::test]
    async fn concurrent_lookups_each_get_their_own_tokens_owner() {
        let db = ScratchDatabase::create("sqlite").await.unwrap();
        let store = SqliteStore::open(&db.url).await.unwrap();
        let (coach_id, coach_token) = accounts::create_coach(&store, "Coach").await.unwrap();
        let mut tokens = vec![coach_token, "not a token".to_string()];
        for _ in 0..3 {
            tokens.push(accounts::create_client(&store, &coach_id, None, "phone").await.unwrap().unwrap().1);
        }
        // What each token's lookup alone answers.
        let mut expected = Vec::new();
        for token in &tokens {
            let hash = accounts::hash_token(token);
            let owner = store.token_owners(&[hash.as_str()]).await.unwrap().pop().map(|(_, owner)| owner);
            expected.push((hash, owner));
        }
        assert_eq!(expected[0].1, Some(TokenOwner::Coach { coach_id }));
        assert_eq!(expected[1].1, None);
        assert!(expected[2..].iter().all(|(_, owner)| matches!(owner, Some(TokenOwner::Device { .. }))));

        let lookups = TokenLookups::start(store);
        let calls = (0..200).map(|i| {
            let (lookups, (hash, owner)) = (lookups.clone(), expected[i % expected.len()].clone());
            tokio::spawn(async move { (lookups.owner(hash).await.unwrap(), owner) })
        });
        for call in futures::future::join_all(calls).await {
            let (found, owner) = call.unwrap();
            assert_eq!(found, owner);
        }
    }
}

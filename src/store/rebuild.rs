//! Rebuild and verify, for every backend. A rebuild walks the days with events in chunks
//! of about `Backend::REBUILD_CHUNK_EVENTS` events: one task lists the chunks, reads of the
//! next chunks (each in one snapshot, folded there) run ahead while the current one is
//! written in a short transaction of its own, so a rebuild never holds a writer for long.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::NaiveDate;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::backend::Backend;
use super::projector::{self, DaySpan, UserDay};
use super::roster::Published;
use super::rules::RuleCache;
use super::{now, Mismatch, RebuildStats, StoreResult};
use crate::domain::event::StoredEvent;
use crate::domain::fold::fold;

/// Chunks a rebuild reads and folds while it writes one.
const READS_AHEAD: usize = 3;

/// How often a long rebuild logs how far it got.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The days of a rebuild's chunk, in `(user_id, day)` order, each with its number of events.
type ChunkDays = Vec<(String, NaiveDate, i64)>;

/// A rebuild's chunk, read and folded ahead of the transaction that stores it.
pub(crate) struct ChunkRead {
    days: ChunkDays,
    inputs: projector::Prefetched,
}

/// Re-folds every day (of one user, or of everyone) under the rule in force, which each
/// chunk's transaction reads (a rule set during a rebuild applies to the chunks after it).
pub(crate) async fn rebuild<B: Backend>(
    backend: &Arc<B>,
    rules: &Arc<RuleCache>,
    user_id: Option<&str>,
) -> StoreResult<RebuildStats> {
    let mut stats = RebuildStats::default();
    let mut listed = list_chunks(backend, user_id);
    let mut ahead = VecDeque::new();
    let mut logged = std::time::Instant::now();
    while let Some(span) = listed.recv().await.transpose()? {
        ahead.push_back(read_chunk(backend, rules, span));
        if ahead.len() > READS_AHEAD {
            let read = ahead.pop_front().expect("a read");
            rebuild_read(backend.as_ref(), rules, read, &mut stats).await?;
        }
        if logged.elapsed() >= PROGRESS_EVERY {
            logged = std::time::Instant::now();
            let (days, changed) = (stats.days_rebuilt, stats.days_changed);
            tracing::info!(days, changed, events = stats.events_replayed, "re-folding days");
        }
    }
    for read in ahead {
        rebuild_read(backend.as_ref(), rules, read, &mut stats).await?;
    }
    Ok(stats)
}

/// Days whose stored entry differs from the fold of their events under the rule in force,
/// or was folded under another version of it.
pub(crate) async fn verify<B: Backend>(backend: &B, rules: &RuleCache) -> StoreResult<Vec<Mismatch>> {
    let mut mismatches = Vec::new();
    let mut conn = backend.reader().await?;
    let rule = rules.current::<B>(&mut conn).await?;
    for (user_id, day) in B::event_days(&mut conn).await? {
        let input = projector::fold_input::<B>(&mut conn, &user_id, day).await?;
        let stored = B::entry(&mut conn, &user_id, day).await?.map(|row| row.into_entry()).transpose()?;
        let folded = Some((fold(day, &input, &rule.rule), rule.version));
        if stored.map(|entry| (entry.body, entry.rule_version)) != folded {
            mismatches.push(Mismatch { user_id, day });
        }
    }
    Ok(mismatches)
}

/// Waits for a chunk's read (while the next ones are read) and re-folds it.
async fn rebuild_read<B: Backend>(
    backend: &B,
    rules: &RuleCache,
    read: JoinHandle<StoreResult<ChunkRead>>,
    stats: &mut RebuildStats,
) -> StoreResult<()> {
    // A panic in the read task is this call's panic.
    let chunk = read.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    stats.days_rebuilt += chunk.days.len() as u64;
    stats.events_replayed += chunk.days.iter().map(|(_, _, n)| *n as u64).sum::<u64>();
    stats.days_changed += rebuild_chunk(backend, rules, chunk).await?;
    Ok(())
}

/// Re-folds one chunk of days in one transaction (of any users) under the rule in force;
/// returns how many days changed.
pub(crate) async fn rebuild_chunk<B: Backend>(backend: &B, rules: &RuleCache, chunk: ChunkRead) -> StoreResult<u64> {
    let days: Vec<UserDay> = chunk.days.iter().map(|(user, day, _)| (user.as_str(), *day)).collect();
    let users = projector::distinct_users(days.iter().map(|(user, _)| *user));
    let span = chunk.inputs.span.clone();
    let mut write = backend.write(&users).await?;
    let rule = rules.current::<B>(&mut write).await?;
    let changed = projector::refold_prefetched::<B>(&mut write, &days, chunk.inputs, &rule, now()).await?;
    B::stamp_rule_version(&mut write, &span, rule.version).await?;
    let count = changed.len() as u64;
    backend.commit_and_publish(write, Published { entries: changed, ..Published::default() }).await?;
    Ok(count)
}

/// Lists a rebuild's chunks of days with events (of one user, or of all), in
/// `(user_id, day)` order, in a task of its own that runs up to two chunks ahead of the reads.
pub(crate) fn list_chunks<B: Backend>(backend: &Arc<B>, user_id: Option<&str>) -> mpsc::Receiver<StoreResult<DaySpan>> {
    let (chunks, listed) = mpsc::channel(2);
    let (backend, user_id) = (backend.clone(), user_id.map(str::to_string));
    tokio::spawn(async move {
        // The empty id sorts first: the walk starts before the first day (of the user).
        let mut after = (user_id.clone().unwrap_or_default(), projector::before_every_day());
        loop {
            let last = async {
                let mut conn = backend.reader().await?;
                chunk_end::<B>(&mut conn, &after, user_id.as_deref()).await
            }
            .await;
            // The walk ends after an error or the last chunk.
            let span = match last {
                Ok(Some(last)) => Ok(DaySpan { after: std::mem::replace(&mut after, last.clone()), last }),
                Ok(None) => return,
                Err(e) => Err(e),
            };
            let failed = span.is_err();
            if chunks.send(span).await.is_err() || failed {
                return;
            }
        }
    });
    listed
}

/// The last day of the rebuild chunk after the user-day `after`: the day of the
/// `REBUILD_CHUNK_EVENTS`th event after it, or the last day with events; `None` if none is left.
async fn chunk_end<B: Backend>(
    conn: &mut B::Conn,
    after: &(String, NaiveDate),
    user_id: Option<&str>,
) -> StoreResult<Option<(String, NaiveDate)>> {
    match B::nth_event_day_after(conn, after, user_id, B::REBUILD_CHUNK_EVENTS).await? {
        Some(end) => Ok(Some(end)),
        None => B::last_event_day_after(conn, after, user_id).await,
    }
}

/// Reads a chunk in one snapshot, then folds it, in a task of its own, so that the next
/// chunk is read and folded while this one is written.
pub(crate) fn read_chunk<B: Backend>(
    backend: &Arc<B>,
    rules: &Arc<RuleCache>,
    span: DaySpan,
) -> JoinHandle<StoreResult<ChunkRead>> {
    let (backend, rules) = (backend.clone(), rules.clone());
    tokio::spawn(async move {
        // One snapshot: a change committed after it shows as a newer event, a later
        // position or another rule to the write that uses this read (`refold_prefetched`).
        let mut snapshot = backend.snapshot().await?;
        let rule = rules.current::<B>(&mut snapshot).await?;
        let events = B::span_events(&mut snapshot, &span).await?;
        let days = day_counts(&events);
        let user_days: Vec<UserDay> = days.iter().map(|(user, day, _)| (user.as_str(), *day)).collect();
        let users = projector::distinct_users(user_days.iter().map(|(user, _)| *user));
        let newest = B::newest_seqs(&mut snapshot, &users).await?;
        let head = B::feed_head(&mut snapshot).await?;
        let events = projector::with_related_workouts::<B>(&mut snapshot, events, &[]).await?;
        let stored = B::span_bodies(&mut snapshot, &span).await?;
        B::end_snapshot(snapshot).await?;
        let changed = projector::changed_days(&user_days, events, &stored, &rule.rule);
        drop(user_days);
        let inputs = projector::Prefetched { span, rule_version: rule.version, newest, head, changed };
        Ok(ChunkRead { days, inputs })
    })
}

/// The days of `events`, each with its number of events.
fn day_counts(events: &[(String, StoredEvent)]) -> ChunkDays {
    let mut counts: HashMap<(&str, NaiveDate), i64> = HashMap::new();
    for (user_id, event) in events {
        if let Some(day) = event.day {
            *counts.entry((user_id.as_str(), day)).or_default() += 1;
        }
    }
    let mut days: ChunkDays = counts.into_iter().map(|((user_id, day), n)| (user_id.to_string(), day, n)).collect();
    days.sort_unstable();
    days
}

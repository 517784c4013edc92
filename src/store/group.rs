//! Group commit, for every backend: a few writer lanes each take the appends waiting, write
//! them in one transaction (one commit, one fsync), and acknowledge each request only after
//! that commit. If a shared transaction fails, each of its requests is retried alone, so
//! one bad request cannot fail its neighbours.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;

use tokio::sync::{mpsc, oneshot, Mutex, MutexGuard};

use super::projector::{Append, AppendOutcome};
use super::{StoreError, StoreResult};
use crate::domain::event::NewEvent;
use crate::metrics::{GROUP_COMMIT_REQUESTS, WRITE_QUEUE_DEPTH};

/// Requests written together at most; more wait for the next transaction.
const MAX_GROUP_REQUESTS: usize = 64;
/// Events written together at most (a larger request still goes, alone), so a group's
/// transaction stays short and each of its statements binds at most ~11,000 parameters
/// (11 per event row), well under SQLite's 32,766 and PostgreSQL's 65,535. Requests carry
/// at most 400 items.
pub(crate) const MAX_GROUP_EVENTS: usize = 1000;

/// How a backend writes one group: in one transaction, committed before it returns.
pub(crate) trait GroupWriter: Send + Sync + 'static {
    /// One outcome list per request, in order.
    fn append_group(&self, group: &[Append<'_>]) -> impl Future<Output = StoreResult<Vec<Vec<AppendOutcome>>>> + Send;
}

/// The handle requests append through; the lanes stop when every handle is dropped.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

/// One request's append, waiting for the commit that includes it.
struct Job {
    user_id: String,
    actor: String,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<StoreResult<Vec<AppendOutcome>>>,
}

impl Job {
    fn append(&self) -> Append<'_> {
        Append { user_id: &self.user_id, actor: &self.actor, events: &self.events }
    }
}

impl GroupCommit {
    /// Starts `lanes` writer tasks (transactions in flight at once) over `writer`, with
    /// room for `queue` requests waiting.
    pub(crate) fn start<W: GroupWriter>(writer: Arc<W>, lanes: usize, queue: usize) -> GroupCommit {
        let (jobs, queue) = mpsc::channel(queue);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(writer.clone(), queue.clone()));
        }
        GroupCommit { jobs }
    }

    /// Hands one request's append to a lane and waits until it is committed.
    pub(crate) async fn append(
        &self,
        user_id: &str,
        actor: &str,
        events: Vec<NewEvent>,
    ) -> StoreResult<Vec<AppendOutcome>> {
        let (reply, committed) = oneshot::channel();
        let job = Job { user_id: user_id.to_string(), actor: actor.to_string(), events, reply };
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })?;
        metrics::gauge!(WRITE_QUEUE_DEPTH).set((self.jobs.max_capacity() - self.jobs.capacity()) as f64);
        committed.await.map_err(|_| StoreError::Closed)?
    }
}

/// One writer lane: takes a group, writes it, answers its requests, repeats.
async fn lane<W: GroupWriter>(writer: Arc<W>, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    // A job that did not fit the last group starts the next one.
    let mut carried: Option<Job> = None;
    loop {
        let group = match carried.take() {
            // Never wait for the queue with a job in hand: another lane may hold the queue
            // while it waits for new requests, which may be waiting for this job's answer.
            Some(first) => gather(first, queue.try_lock().ok(), &mut carried),
            None => {
                let mut waiting = queue.lock().await;
                let Some(first) = waiting.recv().await else { return };
                gather(first, Some(waiting), &mut carried)
            }
        };
        // A bug that panics fails this group's requests (their replies are dropped), not
        // every later write.
        if AssertUnwindSafe(write(writer.as_ref(), group)).catch_unwind().await.is_err() {
            tracing::error!("a group commit panicked; its requests failed");
        }
    }
}

/// A group starting with `first`, plus the jobs already waiting in `queue` (when this lane
/// holds it) that fit; the first that does not fit goes to `carried`.
fn gather(first: Job, queue: Option<MutexGuard<'_, mpsc::Receiver<Job>>>, carried: &mut Option<Job>) -> Vec<Job> {
    let mut events = first.events.len();
    let mut group = vec![first];
    let Some(mut queue) = queue else { return group };
    while group.len() < MAX_GROUP_REQUESTS {
        let Ok(job) = queue.try_recv() else { break };
        // A group stays small.
        if events + job.events.len() > MAX_GROUP_EVENTS {
            *carried = Some(job);
            break;
        }
        events += job.events.len();
        group.push(job);
    }
    metrics::gauge!(WRITE_QUEUE_DEPTH).set(queue.len() as f64);
    group
}

async fn write<W: GroupWriter>(writer: &W, mut group: Vec<Job>) {
    metrics::histogram!(GROUP_COMMIT_REQUESTS).record(group.len() as f64);
    let appends: Vec<Append> = group.iter().map(Job::append).collect();
    let written = writer.append_group(&appends).await;
    drop(appends);
    match written {
        Ok(outcomes) => {
            for (job, outcome) in group.into_iter().zip(outcomes) {
                // A caller that went away is fine: its append is committed all the same.
                let _ = job.reply.send(Ok(outcome));
            }
        }
        Err(e) if group.len() == 1 => {
            let _ = group.pop().expect("one job").reply.send(Err(e));
        }
        Err(_) => {
            for job in group {
                let alone = writer.append_group(&[job.append()]).await;
                let _ = job.reply.send(alone.map(|mut outcomes| outcomes.remove(0)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;
    use crate::domain::event::{KeyReuse, Payload, StepsReport};
    use crate::domain::Source;

    /// Accepts everything, after yielding so that other lanes get to run meanwhile.
    struct Accepting;

    impl GroupWriter for Accepting {
        async fn append_group(&self, group: &[Append<'_>]) -> StoreResult<Vec<Vec<AppendOutcome>>> {
            tokio::task::yield_now().await;
            Ok(group
                .iter()
                .map(|a| a.events.iter().map(|_| AppendOutcome::Accepted(uuid::Uuid::nil())).collect())
                .collect())
        }
    }

    fn events(count: usize) -> Vec<NewEvent> {
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        (0..count)
            .map(|i| {
                let payload = Payload::Steps(StepsReport { total_steps: i as u32, source_devices: vec![] });
                NewEvent::new(Some(day), Source::Healthkit, at, payload, None, KeyReuse::Reject)
            })
            .collect()
    }

    /// Two requests too large to share a group, two lanes: the second is carried by the lane
    /// that took the first while the other lane waits on the empty queue. It must still be
    /// written.
    #[tokio::test]
    async fn a_carried_request_is_written_while_another_lane_waits_for_work() {
        let commit = GroupCommit::start(Arc::new(Accepting), 2, 1024);
        let both = async {
            tokio::join!(commit.append("a", "device:a", events(600)), commit.append("b", "device:b", events(600)))
        };
        let (a, b) = tokio::time::timeout(Duration::from_secs(5), both).await.expect("both answered");
        assert_eq!(a.unwrap().len(), 600);
        assert_eq!(b.unwrap().len(), 600);
    }

    /// Holds every group until released.
    struct Stalled(tokio::sync::Semaphore);

    impl GroupWriter for Stalled {
        async fn append_group(&self, group: &[Append<'_>]) -> StoreResult<Vec<Vec<AppendOutcome>>> {
            let _released = self.0.acquire().await.expect("open");
            Accepting.append_group(group).await
        }
    }

    /// With the writer stuck and the queue full, an append is refused at once as
    /// overloaded rather than left waiting; those already queued are written once the
    /// writer moves again.
    #[tokio::test]
    async fn a_full_write_queue_sheds_new_appends_and_keeps_the_queued_ones() {
        let writer = Arc::new(Stalled(tokio::sync::Semaphore::new(0)));
        let commit = GroupCommit::start(writer.clone(), 1, 2);
        // One request in the stuck lane, two waiting in the queue.
        let mut queued = Vec::new();
        for user in ["a", "b", "c"] {
            let commit = commit.clone();
            queued.push(tokio::spawn(async move { commit.append(user, "device", events(1)).await }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let shed = tokio::time::timeout(Duration::from_secs(5), commit.append("d", "device", events(1))).await;
        assert!(matches!(shed.expect("refused at once"), Err(StoreError::Overloaded)));

        writer.0.add_permits(1_000);
        for append in queued {
            assert_eq!(append.await.unwrap().unwrap().len(), 1);
        }
    }
}

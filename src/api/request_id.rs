//! The request id of the call a task is handling (set around each handler by the server's
//! `observe` layer), so that an error message can name the id its log lines carry.

use std::future::Future;

use uuid::Uuid;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `handler` as the call with request id `id`.
pub fn scope<F: Future>(id: String, handler: F) -> impl Future<Output = F::Output> {
    REQUEST_ID.scope(id, handler)
}

/// Runs `f` as part of the call with request id `id` (a stream's body, which runs after
/// its handler has returned).
pub fn within<R>(id: String, f: impl FnOnce() -> R) -> R {
    REQUEST_ID.sync_scope(id, f)
}

/// The request id of the call this task is handling; a new one outside a call.
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| Uuid::new_v4().to_string())
}

//! The gRPC transport: one file per service, sharing authentication and error mapping.

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod bearer;
pub(crate) mod convert;
mod device_rate;
mod encoded_entries;
pub mod entry;
pub mod ingest;
pub(crate) mod items;
pub mod pairing;
pub mod privacy;
pub mod request_id;
pub mod roster;
pub mod status;
mod stream_slots;
mod throttle;
mod token_lookups;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use access_log::AccessLog;
use auth::Authenticator;
pub use device_rate::DeviceRate;
pub use stream_slots::StreamSlots;

/// What every service handler needs.
#[derive(Clone)]
pub struct AppState<S> {
    pub store: S,
    pub auth: Authenticator<S>,
    /// Where reads of a client's data by someone else are recorded.
    pub access_log: AccessLog,
    /// How long a stream may be idle before it gets a heartbeat.
    pub heartbeat: Duration,
    /// Turns true when the server shuts down, ending open streams.
    pub shutdown: watch::Receiver<bool>,
    /// Open `StreamEntries` per principal.
    pub stream_slots: Arc<StreamSlots>,
    /// Items each device may ingest, and how fast.
    pub device_rate: Arc<DeviceRate>,
    /// Users one `StreamEntries` may name.
    pub max_stream_users: usize,
    /// Days without a new observation after which a client is stale.
    pub stale_after_days: u32,
}

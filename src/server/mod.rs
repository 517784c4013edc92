//! The tonic server: CoachFit's services (gRPC, and gRPC-Web for browsers), health,
//! reflection, the coach's dashboard, the limits on what a client may hold, and a graceful
//! shutdown with a deadline.

mod connections;
mod deadline;
mod observe;
mod tls;
mod web;

pub use connections::raise_open_file_limit;
pub use tls::{Tls, TlsFiles};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tonic_web::GrpcWebLayer;

use crate::api::access_log::AccessLog;
use crate::api::admin::AdminApi;
use crate::api::auth::Authenticator;
use crate::api::entry::EntryApi;
use crate::api::ingest::IngestApi;
use crate::api::pairing::{PairingApi, PairingOptions};
use crate::api::privacy::PrivacyApi;
use crate::api::roster::RosterApi;
use crate::api::{AppState, DeviceRate, StreamSlots};
use crate::metrics::POOL_CONNECTIONS;
use crate::proto::v1::admin_service_server::AdminServiceServer;
use crate::proto::v1::entry_service_server::EntryServiceServer;
use crate::proto::v1::ingest_service_server::IngestServiceServer;
use crate::proto::v1::pairing_service_server::PairingServiceServer;
use crate::proto::v1::privacy_service_server::PrivacyServiceServer;
use crate::proto::v1::roster_service_server::RosterServiceServer;
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::store::Store;

/// How often health re-checks the database.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// What a server needs besides its store and socket.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// When set, this bearer token is an admin principal.
    pub admin_token: Option<String>,
    /// How long a `StreamEntries` stream may be idle before it gets a heartbeat.
    pub heartbeat: Duration,
    /// Days without a new observation after which a client shows as stale.
    pub stale_after_days: u32,
    pub pairing: PairingOptions,
    pub limits: Limits,
    /// TLS for the listener (reloaded on SIGHUP); plaintext without it.
    pub tls: Option<Arc<Tls>>,
    /// Origins (besides the served dashboard's own) whose pages may call the API.
    pub cors_origins: Vec<HeaderValue>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            tls: None,
            cors_origins: Vec::new(),
            admin_token: None,
            heartbeat: Duration::from_secs(5),
            stale_after_days: 3,
            pairing: PairingOptions::default(),
            limits: Limits::default(),
        }
    }
}

/// What one client may hold of the server (the README's limits table).
#[derive(Debug, Clone)]
pub struct Limits {
    /// HTTP/2 streams (calls) one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// How long a call's handler may take to answer; a streaming call answers once its
    /// stream is set up.
    pub request_timeout: Duration,
    /// `StreamEntries` one token may hold open on this instance.
    pub streams_per_principal: usize,
    /// After a shutdown begins, how long calls and streams have to finish before the
    /// remaining connections are closed.
    pub drain_timeout: Duration,
    /// HTTP/2 PING interval on idle connections; a peer that does not answer within
    /// `keepalive_timeout` is disconnected.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Items one device may ingest at once, and per second after that.
    pub device_burst_items: u32,
    pub device_items_per_second: u32,
    /// Users one `StreamEntries` request may name.
    pub max_stream_users: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_streams: 256,
            request_timeout: Duration::from_secs(30),
            streams_per_principal: 64,
            drain_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            device_burst_items: 2_000,
            device_items_per_second: 500,
            max_stream_users: 1_000,
        }
    }
}

/// Binds `addr` (port 0 picks a free port) and returns the listener and its address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves until `shutdown` resolves; in-flight calls then have the drain timeout to finish
/// before the remaining connections are closed.
pub async fn serve<S: Store>(
    store: S,
    listener: TcpListener,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let limits = options.limits;
    let (stop_streams, shutdown_rx) = watch::channel(false);
    let state = AppState {
        auth: Authenticator::new(store.clone(), options.admin_token.as_deref()),
        access_log: AccessLog::start(store.clone()),
        store: store.clone(),
        heartbeat: options.heartbeat,
        shutdown: shutdown_rx,
        stream_slots: StreamSlots::new(limits.streams_per_principal),
        device_rate: Arc::new(DeviceRate::new(limits.device_burst_items, limits.device_items_per_second)),
        max_stream_users: limits.max_stream_users,
        stale_after_days: options.stale_after_days,
    };
    let access_log = state.access_log.clone();
    let (draining, close) = (CancellationToken::new(), CancellationToken::new());
    // Open streams never finish on their own: end them when shutdown begins, so the
    // graceful shutdown can complete once unary calls are done.
    let shutdown = {
        let draining = draining.clone();
        async move {
            shutdown.await;
            let _ = stop_streams.send(true);
            draining.cancel();
        }
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    let probe = tokio::spawn(watch_database(store, reporter));
    let reloads = options.tls.clone().map(|tls| tokio::spawn(reload_on_hangup(tls)));
    // The error details (BadRequest, RetryInfo) are described too, so that grpcurl
    // `-format-error` shows them as JSON rather than bytes.
    let descriptors =
        [FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET, tonic_types::pb::FILE_DESCRIPTOR_SET];
    let reflection = || {
        descriptors.iter().fold(tonic_reflection::server::Builder::configure(), |builder, set| {
            builder.register_encoded_file_descriptor_set(set)
        })
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let services = Routes::new(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(IngestServiceServer::new(IngestApi::new(state.clone())))
        .add_service(EntryServiceServer::new(EntryApi::new(state.clone())))
        .add_service(PairingServiceServer::new(PairingApi::new(state.clone(), &options.pairing)))
        .add_service(RosterServiceServer::new(RosterApi::new(state.clone())))
        .add_service(PrivacyServiceServer::new(PrivacyApi::new(state.clone())))
        .add_service(AdminServiceServer::new(AdminApi::new(state)));
    let server = Server::builder()
        // HTTP/1.1 too: browsers speak gRPC-Web over it, and fetch the dashboard with it.
        .accept_http1(true)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .layer(web::cors(&options.cors_origins))
        .layer(observe::ObserveLayer)
        .layer(deadline::DeadlineLayer(limits.request_timeout))
        // gRPC-Web for the services only: it answers any other HTTP/1.1 request with 400.
        .add_routes(Routes::from(web::routes(services.into_axum_router().layer(GrpcWebLayer::new()))))
        .serve_with_incoming_shutdown(connections::accept(listener, close.clone(), options.tls), shutdown);
    tokio::pin!(server);
    let result = tokio::select! {
        result = &mut server => result,
        () = async { draining.cancelled().await; tokio::time::sleep(limits.drain_timeout).await } => {
            tracing::warn!(drain_secs = limits.drain_timeout.as_secs_f64(), "drain deadline passed: closing the remaining connections");
            close.cancel();
            server.await
        }
    };
    probe.abort();
    if let Some(reloads) = reloads {
        reloads.abort();
    }
    // The reads answered before the shutdown are in the log before the process exits.
    access_log.flushed().await;
    Ok(result?)
}

/// Reloads the TLS certificate and key on each SIGHUP; open connections keep theirs.
#[cfg(unix)]
async fn reload_on_hangup(tls: Arc<Tls>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP: the TLS certificate will not be reloaded");
        return;
    };
    while hangups.recv().await.is_some() {
        let cert = tls.files().cert.display().to_string();
        match tls.reload() {
            Ok(()) => tracing::info!(%cert, "TLS certificate reloaded"),
            Err(error) => {
                tracing::error!(%cert, error = format!("{error:#}"), "TLS certificate not reloaded; the previous one stays")
            }
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(_tls: Arc<Tls>) {}

/// Keeps health in step with the database: NOT_SERVING while it cannot be reached; and
/// samples the pools' use for the metrics.
async fn watch_database<S: Store>(store: S, reporter: HealthReporter) {
    let services = [
        "",
        "coachfit.v1.IngestService",
        "coachfit.v1.EntryService",
        "coachfit.v1.PairingService",
        "coachfit.v1.RosterService",
        "coachfit.v1.AdminService",
        "coachfit.v1.PrivacyService",
    ];
    let mut last = None;
    loop {
        for usage in store.pool_use() {
            let busy = (usage.open as usize).saturating_sub(usage.idle);
            metrics::gauge!(POOL_CONNECTIONS, "pool" => usage.pool, "state" => "busy").set(busy as f64);
            metrics::gauge!(POOL_CONNECTIONS, "pool" => usage.pool, "state" => "idle").set(usage.idle as f64);
        }
        let status = match store.ping().await {
            Ok(()) => ServingStatus::Serving,
            Err(e) => {
                tracing::warn!(error = %e, "database health probe failed");
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            for service in services {
                reporter.set_service_status(service, status).await;
            }
            last = Some(status);
        }
        tokio::time::sleep(HEALTH_PROBE_INTERVAL).await;
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed by this call, not when the
/// future is first polled: the server answers calls before it first polls its shutdown
/// future, and a SIGTERM in between would otherwise kill the process on the spot.
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        tokio::select! {
            _ = received(interrupt) => {},
            _ = received(terminate) => {},
        }
        tracing::info!("shutting down: finishing in-flight calls");
    }
}

/// Waits for `signal`; for ever if its handler could not be installed.
#[cfg(unix)]
async fn received(signal: std::io::Result<tokio::signal::unix::Signal>) {
    match signal {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing in-flight calls");
    }
}

//! The tonic server: CoachFit's services, health, reflection, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::api::admin::AdminApi;
use crate::api::auth::Authenticator;
use crate::api::entry::EntryApi;
use crate::api::ingest::IngestApi;
use crate::api::pairing::{PairingApi, PairingOptions};
use crate::api::AppState;
use crate::domain::priority::PriorityRule;
use crate::proto::v1::admin_service_server::AdminServiceServer;
use crate::proto::v1::entry_service_server::EntryServiceServer;
use crate::proto::v1::ingest_service_server::IngestServiceServer;
use crate::proto::v1::pairing_service_server::PairingServiceServer;
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::store::Store;

/// How often health re-checks the database.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// What a server needs besides its store and socket.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// When set, this bearer token is an admin principal.
    pub admin_token: Option<String>,
    pub rule: PriorityRule,
    /// How long a `StreamEntries` stream may be idle before it gets a heartbeat.
    pub heartbeat: Duration,
    pub pairing: PairingOptions,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            admin_token: None,
            rule: PriorityRule::default(),
            heartbeat: Duration::from_secs(5),
            pairing: PairingOptions::default(),
        }
    }
}

/// Binds `addr` (port 0 picks a free port) and returns the listener and its address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves until `shutdown` resolves; in-flight calls then finish before it returns.
pub async fn serve<S: Store>(
    store: S,
    listener: TcpListener,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (stop_streams, shutdown_rx) = watch::channel(false);
    let state = AppState {
        auth: Authenticator::new(store.clone(), options.admin_token.as_deref()),
        store: store.clone(),
        rule: Arc::new(options.rule),
        heartbeat: options.heartbeat,
        shutdown: shutdown_rx,
    };
    // Open streams never finish on their own: end them when shutdown begins, so the
    // graceful shutdown can complete once unary calls are done.
    let shutdown = async move {
        shutdown.await;
        let _ = stop_streams.send(true);
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    let probe = tokio::spawn(watch_database(store, reporter));
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let result = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .trace_fn(|request| tracing::info_span!("rpc", path = %request.uri().path()))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(IngestServiceServer::new(IngestApi::new(state.clone())))
        .add_service(EntryServiceServer::new(EntryApi::new(state.clone())))
        .add_service(PairingServiceServer::new(PairingApi::new(state.clone(), &options.pairing)))
        .add_service(AdminServiceServer::new(AdminApi::new(state)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    probe.abort();
    Ok(result?)
}

/// Keeps health in step with the database: NOT_SERVING while it cannot be reached.
async fn watch_database<S: Store>(store: S, reporter: HealthReporter) {
    let services = [
        "",
        "coachfit.v1.IngestService",
        "coachfit.v1.EntryService",
        "coachfit.v1.PairingService",
        "coachfit.v1.AdminService",
    ];
    let mut last = None;
    loop {
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

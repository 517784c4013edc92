//! The listener's side of the server: accepting connections without spinning when the
//! process is out of file descriptors, their TLS handshakes (`tls`), and closing every
//! connection once a shutdown's drain deadline has passed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::tls::Tls;

/// Waits after a failed accept, doubling from the first to the last.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// How long a client has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const HANDSHAKEN_QUEUE: usize = 64;

/// The connections the server serves.
pub type Connections = Pin<Box<dyn Stream<Item = io::Result<Connection>> + Send>>;

/// Accepted connections (with `tls`, once their handshake is done), each closed when
/// `close` is cancelled.
pub fn accept(listener: TcpListener, close: CancellationToken, tls: Option<Arc<Tls>>) -> Connections {
    let accepted = accept_tcp(listener);
    match tls {
        None => Box::pin(accepted.map(move |stream| Ok(Connection::new(Io::Plain(stream), &close)))),
        Some(tls) => Box::pin(handshaken(accepted, tls, close)),
    }
}

/// Connections whose TLS handshake completed. Each handshake runs in a task of its own, for
/// at most `HANDSHAKE_TIMEOUT`: a client that connects and sends nothing holds up nobody.
/// Accepting stops when the server drops the stream.
fn handshaken(
    accepted: impl Stream<Item = TcpStream> + Send + 'static,
    tls: Arc<Tls>,
    close: CancellationToken,
) -> impl Stream<Item = io::Result<Connection>> {
    let (done, handshaken) = mpsc::channel(HANDSHAKEN_QUEUE);
    tokio::spawn(async move {
        let mut accepted = Box::pin(accepted);
        loop {
            let stream = tokio::select! {
                () = done.closed() => return,
                next = accepted.next() => match next {
                    Some(stream) => stream,
                    None => return,
                },
            };
            let (tls, done, close) = (tls.clone(), done.clone(), close.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = done.send(Ok(Connection::new(Io::Tls(Box::new(stream)), &close))).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(handshaken)
}

/// Accepted TCP connections. An accept that fails for the process (no descriptors, no
/// memory) is logged and retried after a growing pause instead of at once: at once, the
/// loop spins at full CPU while the limit lasts.
fn accept_tcp(listener: TcpListener) -> impl Stream<Item = TcpStream> + Send + 'static {
    futures::stream::unfold(listener, |listener| async move {
        let mut backoff = ACCEPT_BACKOFF.0;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, listener));
                }
                // The peer gave up before we took the connection: nothing wrong here.
                Err(e) if is_peer_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot accept connections");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                }
            }
        }
    })
}

fn is_peer_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

/// A client's connection that fails every read and write once it is closed, so that the
/// connection's task ends and its socket is released even while the client neither reads
/// nor sends.
pub struct Connection {
    stream: Io,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
}

/// A connection's bytes: in the clear, or through TLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connection {
    /// Each connection waits on a child token of its own: every read and write polls it, and
    /// a shared token would put all connections' polls on one waiter list (one mutex).
    fn new(stream: Io, close: &CancellationToken) -> Self {
        Connection { stream, closed: Box::pin(close.child_token().cancelled_owned()) }
    }

    /// Ready with an error once closed; otherwise registers the task to be woken on close.
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        self.closed
            .as_mut()
            .poll(cx)
            .map(|()| io::Error::new(io::ErrorKind::ConnectionAborted, "server drain deadline"))
    }
}

impl AsyncRead for Connection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Poll::Ready(closed) = self.poll_closed(cx) {
            return Poll::Ready(Err(closed));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Poll::Ready(closed) = self.poll_closed(cx) {
            return Poll::Ready(Err(closed));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Poll::Ready(closed) = self.poll_closed(cx) {
            return Poll::Ready(Err(closed));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    /// The TCP peer, with or without TLS (the pairing throttle keys on its address).
    fn connect_info(&self) -> TcpConnectInfo {
        match &self.stream {
            Io::Plain(stream) => stream.connect_info(),
            Io::Tls(stream) => stream.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Raises this process's open-file soft limit to its hard limit: each client holds a
/// descriptor, and a distribution's default soft limit (often 1,024) is reached long
/// before memory or CPU are.
#[cfg(target_os = "linux")]
pub fn raise_open_file_limit() {
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max {
            return;
        }
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            tracing::debug!(from = limit.rlim_cur, to = limit.rlim_max, "raised the open-file limit");
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn raise_open_file_limit() {}

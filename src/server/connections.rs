//! The listener's side of the server: accepting connections without spinning when the
//! process is out of file descriptors, and closing every connection once a shutdown's
//! drain deadline has passed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Waits after a failed accept, doubling from the first to the last.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// Accepted connections, each closed when `close` is cancelled. An accept that fails for
/// the process (no descriptors, no memory) is logged and retried after a growing pause
/// instead of at once: at once, the loop spins at full CPU while the limit lasts.
pub fn accept(listener: TcpListener, close: CancellationToken) -> impl Stream<Item = io::Result<Connection>> {
    futures::stream::unfold((listener, close), |(listener, close)| async move {
        let mut backoff = ACCEPT_BACKOFF.0;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let connection = Connection::new(stream, &close);
                    return Some((Ok(connection), (listener, close)));
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

/// A client's TCP connection that fails every read and write once it is closed, so that
/// the connection's task ends and its socket is released even while the client neither
/// reads nor sends.
pub struct Connection {
    stream: TcpStream,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Connection {
    /// Each connection waits on a child token of its own: every read and write polls it, and
    /// a shared token would put all connections' polls on one waiter list (one mutex).
    fn new(stream: TcpStream, close: &CancellationToken) -> Self {
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

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
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

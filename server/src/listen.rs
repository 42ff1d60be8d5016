//! Accepting connections on both listeners: a cap on open connections, TCP_NODELAY, an idle
//! timeout on every connection's socket and, for HTTP/1, a request-head read timeout.
//!
//! | limit | config key | default | what a client sees |
//! |---|---|---|---|
//! | open connections, both listeners together | `max_connections` | 4,096 | the connection is closed as soon as accepted (counted in `engram_api_connections_refused_total`) |
//! | no byte read or written on a connection | `idle_timeout_secs` | 120 | the connection is closed (`engram_api_connections_timed_out_total`) |
//! | an HTTP/1 request head (request line and headers), and an idle keep-alive connection waiting for the next one | `header_read_timeout_secs` | 30 | the connection is closed (hyper's `header_read_timeout`) |
//! | gRPC (HTTP/2) keep-alive ping interval and ack timeout | `grpc_keepalive_interval_secs`, `grpc_keepalive_timeout_secs` | 30, 20 | a peer that stops answering pings is disconnected; a live idle stream is kept (its ping acks are traffic) |
//!
//! The accept loop is ours (hyper-util serves each HTTP connection, tonic each gRPC one); the
//! timeouts are hyper's and tokio's timers. With `[tls]` on, each connection's TLS handshake
//! ([`crate::tls`]) runs after it is admitted and outside the accept loop; the idle timeout and
//! the cap apply to the encrypted connection underneath.

use crate::config::ServerConfig;
use crate::tls::Tls;
use engram_telemetry::Telemetry;
use engram_telemetry::events::ConnectionEvents;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;

/// Index of `http` in the `protocol` label values.
pub const HTTP: usize = 0;
/// Index of `grpc` in the `protocol` label values.
pub const GRPC: usize = 1;

/// The connection cap shared by both listeners, and each listener's connection metrics.
#[derive(Clone)]
pub struct ConnectionLimits {
    permits: Arc<Semaphore>,
    idle: Duration,
    events: [ConnectionEvents; 2],
}

impl ConnectionLimits {
    /// Limits from `config` (`max_connections`, `idle_timeout_secs`), registering the
    /// connection series of both listeners.
    pub fn new(config: &ServerConfig, telemetry: &Telemetry) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(config.max_connections)),
            idle: Duration::from_secs(config.idle_timeout_secs),
            events: [ConnectionEvents::register(telemetry, HTTP), ConnectionEvents::register(telemetry, GRPC)],
        }
    }

    /// Admits an accepted connection on listener `protocol` ([`HTTP`] or [`GRPC`]) if fewer
    /// than `max_connections` are open; otherwise closes it at once and counts it.
    pub fn admit(&self, stream: TcpStream, protocol: usize) -> Option<IdleIo<TcpStream>> {
        let events = &self.events[protocol];
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            events.refused();
            tracing::debug!(protocol, "connection refused: max_connections are open");
            return None;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        events.opened();
        Some(IdleIo::new(stream, self.idle, Open { _permit: permit, events: events.clone() }))
    }

    /// The metrics of listener `protocol`.
    pub fn events(&self, protocol: usize) -> &ConnectionEvents {
        &self.events[protocol]
    }
}

/// Held by an admitted connection: its place under the cap and its count in the open gauge.
struct Open {
    _permit: OwnedSemaphorePermit,
    events: ConnectionEvents,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.events.closed();
    }
}

/// A connection's socket that fails with `TimedOut` once no byte has been read or written
/// for the idle timeout (checked when the connection is polled and would wait).
pub struct IdleIo<T> {
    io: T,
    idle: Duration,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
    open: Open,
}

impl<T> IdleIo<T> {
    fn new(io: T, idle: Duration, open: Open) -> Self {
        let now = Instant::now();
        Self { io, idle, last_activity: now, timer: Box::pin(tokio::time::sleep_until(now + idle)), open }
    }

    /// Called when the socket would wait: `Err(TimedOut)` once idle for too long, else arms the
    /// timer so the connection is polled again when it may have become idle.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            let deadline = self.last_activity + self.idle;
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            if Instant::now() >= self.last_activity + self.idle {
                self.open.events.timed_out();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for longer than idle_timeout_secs",
                ));
            }
        }
    }

    /// Records progress of `n` bytes, or arms the idle check when the socket would wait.
    fn track<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
        moved: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(Ok(r)) => {
                if moved(&r) {
                    self.last_activity = Instant::now();
                }
                Poll::Ready(Ok(r))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.check_idle(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let after = buf.filled().len();
        this.track(cx, polled, |_| after > before)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.track(cx, polled, |&n| n > 0)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.track(cx, polled, |&n| n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.track(cx, polled, |_| false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl IdleIo<TcpStream> {
    /// The client's address (`None` if the socket is already gone).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.io.peer_addr().ok()
    }
}

impl tonic::transport::server::Connected for IdleIo<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Accepts the next connection the cap admits; accept errors (out of file descriptors, a
/// connection reset before it was accepted) are logged and waited out briefly, never returned,
/// so a listener never stops serving.
pub async fn accept(listener: &TcpListener, limits: &ConnectionLimits, protocol: usize) -> IdleIo<TcpStream> {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if let Some(io) = limits.admit(stream, protocol) {
                    return io;
                }
            }
            Err(e) => {
                tracing::warn!(protocol, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// An admitted connection, plaintext or after its TLS handshake.
pub enum Conn {
    /// `[tls]` off.
    Plain(IdleIo<TcpStream>),
    /// `[tls]` on: the decrypted stream.
    Tls(Box<TlsStream<IdleIo<TcpStream>>>),
}

impl Conn {
    /// The client's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Conn::Plain(io) => io.peer_addr(),
            Conn::Tls(s) => s.get_ref().0.peer_addr(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(io) => io.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// tonic sees the TCP connection's addresses under TLS too (what `grpc::auth` and the audit
/// log read).
impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Conn::Plain(io) => io.connect_info(),
            Conn::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}

/// Admitted connections' TLS handshakes in progress at once on the gRPC listener; more wait in
/// the listen backlog.
const GRPC_HANDSHAKES: usize = 256;

/// The gRPC listener's connections as the stream tonic serves from: with TLS, up to
/// 256 handshakes run at once and connections are yielded as theirs finish; a failed
/// handshake only closes its connection.
pub fn grpc_incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    tls: Option<Tls>,
) -> impl futures::Stream<Item = io::Result<Conn>> {
    use futures::StreamExt;
    let admitted = futures::stream::unfold((listener, limits), |(listener, limits)| async move {
        let io = accept(&listener, &limits, GRPC).await;
        Some((io, (listener, limits)))
    });
    admitted
        .map(move |io| {
            let tls = tls.clone();
            async move {
                match tls {
                    None => Some(Conn::Plain(io)),
                    Some(tls) => tls.accept(io, GRPC).await.map(|s| Conn::Tls(Box::new(s))),
                }
            }
        })
        .buffer_unordered(GRPC_HANDSHAKES)
        .filter_map(|conn| async move { conn.map(Ok) })
}

/// Serves `router` on `listener` with hyper-util (HTTP/1 and HTTP/2), each connection under
/// `limits` and HTTP/1's `header_read_timeout` (after its TLS handshake, in its own task, when
/// `tls` is set), until `shutdown` resolves; then stops
/// accepting, lets open connections finish their requests (closing idle keep-alive ones), and
/// resolves when all are closed.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    header_read_timeout: Duration,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let events = limits.events(HTTP).clone();
    tokio::pin!(shutdown);
    loop {
        let io = tokio::select! {
            io = accept(&listener, &limits, HTTP) => io,
            () = &mut shutdown => break,
        };
        // The client's address, for the audit log (axum's `ConnectInfo`).
        let peer = io.peer_addr();
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                if let Some(peer) = peer {
                    req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                }
                req
            },
        ));
        let (builder, watcher, events, tls) = (builder.clone(), graceful.watcher(), events.clone(), tls.clone());
        tokio::spawn(async move {
            let conn = match tls {
                None => Conn::Plain(io),
                Some(tls) => match tls.accept(io, HTTP).await {
                    Some(s) => Conn::Tls(Box::new(s)),
                    None => return,
                },
            };
            let conn = watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(conn), service).into_owned());
            if let Err(e) = conn.await {
                let timed_out = e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout);
                if timed_out {
                    events.timed_out();
                }
                tracing::debug!("HTTP connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

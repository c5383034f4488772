//! Bytes queued for each client, so every socket's outgoing queue is bounded in bytes
//! (socketioxide bounds it in packets only: 4,096 frames of up to a megabyte each).
//!
//! Each Engine.IO session (all its namespace sockets share one queue) has a [`Meter`]. A frame is
//! charged to it when the gateway queues it (`sockets::emit`, and the adapter's
//! [`adapter_redis::DeliveryObserver`] for broadcasts from this node or another), and released
//! when the transport takes bytes off the queue to send them:
//! - WebSocket: bytes written on the session's TCP connection ([`MeteredListener`]);
//! - long-polling: bytes of the session's GET responses ([`track_transport`]).
//!
//! Released bytes include framing and frames the gateway never charged (pings), so a meter
//! never goes below zero: what it shows is at most what is really queued, and a client that
//! stops reading sees it grow by every frame sent to it.

use std::collections::HashMap;
use std::hash::Hash;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt as _;
use socketioxide::socket::Sid;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Bytes queued for one Engine.IO session.
#[derive(Debug, Default)]
pub struct Meter {
    queued: AtomicU64,
}

impl Meter {
    /// Adds a frame of `bytes`; returns the bytes now queued.
    pub fn charge(&self, bytes: u64) -> u64 {
        self.queued
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes)
    }

    /// Takes `bytes` off (sent), never below zero.
    pub fn release(&self, bytes: u64) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(bytes))
            });
    }

    /// Bytes queued now.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }
}

/// The meter of a socket's session, kept in the socket's extensions.
#[derive(Debug, Clone)]
pub struct SessionMeter(pub Arc<Meter>);

/// One accepted TCP connection: once it carries a WebSocket session, what it writes is released
/// from that session's meter.
#[derive(Debug, Default)]
pub struct ConnTap {
    meter: OnceLock<Arc<Meter>>,
}

impl ConnTap {
    /// Releases what this connection writes from `meter` (the first binding wins: a
    /// connection carries at most one WebSocket session).
    pub fn bind(&self, meter: Arc<Meter>) {
        let _ = self.meter.set(meter);
    }

    fn wrote(&self, bytes: usize) {
        if let Some(meter) = self.meter.get() {
            meter.release(bytes as u64);
        }
    }
}

/// A map of weak references, swept of dead entries as it grows.
#[derive(Debug)]
struct WeakMap<K, V> {
    map: HashMap<K, Weak<V>>,
    sweep_at: usize,
}

impl<K, V> Default for WeakMap<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            sweep_at: 1024,
        }
    }
}

impl<K: Hash + Eq, V> WeakMap<K, V> {
    fn get(&self, key: &K) -> Option<Arc<V>> {
        self.map.get(key).and_then(Weak::upgrade)
    }

    fn insert(&mut self, key: K, value: &Arc<V>) {
        if self.map.len() >= self.sweep_at {
            self.map.retain(|_, v| v.strong_count() > 0);
            self.sweep_at = (self.map.len() * 2).max(1024);
        }
        self.map.insert(key, Arc::downgrade(value));
    }
}

/// Every session meter and connection tap of a node. Entries live as long as someone holds
/// them: the sockets of a session (its [`SessionMeter`]s) and the connection carrying it.
/// Read-mostly: every broadcast reads the sessions of its receivers.
#[derive(Debug, Default)]
pub struct Meters {
    sessions: RwLock<WeakMap<Sid, Meter>>,
    conns: RwLock<WeakMap<SocketAddr, ConnTap>>,
}

fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

impl Meters {
    /// The meter of session `sid`, created if it has none.
    pub fn session(&self, sid: Sid) -> Arc<Meter> {
        let mut sessions = write(&self.sessions);
        if let Some(meter) = sessions.get(&sid) {
            return meter;
        }
        let meter = Arc::new(Meter::default());
        sessions.insert(sid, &meter);
        meter
    }

    /// The meter of session `sid`, if it has one.
    pub fn find(&self, sid: Sid) -> Option<Arc<Meter>> {
        read(&self.sessions).get(&sid)
    }

    /// Charges a frame of `bytes` to each of `sids`; returns those whose queue is then over
    /// `budget` (sessions without a meter are not counted yet: not admitted to a namespace).
    pub fn charge_all(&self, sids: &[Sid], bytes: u64, budget: u64) -> Vec<Sid> {
        let sessions = read(&self.sessions);
        sids.iter()
            .filter(|sid| {
                sessions
                    .get(sid)
                    .is_some_and(|meter| meter.charge(bytes) > budget)
            })
            .copied()
            .collect()
    }

    /// The tap of the open connection from `peer`.
    pub fn conn(&self, peer: SocketAddr) -> Option<Arc<ConnTap>> {
        read(&self.conns).get(&peer)
    }

    fn open_conn(&self, peer: SocketAddr) -> Arc<ConnTap> {
        let tap = Arc::new(ConnTap::default());
        write(&self.conns).insert(peer, &tap);
        tap
    }

    fn close_conn(&self, peer: SocketAddr, tap: &Arc<ConnTap>) {
        let mut conns = write(&self.conns);
        if conns
            .map
            .get(&peer)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(tap)))
        {
            conns.map.remove(&peer);
        }
    }
}

/// Gives a socket its session's meter; binds a WebSocket session's connection to it when the
/// socket's handshake request is that WebSocket (a session upgraded from long-polling is bound
/// by [`track_transport`] when it upgrades).
pub fn attach(meters: &Meters, socket: &socketioxide::socket::Socket<crate::Adapter>) {
    let meter = meters.session(socket.id);
    let parts = socket.req_parts();
    let direct_ws = parts
        .uri
        .query()
        .is_some_and(|q| query_value(q, "transport") == Some("websocket"));
    if direct_ws
        && let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>()
        && let Some(tap) = meters.conn(*peer)
    {
        tap.bind(Arc::clone(&meter));
    }
    socket.extensions.insert(SessionMeter(meter));
}

fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(k, v)| (k == key).then_some(v))
}

/// Middleware before Engine.IO: releases the bytes of long-polling responses from their
/// session's meter, and binds a connection that upgrades a session to WebSocket to its meter.
pub async fn track_transport(
    State(meters): State<Arc<Meters>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(query) = req.uri().query() else {
        return next.run(req).await;
    };
    let sid = query_value(query, "sid").and_then(|s| s.parse::<Sid>().ok());
    let Some(sid) = sid else {
        return next.run(req).await;
    };
    match query_value(query, "transport") {
        Some("polling") if req.method() == http::Method::GET => {
            let Some(meter) = meters.find(sid) else {
                return next.run(req).await;
            };
            let (parts, body) = next.run(req).await.into_parts();
            let counted = body.into_data_stream().inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    meter.release(chunk.len() as u64);
                }
            });
            Response::from_parts(parts, Body::from_stream(counted))
        }
        Some("websocket") => {
            if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>()
                && let Some(tap) = meters.conn(*peer)
            {
                tap.bind(meters.session(sid));
            }
            next.run(req).await
        }
        _ => next.run(req).await,
    }
}

/// The node's TCP listener, counting what each connection writes (see [`ConnTap`]).
#[derive(Debug)]
pub struct MeteredListener {
    inner: TcpListener,
    meters: Arc<Meters>,
}

impl MeteredListener {
    /// Wraps `inner`; connections register in `meters`.
    pub fn new(inner: TcpListener, meters: Arc<Meters>) -> Self {
        Self { inner, meters }
    }
}

impl axum::serve::Listener for MeteredListener {
    type Io = MeteredStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, peer) = axum::serve::Listener::accept(&mut self.inner).await;
        let tap = self.meters.open_conn(peer);
        let stream = MeteredStream {
            tcp,
            tap,
            peer,
            meters: Arc::clone(&self.meters),
        };
        (stream, peer)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection whose writes are released from the meter its tap is bound to.
#[derive(Debug)]
pub struct MeteredStream {
    tcp: TcpStream,
    tap: Arc<ConnTap>,
    peer: SocketAddr,
    meters: Arc<Meters>,
}

impl MeteredStream {
    /// The TCP stream (socket options).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    fn counted(&self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = written {
            self.tap.wrote(n);
        }
        written
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        self.meters.close_conn(self.peer, &self.tap);
    }
}

impl AsyncRead for MeteredStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for MeteredStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.counted(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.counted(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_counts_what_is_queued_and_never_goes_below_zero() {
        let m = Meter::default();
        assert_eq!(m.charge(100), 100);
        assert_eq!(m.charge(50), 150);
        m.release(120);
        assert_eq!(m.queued(), 30);
        // Framing and pings are released too but were never charged: no credit accrues.
        m.release(1000);
        assert_eq!(m.queued(), 0);
        assert_eq!(m.charge(10), 10);
    }

    #[test]
    fn charge_all_reports_sessions_over_budget_and_skips_unknown_ones() {
        let meters = Meters::default();
        let (a, b, unknown) = (Sid::new(), Sid::new(), Sid::new());
        let (ma, _mb) = (meters.session(a), meters.session(b));
        ma.charge(900);
        assert_eq!(meters.charge_all(&[a, b, unknown], 200, 1000), vec![a]);
        assert!(meters.find(unknown).is_none());
        drop(ma);
        assert!(meters.find(a).is_none(), "a meter lives only while held");
    }

    #[test]
    fn query_values_are_found_by_exact_key() {
        let q = "EIO=4&transport=polling&sid=abc&t=1";
        assert_eq!(query_value(q, "transport"), Some("polling"));
        assert_eq!(query_value(q, "sid"), Some("abc"));
        assert_eq!(query_value(q, "id"), None);
    }
}

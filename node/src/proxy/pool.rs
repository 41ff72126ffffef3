//! Upstream connections: connect (and TLS handshake) within the connect
//! timeout, HTTP/1.1 keep-alive reuse, and one multiplexed HTTP/2 connection
//! per peer (h2c prior knowledge, or h2 over TLS for grpcs).
//!
//! The pool lives for the whole process, across config reloads, keyed by
//! peer address and protocol. An HTTP/1.1 connection goes back to the pool
//! only once its response body has been read to the end (see
//! `body::OnEnd`); one abandoned mid-body is closed, never reused.
//!
//! Idle connections are closed in the background, the way nginx's
//! upstream keepalive cache does: a reaper task sweeps the idle lists every
//! `REAP_EVERY` (or the idle timeout, when shorter) and closes each one that
//! was idle for the idle timeout or that the upstream closed (or wrote to)
//! meanwhile, so no socket lingers half-closed (`CLOSE_WAIT`) until a
//! checkout happens to meet it, and a peer no longer used (a removed target,
//! an old DNS answer) keeps no connection at all.
//!
//! Locking: one short critical section per checkout/checkin on a sharded
//! map; never held across an await, and no socket is closed inside one.

use crate::proxy::body::ProxyBody;
use crate::proxy::tls::UpstreamTls;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wire {
    Http1,
    /// HTTP/2: prior knowledge in cleartext (grpc), ALPN h2 over TLS (grpcs).
    Http2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: SocketAddr,
    pub wire: Wire,
    /// 0 for plaintext; otherwise identifies the TLS configuration and the
    /// server name, so connections are shared only between equal settings.
    pub tls: u64,
}

/// How to secure a new connection.
pub struct TlsTarget<'a> {
    pub tls: &'a UpstreamTls,
    pub server_name: ServerName<'static>,
}

impl TlsTarget<'_> {
    /// The `PoolKey::tls` value for this target.
    pub fn key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.tls.id, &self.server_name).hash(&mut h);
        h.finish() | 1
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("connect to {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
}

impl ConnectError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, ConnectError::Timeout { .. })
    }
}

/// A connection checked out of the pool.
pub enum Conn {
    Http1 {
        sender: http1::SendRequest<ProxyBody>,
        key: PoolKey,
        /// True when it came from the idle list (a failure before any byte
        /// was answered may be a stale keep-alive: retry on a fresh one).
        reused: bool,
    },
    H2 {
        sender: http2::SendRequest<ProxyBody>,
    },
}

/// A plain HTTP/1.1 upstream connection that `proxy::direct` reads and
/// writes itself (no hyper connection task).
pub struct DirectConn {
    pub stream: TcpStream,
    /// True when it came from the idle list.
    pub reused: bool,
}

struct Idle<T> {
    conn: T,
    since: Instant,
}

type IdleMaps<T> = [Mutex<KeyMap<Vec<Idle<T>>>>; SHARDS];

const SHARDS: usize = 16;

/// How often the reaper sweeps the idle lists (at most; see
/// `ConnectionPool::new`).
pub const REAP_EVERY: Duration = Duration::from_secs(1);

/// A fast non-cryptographic hash (FxHash's mixing) for pool keys: they
/// come from the config (upstream addresses), not from clients, so there
/// is nothing to gain from SipHash's flood resistance, and it was a visible
/// per-request cost (two hashes per checkout and checkin).
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n.into());
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(n.into());
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n.into());
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap<V> = HashMap<PoolKey, V, std::hash::BuildHasherDefault<KeyHasher>>;

pub struct ConnectionPool {
    h1_idle: IdleMaps<http1::SendRequest<ProxyBody>>,
    direct_idle: IdleMaps<TcpStream>,
    h2: [Mutex<KeyMap<http2::SendRequest<ProxyBody>>>; SHARDS],
    max_idle_per_peer: usize,
    idle_timeout: Duration,
}

impl ConnectionPool {
    /// A pool keeping at most `max_idle_per_peer` idle HTTP/1.1 connections
    /// per peer (0: none, every connection is closed after its exchange),
    /// each for at most `idle_timeout`. Called inside a tokio runtime, it
    /// also starts the reaper, which ends with the pool.
    pub fn new(max_idle_per_peer: usize, idle_timeout: Duration) -> Arc<Self> {
        let pool = Arc::new(ConnectionPool {
            h1_idle: std::array::from_fn(|_| Mutex::new(KeyMap::default())),
            direct_idle: std::array::from_fn(|_| Mutex::new(KeyMap::default())),
            h2: std::array::from_fn(|_| Mutex::new(KeyMap::default())),
            max_idle_per_peer,
            idle_timeout,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let every = REAP_EVERY.min(idle_timeout).max(Duration::from_millis(10));
            runtime.spawn(reap_until_dropped(Arc::downgrade(&pool), every));
        }
        pool
    }

    /// Close every idle connection that was idle for the idle timeout or
    /// that its upstream closed, wrote to or broke, and forget HTTP/2
    /// connections that ended. Returns how many idle HTTP/1.1 connections
    /// were closed. (The reaper calls this; so can tests.)
    pub fn reap_idle(&self) -> usize {
        let now = Instant::now();
        let closed = reap_shards(&self.h1_idle, |i| self.keeps(i, now, h1_is_usable))
            + reap_shards(&self.direct_idle, |i| {
                self.keeps(i, now, idle_stream_is_quiet)
            });
        for shard in &self.h2 {
            let ended: Vec<_> = {
                let mut map = shard.lock();
                map.extract_if(|_, s| s.is_closed()).collect()
            };
            drop(ended);
        }
        closed
    }

    fn shard(key: &PoolKey) -> usize {
        use std::hash::{Hash, Hasher};
        let mut h = KeyHasher::default();
        key.hash(&mut h);
        // The high bits are the best mixed.
        (h.finish() >> 32) as usize % SHARDS
    }

    /// A ready connection to `key`: an idle pooled one, or a new one.
    pub async fn checkout(
        &self,
        key: PoolKey,
        tls: Option<TlsTarget<'_>>,
        connect_timeout: Duration,
    ) -> Result<Conn, ConnectError> {
        let timed_out = || ConnectError::Timeout {
            addr: key.addr,
            timeout: connect_timeout,
        };
        match key.wire {
            Wire::Http1 => {
                if let Some(sender) = self.take_idle_h1(&key) {
                    return Ok(Conn::Http1 {
                        sender,
                        key,
                        reused: true,
                    });
                }
                let sender = tokio::time::timeout(connect_timeout, self.connect_h1(key, tls))
                    .await
                    .map_err(|_| timed_out())??;
                Ok(Conn::Http1 {
                    sender,
                    key,
                    reused: false,
                })
            }
            Wire::Http2 => {
                let shard = Self::shard(&key);
                {
                    let map = self.h2[shard].lock();
                    if let Some(s) = map.get(&key) {
                        if !s.is_closed() && s.is_ready() {
                            return Ok(Conn::H2 { sender: s.clone() });
                        }
                    }
                }
                let sender = tokio::time::timeout(connect_timeout, self.connect_h2(key, tls))
                    .await
                    .map_err(|_| timed_out())??;
                self.h2[shard].lock().insert(key, sender.clone());
                Ok(Conn::H2 { sender })
            }
        }
    }

    /// The most recently used idle connection that is still fresh and
    /// passes `usable`; older or unusable ones met on the way are dropped.
    fn take_idle<T>(
        &self,
        maps: &IdleMaps<T>,
        key: &PoolKey,
        usable: impl Fn(&T) -> bool,
    ) -> Option<T> {
        let now = Instant::now();
        // Stale ones met on the way are closed after the lock is released.
        let mut stale: Vec<Idle<T>> = Vec::new();
        let found = {
            let mut map = maps[Self::shard(key)].lock();
            let list = map.get_mut(key)?;
            loop {
                match list.pop() {
                    Some(idle) if self.keeps(&idle, now, &usable) => break Some(idle.conn),
                    Some(idle) => stale.push(idle),
                    None => break None,
                }
            }
        };
        drop(stale);
        found
    }

    /// Whether an idle connection may stay pooled (and be handed out): idle
    /// for less than the idle timeout, and `usable`. The one rule of
    /// checkout and the reaper.
    fn keeps<T>(&self, idle: &Idle<T>, now: Instant, usable: impl Fn(&T) -> bool) -> bool {
        now.duration_since(idle.since) < self.idle_timeout && usable(&idle.conn)
    }

    fn put_idle<T>(&self, maps: &IdleMaps<T>, key: PoolKey, conn: T) {
        let mut map = maps[Self::shard(&key)].lock();
        let list = map.entry(key).or_default();
        if list.len() < self.max_idle_per_peer {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn take_idle_h1(&self, key: &PoolKey) -> Option<http1::SendRequest<ProxyBody>> {
        self.take_idle(&self.h1_idle, key, h1_is_usable)
    }

    /// Return an HTTP/1.1 connection whose exchange completed.
    pub fn checkin_h1(&self, key: PoolKey, sender: http1::SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        self.put_idle(&self.h1_idle, key, sender);
    }

    /// A plain HTTP/1.1 connection to `addr` for `proxy::direct`: an idle
    /// one the upstream has not closed, or a new one.
    pub async fn checkout_direct(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<DirectConn, ConnectError> {
        let key = Self::direct_key(addr);
        if let Some(stream) = self.take_idle(&self.direct_idle, &key, idle_stream_is_quiet) {
            return Ok(DirectConn {
                stream,
                reused: true,
            });
        }
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout {
                addr,
                timeout: connect_timeout,
            })?
            .map_err(|source| ConnectError::Io { addr, source })?;
        let _ = stream.set_nodelay(true);
        Ok(DirectConn {
            stream,
            reused: false,
        })
    }

    /// Return a `proxy::direct` connection whose response was read to the
    /// end, with nothing after it.
    pub fn checkin_direct(&self, addr: SocketAddr, stream: TcpStream) {
        self.put_idle(&self.direct_idle, Self::direct_key(addr), stream);
    }

    fn direct_key(addr: SocketAddr) -> PoolKey {
        PoolKey {
            addr,
            wire: Wire::Http1,
            tls: 0,
        }
    }

    /// Number of idle HTTP/1.1 connections to `key` (for tests and status).
    /// (Both kinds: hyper's and `proxy::direct`'s.)
    pub fn idle_count(&self, key: &PoolKey) -> usize {
        let shard = Self::shard(key);
        self.h1_idle[shard].lock().get(key).map_or(0, |l| l.len())
            + self.direct_idle[shard]
                .lock()
                .get(key)
                .map_or(0, |l| l.len())
    }

    /// TCP connect, then the TLS handshake when `tls` is given.
    async fn open(
        addr: SocketAddr,
        tls: Option<TlsTarget<'_>>,
    ) -> Result<TokioIo<Box<dyn Io>>, ConnectError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Io { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(t) => Box::new(
                t.tls
                    .connector
                    .connect(t.server_name, tcp)
                    .await
                    .map_err(|source| ConnectError::Tls { addr, source })?,
            ),
        };
        Ok(TokioIo::new(io))
    }

    async fn connect_h1(
        &self,
        key: PoolKey,
        tls: Option<TlsTarget<'_>>,
    ) -> Result<http1::SendRequest<ProxyBody>, ConnectError> {
        let addr = key.addr;
        let (sender, conn) = http1::Builder::new()
            .handshake(Self::open(addr, tls).await?)
            .await
            .map_err(|source| ConnectError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "upstream http/1.1 connection ended");
            }
        });
        Ok(sender)
    }

    async fn connect_h2(
        &self,
        key: PoolKey,
        tls: Option<TlsTarget<'_>>,
    ) -> Result<http2::SendRequest<ProxyBody>, ConnectError> {
        let addr = key.addr;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(Self::open(addr, tls).await?)
            .await
            .map_err(|source| ConnectError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "upstream http/2 connection ended");
            }
        });
        Ok(sender)
    }
}

/// Sweep `pool`'s idle lists every `every` until the pool is dropped.
async fn reap_until_dropped(pool: std::sync::Weak<ConnectionPool>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; nothing is idle yet.
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let closed = pool.reap_idle();
        if closed > 0 {
            tracing::debug!(closed, "closed idle upstream connections");
        }
    }
}

/// Remove the idle connections that fail `keep` from every shard; they are
/// closed after each shard's lock is released. Returns how many.
fn reap_shards<T>(maps: &IdleMaps<T>, keep: impl Fn(&Idle<T>) -> bool) -> usize {
    let mut closed = 0;
    for shard in maps {
        let gone: Vec<Idle<T>> = {
            let mut map = shard.lock();
            let gone = map
                .values_mut()
                .flat_map(|list| list.extract_if(.., |idle| !keep(idle)))
                .collect();
            map.retain(|_, list| !list.is_empty());
            gone
        };
        closed += gone.len();
    }
    closed
}

fn h1_is_usable(sender: &http1::SendRequest<ProxyBody>) -> bool {
    !sender.is_closed() && sender.is_ready()
}

/// True while nothing (no bytes, no EOF, no error) has arrived on an idle
/// connection, as far as the runtime has seen: an upstream that closed it
/// made it readable. Asks the reactor's readiness, no system call.
fn idle_stream_is_quiet(stream: &TcpStream) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    stream.poll_read_ready(&mut cx).is_pending()
}

/// A plaintext or TLS upstream stream.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A direct connection checked out of `pool` to a fresh listener, and the
    /// upstream's end of it.
    async fn connected(pool: &ConnectionPool) -> (SocketAddr, TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (conn, accepted) = tokio::join!(
            pool.checkout_direct(addr, Duration::from_secs(5)),
            listener.accept()
        );
        let conn = conn.expect("connect");
        assert!(!conn.reused);
        (addr, conn.stream, accepted.expect("accept").0)
    }

    /// Waits (bounded) for the gateway's end of `upstream` to be closed: EOF.
    async fn closed_by_gateway(upstream: &mut TcpStream) -> bool {
        let mut b = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), upstream.read(&mut b)).await,
            Ok(Ok(0))
        )
    }

    #[tokio::test]
    async fn an_idle_connection_the_upstream_closed_is_closed_in_the_background() {
        let pool = ConnectionPool::new(8, Duration::from_secs(60));
        let (addr, stream, mut upstream) = connected(&pool).await;
        pool.checkin_direct(addr, stream);
        assert_eq!(pool.idle_count(&ConnectionPool::direct_key(addr)), 1);
        // The upstream ends its side (as at its own keep-alive timeout) and
        // waits for the gateway's FIN: without the reaper it would wait for a
        // checkout that never comes, its peer socket stuck in CLOSE_WAIT.
        upstream.shutdown().await.expect("shutdown");
        assert!(closed_by_gateway(&mut upstream).await);
        assert_eq!(pool.idle_count(&ConnectionPool::direct_key(addr)), 0);
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let pool = ConnectionPool::new(8, Duration::from_millis(300));
        let (addr, stream, mut upstream) = connected(&pool).await;
        pool.checkin_direct(addr, stream);
        assert!(closed_by_gateway(&mut upstream).await);
        assert_eq!(pool.idle_count(&ConnectionPool::direct_key(addr)), 0);
    }

    #[tokio::test]
    async fn a_quiet_fresh_idle_connection_survives_a_sweep_and_is_reused() {
        let pool = ConnectionPool::new(8, Duration::from_secs(60));
        let (addr, stream, mut upstream) = connected(&pool).await;
        let local = stream.local_addr().expect("local");
        pool.checkin_direct(addr, stream);
        assert_eq!(pool.reap_idle(), 0);
        let again = pool
            .checkout_direct(addr, Duration::from_secs(5))
            .await
            .expect("checkout");
        assert!(again.reused);
        assert_eq!(again.stream.local_addr().expect("local"), local);
        // And it still carries bytes both ways.
        let mut s = again.stream;
        s.write_all(b"ping").await.expect("write");
        let mut b = [0u8; 4];
        upstream.read_exact(&mut b).await.expect("read");
        assert_eq!(&b, b"ping");
    }

    #[tokio::test]
    async fn a_pool_of_size_zero_keeps_nothing() {
        let pool = ConnectionPool::new(0, Duration::from_secs(60));
        let (addr, stream, mut upstream) = connected(&pool).await;
        pool.checkin_direct(addr, stream);
        assert_eq!(pool.idle_count(&ConnectionPool::direct_key(addr)), 0);
        assert!(closed_by_gateway(&mut upstream).await);
    }
}

//! Accept loop and connection handling shared by every HTTP listener of the
//! node (proxy, admin API, demo services).
//!
//! - HTTP/1.1 with keep-alive and upgrades, and HTTP/2 cleartext with prior
//!   knowledge, auto-detected per connection.
//! - Header section read timeout (slowloris) and size limit (-> 431, from
//!   hyper's parser).
//! - Every client socket is wrapped in `h1_guard::H1Guard`, which flags a
//!   request head carrying both `Content-Length` and `Transfer-Encoding` in
//!   the connection's `ConnInfo::framing`. The proxy answers it 400 (with
//!   its request id); the admin API and the demo services are wrapped in
//!   [`refuse_bad_framing`], which gives the same answer.
//! - A panicking handler answers 500 for that request only.
//! - Graceful shutdown: stop accepting, let in-flight exchanges finish up to
//!   a drain timeout, then close what is left.
//! - The proxy listener ([`serve_proxy`]) starts each connection on the
//!   direct HTTP/1.1 path (`proxy::direct`); a connection it hands over
//!   continues on hyper with the bytes already read put back in front.

use crate::proxy::body::ProxyBody;
use crate::proxy::direct::{self, ConnEnd, DirectLimits, Rewind};
use crate::proxy::errors::{error_response, GatewayError};
use crate::proxy::h1_guard::{FramingAlarm, H1Guard};
use crate::proxy::handler::{ConnInfo, Proxy, Stats};
use futures_util::FutureExt;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

fn connection_ended(stats: Option<&Stats>) {
    if let Some(s) = stats {
        s.connections_active.fetch_sub(1, Ordering::Relaxed);
        s.connections_handled.fetch_add(1, Ordering::Relaxed);
    }
}

/// For listeners other than the proxy (admin API, demo services): answer
/// a request whose framing the proxy would refuse with the same 400, and
/// close the connection, before `handle` sees it.
pub async fn refuse_bad_framing<H, F>(
    req: Request<Incoming>,
    conn: ConnInfo,
    handle: H,
) -> Response<ProxyBody>
where
    H: FnOnce(Request<Incoming>) -> F,
    F: Future<Output = Response<ProxyBody>>,
{
    if let Some((error, why)) = crate::proxy::handler::framing_refusal(&req, &conn) {
        tracing::debug!(peer = %conn.peer, why, "rejected request framing");
        return crate::proxy::handler::framing_response(error, "-");
    }
    handle(req).await
}

/// Per-connection protocol limits.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Time allowed for a client to send a complete request header section.
    pub header_read_timeout: Duration,
    /// Maximum size of the request header section, in bytes (>= 8192).
    pub max_header_size: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(30),
            max_header_size: 32 * 1024,
        }
    }
}

/// A shutdown signal: `trigger()` makes every `serve` loop stop accepting.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            tx: Arc::new(tx),
            rx,
        }
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Serve `listener` until `shutdown` fires, then drain for at most
/// `drain_timeout`. `handler` answers each request.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: HttpLimits,
    stats: Option<Arc<Stats>>,
    shutdown: Shutdown,
    drain_timeout: Duration,
    handler: H,
) where
    H: Fn(Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    serve_with(
        listener,
        limits,
        stats,
        shutdown,
        drain_timeout,
        handler,
        None,
    )
    .await
}

/// [`serve`] for the proxy listener: connections start on the direct
/// HTTP/1.1 path and move to `Proxy::handle` when it hands them over.
/// `direct_path: false` serves everything on `Proxy::handle`.
pub async fn serve_proxy(
    listener: TcpListener,
    limits: HttpLimits,
    shutdown: Shutdown,
    drain_timeout: Duration,
    proxy: Arc<Proxy>,
    direct_path: bool,
) {
    let stats = Some(proxy.stats.clone());
    let handler = {
        let proxy = proxy.clone();
        move |req, conn| proxy.clone().handle(req, conn)
    };
    serve_with(
        listener,
        limits,
        stats,
        shutdown,
        drain_timeout,
        handler,
        direct_path.then_some(proxy),
    )
    .await
}

async fn serve_with<H, F>(
    listener: TcpListener,
    limits: HttpLimits,
    stats: Option<Arc<Stats>>,
    shutdown: Shutdown,
    drain_timeout: Duration,
    handler: H,
    direct: Option<Arc<Proxy>>,
) where
    H: Fn(Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let local = listener.local_addr().ok();
    // hyper's read buffer limit: no request head it accepts is longer.
    let max_head = limits.max_header_size.max(8192);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(max_head)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_size.max(8192) as u32);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Connections on the direct path (hyper's are watched by `graceful`).
    let direct_conns = tokio_util::task::TaskTracker::new();
    let direct_limits = DirectLimits {
        max_head,
        header_read_timeout: limits.header_read_timeout,
    };
    let mut stop = shutdown.rx.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|v| *v) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let framing = FramingAlarm::new();
        let info = ConnInfo {
            peer,
            local: stream
                .local_addr()
                .unwrap_or_else(|_| local.unwrap_or(peer)),
            tls: false,
            sni: None,
            framing: framing.clone(),
        };
        if let Some(s) = &stats {
            s.connections_accepted.fetch_add(1, Ordering::Relaxed);
            s.connections_active.fetch_add(1, Ordering::Relaxed);
        }
        let direct_info = direct.as_ref().map(|_| info.clone());
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let fut = handler(req, info.clone());
            async move {
                let resp = AssertUnwindSafe(fut)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        tracing::error!("request handler panicked; answered 500");
                        error_response(GatewayError::Internal, "-")
                    });
                Ok::<_, Infallible>(resp)
            }
        });
        let stats = stats.clone();
        let (Some(proxy), Some(direct_info)) = (&direct, direct_info) else {
            let conn = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(H1Guard::new(stream, max_head, framing)),
                    service,
                )
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
                connection_ended(stats.as_deref());
            });
            continue;
        };
        let proxy = proxy.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let direct_limits = direct_limits.clone();
        let mut stop = shutdown.rx.clone();
        direct_conns.spawn(async move {
            let mut stream = stream;
            let end = AssertUnwindSafe(direct::serve(
                &proxy,
                &mut stream,
                &direct_info,
                &direct_limits,
                &mut stop,
            ))
            .catch_unwind()
            .await;
            match end {
                Ok(ConnEnd::Closed) => {}
                Ok(ConnEnd::General(read)) => {
                    let conn = builder
                        .serve_connection_with_upgrades(
                            TokioIo::new(H1Guard::new(
                                Rewind::new(read, stream),
                                max_head,
                                framing,
                            )),
                            service,
                        )
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "client connection ended with an error");
                    }
                }
                Err(_) => tracing::error!(%peer, "direct proxy path panicked; connection closed"),
            }
            connection_ended(stats.as_deref());
        });
    }
    drop(listener);
    direct_conns.close();
    let drained = async {
        tokio::join!(graceful.shutdown(), direct_conns.wait());
    };
    tokio::select! {
        _ = drained => {}
        _ = tokio::time::sleep(drain_timeout) => {
            tracing::warn!(?drain_timeout, "drain timeout reached; closing remaining connections");
        }
    }
}

//! The request pipeline of one proxied request.
//!
//! ```text
//! framing checks (h1_guard's flag, header shapes) -> snapshot load
//!   -> path normalize -> route
//!   -> plugins.request_filter -> https redirect / service checks
//!   -> build upstream request (path, Host, X-Forwarded-*, hop-by-hop)
//!   -> plugins.upstream_request_filter
//!   -> attempt loop: balancer.pick -> pool.checkout (connect_timeout)
//!        -> send (write/read timeouts) -> passive health report
//!        retry on connect failure (and on a failed send of a bodiless
//!        idempotent request) up to `retries`, excluding tried peers
//!   -> response head: hop-by-hop, Via, request id, latency headers
//!   -> plugins.response_filter -> stream body back -> plugins.logging
//! ```

use crate::plugins::{Chain, Flow, RequestCtx, RequestSummary};
use crate::proxy::body::{
    self, find_body_error, BodyError, BoxError, IdleTimeout, Limited, OnEnd, ProxyBody,
};
use crate::proxy::errors::{error_response, GatewayError, REQUEST_ID_HEADER};
use crate::proxy::forward::{self, ClientSide, PortMaps, TrustedProxies, ValueBuf};
use crate::proxy::h1_guard::{FramingAlarm, HeadFault};
use crate::proxy::pool::{Conn, ConnectionPool, PoolKey, TlsTarget, Wire};
use crate::snapshot::{CompiledConfig, LiveConfig};
use crate::upstream::{HashInput, Outcome};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Proxy-wide settings (from flags), fixed for the process lifetime.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub trusted: TrustedProxies,
    /// What `X-Forwarded-Port` says per listener port (Kong's `port_maps`).
    pub port_maps: PortMaps,
    /// Maximum request body in bytes; 0 = unlimited (Kong's default).
    pub max_body_size: u64,
    /// Time allowed between two chunks of a client's request body.
    pub client_body_timeout: Duration,
    /// Idle keep-alive connections kept per upstream peer (Kong's
    /// `upstream_keepalive_pool_size`); 0 closes each upstream connection
    /// after its exchange.
    pub upstream_keepalive_pool_size: usize,
    /// How long an upstream connection may sit idle in the pool before it is
    /// closed (Kong's `upstream_keepalive_idle_timeout`).
    pub upstream_keepalive_idle_timeout: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            trusted: TrustedProxies::default(),
            port_maps: PortMaps::default(),
            max_body_size: 0,
            client_body_timeout: Duration::from_secs(60),
            upstream_keepalive_pool_size: 256,
            upstream_keepalive_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Counters shown by the admin API's `GET /status`.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections_accepted: AtomicU64,
    pub connections_active: AtomicU64,
    pub connections_handled: AtomicU64,
    pub total_requests: AtomicU64,
}

/// What the proxy knows of the client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    pub sni: Option<Arc<str>>,
    /// Set by the connection's `H1Guard` when an HTTP/1 request head had
    /// both `Content-Length` and `Transfer-Encoding`.
    pub framing: Arc<FramingAlarm>,
}

/// The proxy: shared by all connections of all listeners.
pub struct Proxy {
    pub live: Arc<LiveConfig>,
    pub pool: Arc<ConnectionPool>,
    pub settings: ProxySettings,
    pub stats: Arc<Stats>,
    id_prefix: u64,
    id_counter: AtomicU64,
}

impl Proxy {
    pub fn new(live: Arc<LiveConfig>, settings: ProxySettings, stats: Arc<Stats>) -> Arc<Self> {
        Arc::new(Proxy {
            live,
            pool: ConnectionPool::new(
                settings.upstream_keepalive_pool_size,
                settings.upstream_keepalive_idle_timeout,
            ),
            settings,
            stats,
            id_prefix: rand::random(),
            id_counter: AtomicU64::new(0),
        })
    }

    /// A new request id: 32 hex digits.
    pub(crate) fn next_request_id_hex(&self) -> [u8; 32] {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&self.id_prefix.to_be_bytes());
        raw[8..].copy_from_slice(&n.to_be_bytes());
        let mut buf = [0u8; 32];
        // 16 bytes always fit 32 hex digits.
        let _ = hex::encode_to_slice(raw, &mut buf);
        buf
    }

    /// A new request id (32 hex digits), and the same as a header value
    /// (written into `vb`).
    fn next_request_id(&self, vb: &mut ValueBuf) -> (String, Option<HeaderValue>) {
        let buf = self.next_request_id_hex();
        let value = vb.bytes(&buf);
        // Hex digits only, so always UTF-8.
        let id = std::str::from_utf8(&buf).unwrap_or_default().to_owned();
        (id, value)
    }

    /// Handle one client request. Never panics on input; every failure is
    /// a response.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Response<ProxyBody> {
        self.stats.total_requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        // Header values this request makes share one buffer.
        let mut vb = ValueBuf::default();
        let (request_id, id_value) = self.next_request_id(&mut vb);

        if let Some((error, why)) = framing_refusal(&req, &conn) {
            tracing::debug!(request_id, peer = %conn.peer, why, "rejected request framing");
            return framing_response(error, &request_id);
        }
        let limit = self.settings.max_body_size;
        if limit > 0 {
            if let Some(len) = content_length(req.headers()) {
                if len > limit {
                    let mut resp = error_response(GatewayError::BodyTooLarge, &request_id);
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    return resp;
                }
            }
        }

        let snap = self.live.current();
        let client_ip = self
            .settings
            .trusted
            .client_ip(conn.peer.ip(), req.headers());
        let mut ctx = RequestCtx {
            request_id,
            client_addr: SocketAddr::new(client_ip, conn.peer.port()),
            route: None,
            service: None,
            consumer: None,
            started,
            extensions: http::Extensions::new(),
        };
        let ids = RequestIdValue { original: id_value };
        let (resp, upstream_addr, chain) = self
            .pipeline(&snap, req, &conn, &mut ctx, &ids, &mut vb)
            .await;
        let (mut parts, body) = resp.into_parts();
        for p in chain.iter() {
            p.response_filter(&mut parts, &mut ctx);
        }
        if let Some(v) = ids.value(&ctx.request_id) {
            parts.headers.insert(REQUEST_ID_HEADER, v);
        }
        if chain.is_empty() {
            return Response::from_parts(parts, body);
        }
        let summary = RequestSummary {
            status: parts.status.as_u16(),
            upstream_addr,
            duration: started.elapsed(),
        };
        let body = body::boxed(LogOnDrop {
            inner: body,
            log: Some((chain, ctx, summary)),
        });
        Response::from_parts(parts, body)
    }

    async fn pipeline(
        &self,
        snap: &Arc<CompiledConfig>,
        req: Request<Incoming>,
        conn: &ConnInfo,
        ctx: &mut RequestCtx,
        ids: &RequestIdValue,
        vb: &mut ValueBuf,
    ) -> (Response<ProxyBody>, Option<SocketAddr>, Chain) {
        let no_chain = snap.plugins.for_route(None).clone();
        // A copy of the URI (reference counts, no allocation) so the
        // normalized path can borrow from it while `req` moves on.
        let req_uri = req.uri().clone();
        let path = match gateway_router::normalize_path(req_uri.path()) {
            Ok(p) => p,
            Err(_) => {
                return (
                    error_response(GatewayError::BadPath, &ctx.request_id),
                    None,
                    no_chain,
                )
            }
        };
        // The client's host as a header value (the `Host` header shares the
        // request's buffer, so this copies nothing).
        let host_value = request_host(&req);
        let host = host_value.as_ref().and_then(|v| v.to_str().ok());
        let found = snap.router.find(&gateway_router::RequestView {
            method: req.method().as_str(),
            host,
            path: &path,
            sni: conn.sni.as_deref(),
            headers: req.headers(),
        });
        let route_idx = found.as_ref().map(|m| snap.router_routes[m.route]);
        ctx.route = route_idx;
        let chain = snap.plugins.for_route(route_idx).clone();

        let (mut parts, body) = req.into_parts();
        // (Hop-by-hop headers, `Transfer-Encoding` among them, are removed
        // from `parts` below.)
        let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
        for p in chain.iter() {
            if let Flow::Respond(resp) = p.request_filter(&mut parts, ctx).await {
                return (resp, None, chain);
            }
        }
        let (Some(m), Some(route_idx)) = (found, route_idx) else {
            return (
                error_response(GatewayError::NoRoute, &ctx.request_id),
                None,
                chain,
            );
        };
        let route = &snap.routes[route_idx];

        let scheme = if conn.tls { "https" } else { "http" };
        if !conn.tls && !route.plain_allowed {
            let resp = https_redirect(
                route.https_redirect_status_code,
                host,
                &parts.uri,
                &ctx.request_id,
            );
            return (resp, None, chain);
        }
        let Some(svc_idx) = route.service.map(|s| s as usize) else {
            return (
                error_response(GatewayError::NoService, &ctx.request_id),
                None,
                chain,
            );
        };
        ctx.service = Some(svc_idx);
        let srt = &snap.services[svc_idx];
        let Some(balancer) = snap.balancers.for_service(svc_idx) else {
            return (
                error_response(GatewayError::NoService, &ctx.request_id),
                None,
                chain,
            );
        };

        // Upstream request line and headers.
        let up_path = gateway_router::upstream_path(
            snap.service_paths[svc_idx].as_deref(),
            &path,
            m.matched_path_len,
            route.strip_path,
            route.path_handling,
        );
        let stripped =
            (route.strip_path && m.matched_path_len > 0).then(|| &path[..m.matched_path_len]);
        // The request's own path and query when the upstream path is the
        // request path unchanged (shares the request's buffer).
        let same_pq = (up_path == parts.uri.path())
            .then(|| parts.uri.path_and_query().cloned())
            .flatten();
        let path_and_query: std::borrow::Cow<'_, str> = match (&same_pq, parts.uri.query()) {
            (Some(pq), _) => pq.as_str().into(),
            (None, Some(q)) => format!("{up_path}?{q}").into(),
            (None, None) => up_path,
        };
        let upgrade = parts.version <= http::Version::HTTP_11 && is_upgrade(&parts.headers);
        let client_upgrade = if upgrade {
            parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
        } else {
            None
        };
        forward::strip_hop_by_hop(&mut parts.headers, upgrade);
        forward::set_forwarded(
            &mut parts.headers,
            &ClientSide {
                peer: conn.peer,
                client_ip: ctx.client_addr.ip(),
                trusted: self.settings.trusted.contains(conn.peer.ip()),
                scheme,
                host,
                host_value: host_value.as_ref(),
                public_port: self.settings.port_maps.public_port(conn.local.port()),
                stripped_prefix: stripped,
            },
            vb,
        );
        if let Some(v) = ids.value(&ctx.request_id) {
            parts.headers.insert(REQUEST_ID_HEADER, v);
        }
        parts.extensions = http::Extensions::new();
        for p in chain.iter() {
            p.upstream_request_filter(&mut parts, ctx);
        }

        // The body, with the client-side limits as layers.
        // A request without a body needs no body layers (nor their timer
        // and allocations).
        let bodiless = body.is_end_stream();
        let mut body: Option<ProxyBody> = Some(if bodiless {
            body::empty()
        } else if chunked {
            // A chunked body is read up to its first chunk before anything
            // goes upstream, so a malformed first size line (a smuggling
            // shape) is refused whole and never forwarded. Later chunks
            // stream; one that breaks the framing ends the upstream request
            // mid-body, and that connection is closed, never reused.
            match body::with_first_frame(wrap_request_body(body, &self.settings)).await {
                Ok(b) => b,
                Err(e) => {
                    let be = find_body_error(e.as_ref());
                    return (client_body_failure(be, &ctx.request_id), None, chain);
                }
            }
        } else {
            wrap_request_body(body, &self.settings)
        });
        let replayable = bodiless && is_idempotent(&parts.method);

        let mut tried: smallvec::SmallVec<[SocketAddr; 4]> = smallvec::SmallVec::new();
        let attempts = srt.retries.saturating_add(1);
        // Keep a copy of the head for another attempt only when one can
        // happen after the request was sent (a request that was never sent
        // comes back from hyper whole).
        let keep_copy = replayable && attempts > 1;
        let mut last_err = GatewayError::UpstreamFailed;
        // Only failures that reached (or tried to reach) an upstream count as
        // attempts; resending on a fresh connection after a stale keep-alive
        // one does not, but is bounded on its own.
        let mut attempt: u32 = 0;
        let mut stale_resends = 0;
        // Consistent hashing on a cookie the client does not have yet: hash
        // on a new random value and set it on the response (as Kong does).
        let new_cookie: Option<(String, HeaderValue)> = new_hash_cookie(balancer, &parts);
        // The request head: moved into the one upstream request unless the
        // request may be replayed, in which case each attempt gets a copy.
        let mut parts_slot = Some(parts);
        while attempt < attempts {
            let Some(head) = parts_slot.as_ref() else {
                break;
            };
            let peer = match balancer
                .pick(
                    &HashInput {
                        client_ip: ctx.client_addr.ip(),
                        headers: &head.headers,
                        consumer: ctx.consumer.as_deref(),
                        new_cookie: new_cookie.as_ref().map(|(v, _)| v.as_str()),
                    },
                    &tried,
                )
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(request_id = %ctx.request_id, error = %e, "no upstream peer");
                    let err = if tried.is_empty() {
                        GatewayError::NoHealthyUpstream
                    } else {
                        last_err
                    };
                    return (error_response(err, &ctx.request_id), None, chain);
                }
            };
            let addr = peer.addr;
            tried.push(addr);
            let tls = match &srt.tls {
                None => None,
                Some(t) => match crate::proxy::tls::server_name(&peer.host) {
                    Ok(server_name) => Some(TlsTarget {
                        tls: t,
                        server_name,
                    }),
                    Err(e) => {
                        tracing::warn!(request_id = %ctx.request_id, error = %e, "upstream TLS name");
                        return (
                            error_response(GatewayError::UpstreamFailed, &ctx.request_id),
                            None,
                            chain,
                        );
                    }
                },
            };
            let key = PoolKey {
                addr,
                wire: srt.wire,
                tls: tls.as_ref().map_or(0, TlsTarget::key),
            };
            let conn_up = match self.pool.checkout(key, tls, srt.connect_timeout).await {
                Ok(c) => c,
                Err(e) => {
                    let timeout = e.is_timeout();
                    balancer.report(
                        &peer,
                        if timeout {
                            Outcome::Timeout
                        } else {
                            Outcome::TcpFailure
                        },
                    );
                    tracing::warn!(request_id = %ctx.request_id, upstream = %addr, attempt, error = %e, "upstream connect failed");
                    last_err = if timeout {
                        GatewayError::UpstreamTimeout
                    } else {
                        GatewayError::UpstreamFailed
                    };
                    attempt += 1;
                    continue;
                }
            };

            // Build this attempt's request.
            let Some(req_body) = body.take() else {
                break;
            };
            let mut up_parts = if keep_copy {
                match parts_slot.as_ref() {
                    Some(head) => clone_parts(head),
                    None => break,
                }
            } else {
                match parts_slot.take() {
                    Some(head) => head,
                    None => break,
                }
            };
            let host_value = if route.preserve_host {
                host.and(host_value.clone())
            } else {
                srt.host_header.clone().or_else(|| peer.host_header.clone())
            };
            let uri = match srt.wire {
                Wire::Http1 => match &same_pq {
                    Some(pq) => Ok(Uri::from(pq.clone())),
                    None => Uri::try_from(path_and_query.as_bytes()),
                },
                Wire::Http2 => {
                    let authority = host_value
                        .as_ref()
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_owned)
                        .unwrap_or_else(|| addr.to_string());
                    let scheme = if srt.tls.is_some() { "https" } else { "http" };
                    format!("{scheme}://{authority}{path_and_query}").parse::<Uri>()
                }
            };
            let Ok(uri) = uri else {
                return (
                    error_response(GatewayError::BadPath, &ctx.request_id),
                    None,
                    chain,
                );
            };
            up_parts.uri = uri;
            match srt.wire {
                Wire::Http1 => {
                    up_parts.version = http::Version::HTTP_11;
                    if let Some(h) = host_value {
                        up_parts.headers.insert(header::HOST, h);
                    }
                }
                Wire::Http2 => {
                    up_parts.version = http::Version::HTTP_2;
                    up_parts.headers.remove(header::HOST);
                }
            }
            // Progress of the request body for the write timeout; a request
            // without a body only has the read timeout.
            let (up_body, progress) = if bodiless {
                (req_body, None)
            } else {
                let progress = Arc::new(Progress::default());
                let tracked = Tracked {
                    inner: req_body,
                    progress: progress.clone(),
                };
                (body::boxed(tracked), Some(progress))
            };
            let up_req = Request::from_parts(up_parts, up_body);

            let sent = send(
                conn_up,
                up_req,
                progress.as_deref(),
                srt.write_timeout,
                srt.read_timeout,
            )
            .await;
            match sent {
                Ok((resp, pooled)) => {
                    balancer.report(&peer, Outcome::Response(resp.status().as_u16()));
                    let mut resp =
                        self.finish_response(resp, pooled, peer, client_upgrade, srt.read_timeout);
                    if let Some((_, set_cookie)) = new_cookie {
                        resp.headers_mut().append(header::SET_COOKIE, set_cookie);
                    }
                    return (resp, Some(addr), chain);
                }
                Err(SendFailure::NotSent(req_back)) => {
                    // A stale pooled connection: nothing reached the upstream.
                    let (head, b) = req_back.into_parts();
                    if !keep_copy {
                        parts_slot = Some(head);
                    }
                    body = Some(b);
                    tracing::debug!(request_id = %ctx.request_id, upstream = %addr, "pooled connection was closed; resending");
                    tried.pop();
                    stale_resends += 1;
                    if stale_resends > 8 {
                        attempt += 1;
                    }
                    continue;
                }
                Err(SendFailure::Failed(kind, e)) => {
                    if let be @ Some(_) = find_body_error(e.as_ref()) {
                        return (client_body_failure(be, &ctx.request_id), Some(addr), chain);
                    }
                    let outcome = if kind == FailKind::Timeout {
                        Outcome::Timeout
                    } else {
                        Outcome::TcpFailure
                    };
                    balancer.report(&peer, outcome);
                    tracing::warn!(request_id = %ctx.request_id, upstream = %addr, attempt, error = %e, "upstream request failed");
                    last_err = if kind == FailKind::Timeout {
                        GatewayError::UpstreamTimeout
                    } else {
                        GatewayError::UpstreamFailed
                    };
                    attempt += 1;
                    if replayable {
                        body = Some(body::empty());
                        continue;
                    }
                    break;
                }
            }
        }
        (
            error_response(last_err, &ctx.request_id),
            tried.last().copied(),
            chain,
        )
    }

    fn finish_response(
        &self,
        resp: Response<Incoming>,
        pooled: Option<(PoolKey, hyper::client::conn::http1::SendRequest<ProxyBody>)>,
        peer: crate::upstream::Peer,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        read_timeout: Duration,
    ) -> Response<ProxyBody> {
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        let (mut parts, incoming) = if switching {
            let mut resp = resp;
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            if let Some(client_upgrade) = client_upgrade {
                tokio::spawn(tunnel(client_upgrade, upstream_upgrade));
            }
            resp.into_parts()
        } else {
            resp.into_parts()
        };
        forward::strip_hop_by_hop(&mut parts.headers, switching);
        forward::append_via(&mut parts.headers);
        let body = IdleTimeout::new(incoming, read_timeout, "upstream response body");
        // The peer (least-connections' in-flight count) is held until the
        // body ends; a fully read HTTP/1.1 connection goes back to the pool.
        let pool = self.pool.clone();
        let pooled = pooled.filter(|_| !switching);
        let body = body::boxed(OnEnd::new(body, move || {
            drop(peer);
            if let Some((key, sender)) = pooled {
                pool.checkin_h1(key, sender);
            }
        }));
        Response::from_parts(parts, body)
    }
}

/// Splice an upgraded client connection to the upgraded upstream one.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "protocol upgrade failed");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded tunnel ended with an error");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailKind {
    Timeout,
    Transport,
}

enum SendFailure {
    /// The request never left: it comes back to be retried elsewhere.
    NotSent(Box<Request<ProxyBody>>),
    Failed(FailKind, BoxError),
}

type Pooled = Option<(PoolKey, hyper::client::conn::http1::SendRequest<ProxyBody>)>;

/// Send one request on one connection, enforcing Kong's `write_timeout`
/// (no progress sending the body) and `read_timeout` (no response head
/// after the body was sent).
async fn send(
    conn: Conn,
    req: Request<ProxyBody>,
    progress: Option<&Progress>,
    write_timeout: Duration,
    read_timeout: Duration,
) -> Result<(Response<Incoming>, Pooled), SendFailure> {
    match conn {
        Conn::Http1 {
            mut sender,
            key,
            reused,
        } => {
            let fut = sender.try_send_request(req);
            let result = tokio::select! {
                biased;
                r = fut => r,
                kind = watchdog(progress, write_timeout, read_timeout) => {
                    return Err(SendFailure::Failed(kind, format!("upstream {kind:?}").into()));
                }
            };
            match result {
                Ok(resp) => Ok((resp, Some((key, sender)))),
                Err(mut e) => match e.take_message() {
                    Some(req) if reused => Err(SendFailure::NotSent(Box::new(req))),
                    _ => Err(SendFailure::Failed(
                        FailKind::Transport,
                        Box::new(e.into_error()),
                    )),
                },
            }
        }
        Conn::H2 { mut sender } => {
            let fut = sender.try_send_request(req);
            let result = tokio::select! {
                biased;
                r = fut => r,
                kind = watchdog(progress, write_timeout, read_timeout) => {
                    return Err(SendFailure::Failed(kind, format!("upstream {kind:?}").into()));
                }
            };
            match result {
                Ok(resp) => Ok((resp, None)),
                Err(e) => Err(SendFailure::Failed(
                    FailKind::Transport,
                    Box::new(e.into_error()),
                )),
            }
        }
    }
}

/// Resolves with `Timeout` when the request body makes no progress for
/// `write_timeout`, or when no response head arrives within `read_timeout`
/// after the body was fully sent.
async fn watchdog(
    progress: Option<&Progress>,
    write_timeout: Duration,
    read_timeout: Duration,
) -> FailKind {
    while let Some(progress) = progress {
        if progress.done.load(Ordering::Acquire) {
            break;
        }
        let before = progress.frames.load(Ordering::Acquire);
        tokio::select! {
            _ = progress.done_notify.notified() => {}
            _ = tokio::time::sleep(write_timeout) => {
                if !progress.done.load(Ordering::Acquire)
                    && progress.frames.load(Ordering::Acquire) == before
                {
                    return FailKind::Timeout;
                }
            }
        }
    }
    tokio::time::sleep(read_timeout).await;
    FailKind::Timeout
}

#[derive(Default)]
struct Progress {
    frames: AtomicU64,
    done: AtomicBool,
    done_notify: tokio::sync::Notify,
}

pin_project_lite::pin_project! {
    /// Counts request body frames sent upstream and signals the end.
    struct Tracked<B> {
        #[pin]
        inner: B,
        progress: Arc<Progress>,
    }
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(_))) => {
                this.progress.frames.fetch_add(1, Ordering::AcqRel);
            }
            Poll::Ready(None) => {
                this.progress.done.store(true, Ordering::Release);
                this.progress.done_notify.notify_one();
            }
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end && !self.progress.done.swap(true, Ordering::AcqRel) {
            self.progress.done_notify.notify_one();
        }
        end
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// Runs the plugins' `logging` phase when the response body is done
    /// (or dropped because the client went away).
    struct LogOnDrop<B> {
        #[pin]
        inner: B,
        log: Option<(Chain, RequestCtx, RequestSummary)>,
    }
    impl<B> PinnedDrop for LogOnDrop<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some((chain, ctx, mut summary)) = this.log.take() {
                summary.duration = ctx.started.elapsed();
                for p in chain.iter() {
                    p.logging(&summary, &ctx);
                }
            }
        }
    }
}

impl<B: Body<Data = Bytes, Error = BoxError>> Body for LogOnDrop<B> {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().inner.poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a request whose own body failed (`be`: why, when known):
/// 413 over the size limit, else 400; the connection closes after it.
fn client_body_failure(be: Option<&BodyError>, request_id: &str) -> Response<ProxyBody> {
    let err = match be {
        Some(BodyError::TooLarge { .. }) => GatewayError::BodyTooLarge,
        _ => GatewayError::BadRequest,
    };
    let mut resp = error_response(err, request_id);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn wrap_request_body(body: Incoming, settings: &ProxySettings) -> ProxyBody {
    use http_body_util::BodyExt;
    // Errors of the client's own body are the client's fault (400), never
    // the upstream's: tag them so the attempt loop can tell.
    let body = body.map_err(|e| -> BoxError { Box::new(BodyError::Client(e.to_string())) });
    let body = IdleTimeout::new(body, settings.client_body_timeout, "client request body");
    if settings.max_body_size > 0 {
        body::boxed(Limited::new(body, settings.max_body_size))
    } else {
        body::boxed(body)
    }
}

fn clone_parts(p: &http::request::Parts) -> http::request::Parts {
    let mut req = Request::new(());
    *req.method_mut() = p.method.clone();
    *req.uri_mut() = p.uri.clone();
    *req.version_mut() = p.version;
    *req.headers_mut() = p.headers.clone();
    req.into_parts().0
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn is_upgrade(h: &http::HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// `Host` header, or the `:authority` of an HTTP/2 request, as a header
/// value whose `to_str()` succeeds.
fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    match req.headers().get(header::HOST) {
        Some(v) if v.to_str().is_ok() => Some(v.clone()),
        _ => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    }
}

/// The request id as a header value: made once per request and shared by
/// the upstream request and the response, unless a plugin changed the id.
struct RequestIdValue {
    original: Option<HeaderValue>,
}

impl RequestIdValue {
    fn value(&self, current: &str) -> Option<HeaderValue> {
        match &self.original {
            Some(v) if v.as_bytes() == current.as_bytes() => Some(v.clone()),
            _ => HeaderValue::from_str(current).ok(),
        }
    }
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Why this request's framing is refused, if it is: the connection's
/// `h1_guard` saw both `Content-Length` and `Transfer-Encoding` on it
/// (hyper accepted it and dropped the `Content-Length`) or a line ended by
/// a bare LF, or its headers have a shape [`check_framing`] refuses.
/// Consumes the guard's flag for this request, so call it once per request,
/// first.
pub(crate) fn framing_refusal<B>(
    req: &Request<B>,
    conn: &ConnInfo,
) -> Option<(GatewayError, &'static str)> {
    match conn.framing.take_request_refusal() {
        Some(HeadFault::BothLengths) => {
            return Some((
                GatewayError::AmbiguousFraming,
                "both Content-Length and Transfer-Encoding",
            ))
        }
        Some(HeadFault::BareLf) => {
            return Some((GatewayError::BareLineFeed, "a line ended by a bare LF"))
        }
        None => {}
    }
    check_framing(req)
        .err()
        .map(|why| (GatewayError::BadRequest, why))
}

/// The 400 for a refused framing. The body is never read, so the
/// connection closes after it.
pub(crate) fn framing_response(error: GatewayError, request_id: &str) -> Response<ProxyBody> {
    let mut resp = error_response(error, request_id);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Request-smuggling shapes hyper's parser lets through: both
/// `Content-Length` and `Transfer-Encoding`, a transfer coding other than a
/// lone `chunked`, or several `Content-Length` values.
fn check_framing<B>(req: &Request<B>) -> Result<(), &'static str> {
    let h = req.headers();
    let te: Vec<_> = h.get_all(header::TRANSFER_ENCODING).iter().collect();
    let cl: Vec<_> = h.get_all(header::CONTENT_LENGTH).iter().collect();
    if !te.is_empty() && !cl.is_empty() {
        return Err("both Content-Length and Transfer-Encoding");
    }
    if te.len() > 1
        || te
            .iter()
            .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        return Err("unsupported Transfer-Encoding");
    }
    if cl.len() > 1 {
        return Err("several Content-Length headers");
    }
    if let Some(v) = cl.first() {
        if v.is_empty() || !v.as_bytes().iter().all(u8::is_ascii_digit) {
            return Err("invalid Content-Length");
        }
    }
    Ok(())
}

/// Kong's answer to plain HTTP on an HTTPS-only route: 426 with a message,
/// or a redirect (301/302/307/308) to the https URL.
fn https_redirect(
    code: u16,
    host: Option<&str>,
    uri: &Uri,
    request_id: &str,
) -> Response<ProxyBody> {
    if code == 426 {
        return error_response(GatewayError::HttpsRequired(426), request_id);
    }
    let host = host.map(forward::host_without_port).unwrap_or("localhost");
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut resp = error_response(GatewayError::HttpsRequired(code), request_id);
    if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{pq}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The hash cookie to create for this request, if its balancer hashes on a
/// cookie the request lacks: (value, `Set-Cookie` header). The value is 128
/// random bits in hex; the path is `hash_on_cookie_path`.
fn new_hash_cookie(
    balancer: &crate::upstream::Balancer,
    parts: &http::request::Parts,
) -> Option<(String, HeaderValue)> {
    let (name, path) = balancer.cookie_to_set(&parts.headers)?;
    let value = format!("{:032x}", rand::random::<u128>());
    let path = if path.is_empty() { "/" } else { path };
    let header = HeaderValue::from_str(&format!("{name}={value}; Path={path}; HttpOnly")).ok()?;
    Some((value, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("valid request")
    }

    #[test]
    fn framing_rejects_smuggling_shapes() {
        assert!(check_framing(&req(&[("content-length", "5")])).is_ok());
        assert!(check_framing(&req(&[("transfer-encoding", "chunked")])).is_ok());
        assert!(check_framing(&req(&[
            ("content-length", "5"),
            ("transfer-encoding", "chunked")
        ]))
        .is_err());
        assert!(check_framing(&req(&[("transfer-encoding", "gzip, chunked")])).is_err());
        assert!(check_framing(&req(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked")
        ]))
        .is_err());
        assert!(check_framing(&req(&[("content-length", "5"), ("content-length", "6")])).is_err());
        assert!(check_framing(&req(&[("content-length", "+5")])).is_err());
    }

    #[test]
    fn https_redirect_has_location() {
        let uri: Uri = "/a?b=1".parse().expect("uri");
        let r = https_redirect(301, Some("example.com:8000"), &uri, "id");
        assert_eq!(r.status(), 301);
        assert_eq!(r.headers()[header::LOCATION], "https://example.com/a?b=1");
        assert_eq!(https_redirect(426, None, &uri, "id").status(), 426);
    }
}

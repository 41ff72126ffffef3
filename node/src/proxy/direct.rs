//! The direct HTTP/1.1 path: plain HTTP/1.1 client requests to plain
//! HTTP/1.1 upstreams, parsed in place and forwarded as bytes, on the
//! client connection's own task.
//!
//! The general path (`handler` on hyper) builds an `http::Request` per
//! request, hands it to a hyper client connection task and gets an
//! `http::Response` back; that is about 40,000 instructions and 12
//! allocations per proxied request. This path does what nginx does
//! instead:
//!
//! - read the client's head into the connection's buffer and parse it
//!   with `httparse` (hyper's own parser, same settings), keeping offsets;
//! - route it with the same router, snapshot and balancer;
//! - write the upstream request head into one buffer straight from the
//!   client's header bytes, with the same rules as `forward` (hop-by-hop
//!   removed, `X-Forwarded-*`, `X-Real-IP`, `Via`, `Host`, request id),
//!   and send it with one write on a pooled upstream connection;
//! - parse the response head in place, write the client's response head
//!   and, when it came in the same read, the body with one write;
//! - stream the rest of the body (`Content-Length`, chunked passed through
//!   verbatim, or read-to-close re-framed as chunked).
//!
//! **What it takes, and what it hands over.** A request is served here
//! only when all of this holds; otherwise, before anything of it was
//! answered, the connection (with the bytes already read, from this
//! request's first byte on) goes to the general path for good:
//! - HTTP/1.1, origin-form target of ASCII bytes, exactly one `Host`;
//! - a body only by one `Content-Length` (streamed to the upstream as it
//!   comes), no `Transfer-Encoding`, no `Expect`, no `Upgrade`;
//! - the head is complete within `max_header_size` and parses (anything
//!   malformed, oversized or HTTP/2 is answered by the general path, with
//!   its 400/431 and smuggling checks);
//! - no plugin runs for the request (none configured for its route, service
//!   or globally), the route takes plain HTTP, and its service is plain
//!   HTTP/1.1 (not https, grpc or grpcs) with a balancer that does not hash
//!   on a header or cookie.
//!
//! Same behaviour as the general path: the routing, the upstream request
//! and response header rules, `retries` over connect failures (and over a
//! failed exchange of an idempotent request), passive health reports,
//! the service's connect/write/read timeouts (504), Kong-style errors with
//! the request id, `X-Gateway-Request-Id` on every response, a `Date`
//! header, the header read timeout, and drain on shutdown (the request in
//! flight finishes, then the connection closes).
//!
//! A client that closes its connection while its request waits on the
//! upstream (for the response head, or for more of the body) ends that
//! request: the upstream connection is closed, not pooled, and the request
//! is not retried. This is nginx's default (`proxy_ignore_client_abort
//! off`) and what hyper does on the general path. Bytes from the client
//! meanwhile (a pipelined next request) end the watch for that request.
//!
//! Timers: one `Sleep` per client connection serves every deadline of the
//! connection (header read, upstream write and read). It is re-armed only
//! when a deadline is earlier than the armed one or when it fires early, so
//! a busy keep-alive connection does not touch the timer wheel per request.

use crate::proxy::chunked::{ChunkedEnd, ChunkedScanner};
use crate::proxy::errors::{json_body, GatewayError};
use crate::proxy::forward::{host_without_port, VIA};
use crate::proxy::h1_guard::{decimal, head_lines_end_in_crlf};
use crate::proxy::handler::{ConnInfo, Proxy};
use crate::upstream::{HashInput, Outcome, Peer};
use bytes::{Buf, BytesMut};
use std::future::Future;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// More request headers than this: the general path (hyper allows 100).
const MAX_REQUEST_HEADERS: usize = 64;
/// hyper's client default: more response headers are an invalid response.
const MAX_RESPONSE_HEADERS: usize = 100;
/// Body bytes that came with a response head are copied behind the head
/// (one write) up to this size; more are written separately.
const COPY_BODY_WITH_HEAD: usize = 16 * 1024;
/// hyper's client read buffer limit: a response head that does not fit is
/// an invalid response.
const MAX_RESPONSE_HEAD: usize = 8192 + 4096 * 100;
/// Reads ask for at least this much room.
const READ_SIZE: usize = 16 * 1024;

/// Per-connection limits of the direct path (from `server::HttpLimits`).
#[derive(Debug, Clone)]
pub struct DirectLimits {
    pub max_head: usize,
    pub header_read_timeout: Duration,
}

/// How a client connection left the direct path.
pub enum ConnEnd {
    /// Closed (by either side, on an error, or on shutdown).
    Closed,
    /// The general path takes over; these bytes were read and not answered
    /// (they start at a request's first byte).
    General(BytesMut),
}

/// Serve `stream` until it closes or needs the general path.
pub async fn serve(
    proxy: &Arc<Proxy>,
    stream: &mut TcpStream,
    conn: &ConnInfo,
    limits: &DirectLimits,
    stop: &mut watch::Receiver<bool>,
) -> ConnEnd {
    let mut c = Client {
        buf: BytesMut::with_capacity(READ_SIZE),
        out: Vec::with_capacity(1024),
        ubuf: BytesMut::new(),
        headers: Vec::with_capacity(16),
        uheaders: Vec::with_capacity(16),
        consumed: 0,
        pending: BytesMut::new(),
        timer: Timer::new(),
    };
    loop {
        let Some(head) = c.read_head(stream, limits, stop).await else {
            return ConnEnd::Closed;
        };
        let head = match head {
            HeadRead::Head(h) => h,
            HeadRead::General => return ConnEnd::General(c.buf),
        };
        c.consumed = head.len;
        match c.request(proxy, stream, conn, &head).await {
            Next::KeepAlive => {
                c.buf.advance(c.consumed);
                if !c.pending.is_empty() {
                    c.buf.extend_from_slice(&c.pending);
                    c.pending.clear();
                }
            }
            Next::Close => return ConnEnd::Closed,
            Next::General => return ConnEnd::General(c.buf),
        }
        if *stop.borrow() {
            return ConnEnd::Closed;
        }
    }
}

/// A header the direct path treats specially (matched case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    ProxyAuthenticate,
    Trailer,
    Te,
    Upgrade,
    Expect,
    Via,
    Date,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    XForwardedPort,
    XForwardedPrefix,
    XRealIp,
    RequestId,
    Other,
}

impl Name {
    fn of(name: &[u8]) -> Name {
        let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        match name.len() {
            2 if is("te") => Name::Te,
            3 if is("via") => Name::Via,
            4 if is("host") => Name::Host,
            4 if is("date") => Name::Date,
            6 if is("expect") => Name::Expect,
            7 if is("upgrade") => Name::Upgrade,
            7 if is("trailer") => Name::Trailer,
            9 if is("x-real-ip") => Name::XRealIp,
            10 if is("connection") => Name::Connection,
            10 if is("keep-alive") => Name::KeepAlive,
            14 if is("content-length") => Name::ContentLength,
            15 if is("x-forwarded-for") => Name::XForwardedFor,
            16 if is("proxy-connection") => Name::ProxyConnection,
            16 if is("x-forwarded-host") => Name::XForwardedHost,
            16 if is("x-forwarded-port") => Name::XForwardedPort,
            17 if is("transfer-encoding") => Name::TransferEncoding,
            17 if is("x-forwarded-proto") => Name::XForwardedProto,
            18 if is("proxy-authenticate") => Name::ProxyAuthenticate,
            18 if is("x-forwarded-prefix") => Name::XForwardedPrefix,
            20 if is("x-gateway-request-id") => Name::RequestId,
            _ => Name::Other,
        }
    }

    /// Removed on the way through whatever `Connection` says (as
    /// `forward::strip_hop_by_hop`; `TE` is handled apart).
    fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Name::Connection
                | Name::KeepAlive
                | Name::ProxyConnection
                | Name::ProxyAuthenticate
                | Name::TransferEncoding
                | Name::Trailer
                | Name::Upgrade
        )
    }
}

/// One header of a parsed head: where its name and value are in the buffer.
#[derive(Debug, Clone)]
struct HeaderAt {
    kind: Name,
    name: Range<usize>,
    value: Range<usize>,
}

/// A parsed request head (offsets into the connection's buffer).
struct Head {
    len: usize,
    method: Range<usize>,
    target: Range<usize>,
}

enum HeadRead {
    Head(Head),
    General,
}

enum Next {
    KeepAlive,
    Close,
    General,
}

/// The buffers of one client connection, reused for all its requests.
struct Client {
    /// Bytes read from the client, from the current request's first byte.
    buf: BytesMut,
    /// What is written next: the upstream request head, then the response
    /// head (and body) for the client.
    out: Vec<u8>,
    /// Bytes read from the upstream.
    ubuf: BytesMut,
    /// The current request's headers.
    headers: Vec<HeaderAt>,
    /// The current response's headers.
    uheaders: Vec<HeaderAt>,
    /// Bytes of `buf` the current request takes (head and the body bytes
    /// that came with it).
    consumed: usize,
    /// Client bytes read past the current request's body while streaming
    /// it (a pipelined next request): they go after `buf`'s rest.
    pending: BytesMut,
    timer: Timer,
}

/// Why an upstream exchange failed.
enum Failure {
    Timeout,
    /// Nothing came back (EOF or an error before any response byte).
    NothingBack(std::io::Error),
    Transport(std::io::Error),
    /// The response head does not parse, or says something we cannot pass on.
    InvalidResponse(&'static str),
    /// The client's request body stalled or ended early (400).
    ClientBody(&'static str),
    /// The client closed its connection while the response was awaited.
    ClientGone,
}

/// Watches the client's connection while the upstream is awaited: EOF or
/// an error there means the client is gone. Bytes from the client (a
/// pipelined next request, left unread) end the watch for this request,
/// since a close can no longer be seen without reading them.
#[derive(Default)]
struct ClientWatch {
    sent_more: bool,
}

impl ClientWatch {
    /// `fut`'s output, or `None` once `client` has closed.
    async fn or_gone<F: Future>(&mut self, client: &TcpStream, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            if self.sent_more {
                return Poll::Pending;
            }
            // Cheap when nothing happened: the read of the request left the
            // socket not readable, so this only registers the waker.
            let mut byte = [MaybeUninit::uninit()];
            let mut peeked = tokio::io::ReadBuf::uninit(&mut byte);
            match client.poll_peek(cx, &mut peeked) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(None),
                Poll::Ready(Ok(_)) => {
                    self.sent_more = true;
                    Poll::Pending
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

/// The request body to send after the head.
struct RequestBody<'a> {
    /// Bytes of it already read (when not sent with the head).
    prefix: &'a [u8],
    /// Bytes still to read from the client.
    rest: u64,
    client: &'a mut TcpStream,
    /// Longest wait for the client's next body bytes.
    client_timeout: Duration,
    /// Where client bytes read past the body go.
    pending: &'a mut BytesMut,
}

/// How a response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// Until the upstream closes; re-framed as chunked for the client.
    Close,
}

/// What the request's head says, gathered in one pass over its headers.
#[derive(Default)]
struct RequestFacts {
    host: Option<Range<usize>>,
    /// `Content-Length` (0 when absent).
    content_length: u64,
    close: bool,
    /// `Connection` names headers other than the usual tokens.
    connection_names: bool,
    general: bool,
}

impl Client {
    /// Wait for a complete request head. `None`: the connection is done
    /// (closed, timed out, or shutdown before a request started).
    async fn read_head(
        &mut self,
        stream: &mut TcpStream,
        limits: &DirectLimits,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<HeadRead> {
        let deadline = Instant::now() + limits.header_read_timeout;
        let mut stopping = *stop.borrow();
        loop {
            if !self.buf.is_empty() {
                match parse_request(&self.buf, &mut self.headers) {
                    Parse::Complete(head) if head.len <= limits.max_head => {
                        return Some(HeadRead::Head(head))
                    }
                    Parse::Partial if self.buf.len() < limits.max_head => {}
                    _ => return Some(HeadRead::General),
                }
            } else if stopping {
                return None;
            }
            reserve(&mut self.buf);
            let read = tokio::select! {
                biased;
                r = self.timer.within(deadline, stream.read_buf(&mut self.buf)) => r,
                _ = stop.wait_for(|v| *v), if !stopping => {
                    stopping = true;
                    continue;
                }
            };
            match read {
                Some(Ok(0)) | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
                None => {
                    tracing::debug!("header read timeout; closing the connection");
                    return None;
                }
            }
        }
    }

    /// Serve one request whose head is `head`.
    async fn request(
        &mut self,
        proxy: &Arc<Proxy>,
        stream: &mut TcpStream,
        conn: &ConnInfo,
        head: &Head,
    ) -> Next {
        let facts = request_facts(&self.buf, &self.headers);
        if facts.general || conn.tls {
            return Next::General;
        }
        let body_len = facts.content_length;
        // The body bytes that came with the head.
        let body_here =
            (self.buf.len() - head.len).min(usize::try_from(body_len).unwrap_or(usize::MAX));
        self.consumed = head.len + body_here;
        let limit = proxy.settings.max_body_size;
        if limit > 0 && body_len > limit {
            proxy.stats.total_requests.fetch_add(1, Ordering::Relaxed);
            let id = proxy.next_request_id_hex();
            let request_id = std::str::from_utf8(&id).unwrap_or_default();
            return self
                .answer_error(stream, GatewayError::BodyTooLarge, request_id, true)
                .await;
        }
        let Some(host_range) = facts.host.clone() else {
            return Next::General;
        };
        let buf = &self.buf[..head.len];
        let Ok(target) = std::str::from_utf8(&buf[head.target.clone()]) else {
            return Next::General;
        };
        let Ok(host) = std::str::from_utf8(&buf[host_range]) else {
            return Next::General;
        };
        if !target.starts_with('/')
            || !target.is_ascii()
            || target.contains('#')
            || !host
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Next::General;
        }
        let (raw_path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let Ok(path) = gateway_router::normalize_path(raw_path) else {
            return Next::General;
        };
        let method = std::str::from_utf8(&buf[head.method.clone()]).unwrap_or_default();

        let snap = proxy.live.current();
        // The router reads headers only for routes that match on them.
        let header_map = if snap.router.matches_headers() {
            header_map(buf, &self.headers)
        } else {
            http::HeaderMap::new()
        };
        let found = snap.router.find(&gateway_router::RequestView {
            method,
            host: Some(host),
            path: &path,
            sni: None,
            headers: &header_map,
        });
        let route_idx = found.as_ref().map(|m| snap.router_routes[m.route]);
        if !snap.plugins.for_route(route_idx).is_empty() {
            return Next::General;
        }
        let id = proxy.next_request_id_hex();
        let request_id = std::str::from_utf8(&id).unwrap_or_default();
        let (Some(m), Some(route_idx)) = (found, route_idx) else {
            proxy.stats.total_requests.fetch_add(1, Ordering::Relaxed);
            return self
                .answer_error(stream, GatewayError::NoRoute, request_id, facts.close)
                .await;
        };
        let route = &snap.routes[route_idx];
        let Some(svc_idx) = route.service.map(|s| s as usize) else {
            return Next::General;
        };
        let srt = &snap.services[svc_idx];
        let balancer = match snap.balancers.for_service(svc_idx) {
            Some(b)
                if route.plain_allowed
                    && srt.wire == crate::proxy::pool::Wire::Http1
                    && srt.tls.is_none()
                    && !b.reads_request_headers() =>
            {
                b
            }
            _ => return Next::General,
        };
        proxy.stats.total_requests.fetch_add(1, Ordering::Relaxed);

        let up_path = gateway_router::upstream_path(
            snap.service_paths[svc_idx].as_deref(),
            &path,
            m.matched_path_len,
            route.strip_path,
            route.path_handling,
        );
        let stripped = (route.strip_path && m.matched_path_len > 0)
            .then(|| &path[..m.matched_path_len])
            .filter(|p| !p.is_empty());
        let trusted = proxy.settings.trusted.contains(conn.peer.ip());
        let client_ip = proxy.settings.trusted.client_ip_from(
            conn.peer.ip(),
            self.headers
                .iter()
                .filter(|h| h.kind == Name::XForwardedFor)
                .filter_map(|h| std::str::from_utf8(&buf[h.value.clone()]).ok()),
        );
        let is_head = method == "HEAD";
        // The body bytes still to read from the client, once sent.
        let body_rest = body_len - body_here as u64;
        let body_prefix = &self.buf[head.len..head.len + body_here];
        // Sent again only when idempotent and the whole body is here.
        let replayable = body_rest == 0
            && matches!(
                method,
                "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
            );
        // A failure with a body: the client's connection may hold body
        // bytes not read, so it is closed after the answer.
        let close_on_error = facts.close || body_len > 0;
        let no_headers = http::HeaderMap::new();

        let mut tried: smallvec::SmallVec<[SocketAddr; 4]> = smallvec::SmallVec::new();
        let attempts = srt.retries.saturating_add(1);
        let mut attempt: u32 = 0;
        let mut stale_resends = 0;
        let mut last_err = GatewayError::UpstreamFailed;
        while attempt < attempts {
            let peer = match balancer
                .pick(
                    &HashInput {
                        client_ip,
                        headers: &no_headers,
                        consumer: None,
                        new_cookie: None,
                    },
                    &tried,
                )
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(request_id, error = %e, "no upstream peer");
                    let err = if tried.is_empty() {
                        GatewayError::NoHealthyUpstream
                    } else {
                        last_err
                    };
                    return self
                        .answer_error(stream, err, request_id, close_on_error)
                        .await;
                }
            };
            let addr = peer.addr;
            tried.push(addr);
            let mut up = match proxy.pool.checkout_direct(addr, srt.connect_timeout).await {
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
                    tracing::warn!(request_id, upstream = %addr, attempt, error = %e, "upstream connect failed");
                    last_err = if timeout {
                        GatewayError::UpstreamTimeout
                    } else {
                        GatewayError::UpstreamFailed
                    };
                    attempt += 1;
                    continue;
                }
            };
            let host_header = if route.preserve_host {
                None
            } else {
                srt.host_header.as_ref().or(peer.host_header.as_ref())
            };
            self.out.clear();
            write_upstream_head(
                &mut self.out,
                &UpstreamHead {
                    buf,
                    headers: &self.headers,
                    method,
                    path: &up_path,
                    raw_path,
                    target,
                    query,
                    host_header: host_header.map(|v| v.as_bytes()),
                    host,
                    trusted,
                    facts: &facts,
                    peer_ip: conn.peer.ip(),
                    client_ip,
                    public_port: proxy.settings.port_maps.public_port(conn.local.port()),
                    stripped_prefix: stripped,
                    request_id: &id,
                },
            );
            // A small body that came with the head goes in the same write.
            let separate = if body_prefix.len() <= COPY_BODY_WITH_HEAD {
                self.out.extend_from_slice(body_prefix);
                &[][..]
            } else {
                body_prefix
            };
            let sent = exchange(
                &mut self.timer,
                &mut up.stream,
                &self.out,
                RequestBody {
                    prefix: separate,
                    rest: body_rest,
                    client: stream,
                    client_timeout: proxy.settings.client_body_timeout,
                    pending: &mut self.pending,
                },
                &mut self.ubuf,
                &mut self.uheaders,
                srt.write_timeout,
                srt.read_timeout,
            )
            .await;
            match sent {
                Ok(resp_head) => {
                    return self
                        .respond(
                            proxy,
                            stream,
                            up,
                            peer,
                            balancer,
                            resp_head,
                            is_head,
                            request_id,
                            facts.close,
                            srt.read_timeout,
                        )
                        .await;
                }
                Err(Failure::NothingBack(e)) if up.reused && replayable && stale_resends < 8 => {
                    // A pooled connection the upstream had closed: nothing
                    // reached it. Not an attempt, but bounded.
                    tracing::debug!(request_id, upstream = %addr, error = %e, "pooled connection was closed; resending");
                    tried.pop();
                    stale_resends += 1;
                    continue;
                }
                Err(f) => {
                    let (outcome, err, why) = match f {
                        Failure::Timeout => (
                            Outcome::Timeout,
                            GatewayError::UpstreamTimeout,
                            "timed out".to_owned(),
                        ),
                        Failure::NothingBack(e) | Failure::Transport(e) => (
                            Outcome::TcpFailure,
                            GatewayError::UpstreamFailed,
                            e.to_string(),
                        ),
                        Failure::InvalidResponse(why) => (
                            Outcome::TcpFailure,
                            GatewayError::UpstreamFailed,
                            why.to_owned(),
                        ),
                        // The client's doing: no health report, no retry.
                        Failure::ClientBody(why) => {
                            tracing::debug!(request_id, peer = %conn.peer, why, "client request body failed");
                            return self
                                .answer_error(stream, GatewayError::BadRequest, request_id, true)
                                .await;
                        }
                        Failure::ClientGone => {
                            // Dropping the upstream connection closes it,
                            // which tells the upstream; it is not pooled.
                            drop(up);
                            tracing::debug!(request_id, upstream = %addr, "client closed its connection while the request was upstream");
                            return Next::Close;
                        }
                    };
                    balancer.report(&peer, outcome);
                    tracing::warn!(request_id, upstream = %addr, attempt, error = %why, "upstream request failed");
                    last_err = err;
                    attempt += 1;
                    if replayable {
                        continue;
                    }
                    break;
                }
            }
        }
        self.answer_error(stream, last_err, request_id, close_on_error)
            .await
    }

    /// A gateway-made JSON error (the same as `errors::error_response`).
    async fn answer_error(
        &mut self,
        stream: &mut TcpStream,
        err: GatewayError,
        request_id: &str,
        close: bool,
    ) -> Next {
        let body = json_body(err.message(), request_id);
        let status = err.status();
        let out = &mut self.out;
        out.clear();
        status_line(out, status.as_u16(), b"");
        out.extend_from_slice(b"content-type: application/json; charset=utf-8\r\n");
        header(out, b"x-gateway-request-id", request_id.as_bytes());
        header(
            out,
            b"content-length",
            itoa::Buffer::new().format(body.len()).as_bytes(),
        );
        date_header(out);
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
        if stream.write_all(out).await.is_err() || close {
            return Next::Close;
        }
        Next::KeepAlive
    }

    /// Pass the upstream's response (its head is `self.ubuf[..head_len]`,
    /// its headers `self.headers`) on to the client.
    #[allow(clippy::too_many_arguments)]
    async fn respond(
        &mut self,
        proxy: &Arc<Proxy>,
        stream: &mut TcpStream,
        mut up: crate::proxy::pool::DirectConn,
        peer: Peer,
        balancer: &crate::upstream::Balancer,
        resp: ResponseHead,
        is_head: bool,
        request_id: &str,
        close: bool,
        read_timeout: Duration,
    ) -> Next {
        balancer.report(&peer, Outcome::Response(resp.status));
        let framing = if is_head || resp.status == 204 || resp.status == 304 {
            Framing::Length(0)
        } else {
            resp.framing
        };
        self.out.clear();
        write_response_head(
            &mut self.out,
            &self.ubuf[..resp.len],
            &self.uheaders,
            &resp,
            framing,
            request_id.as_bytes(),
            close,
        );
        self.ubuf.advance(resp.len);
        let mut reusable = resp.reusable && framing != Framing::Close;
        // The body: first what came with the head.
        let mut body = Body::new(framing);
        let Some(taken) = body.take(&self.ubuf) else {
            // Nothing was sent yet: a 502 instead of a cut-short 200.
            drop(up);
            tracing::warn!(request_id, upstream = %peer.addr, "invalid chunked response body");
            return self
                .answer_error(stream, GatewayError::UpstreamFailed, request_id, true)
                .await;
        };
        let done = body.done();
        let ok = if taken <= COPY_BODY_WITH_HEAD {
            body.frame_into(&mut self.out, &self.ubuf[..taken]);
            body.finish_into(&mut self.out);
            stream.write_all(&self.out).await.is_ok()
        } else {
            stream.write_all(&self.out).await.is_ok() && {
                self.out.clear();
                write_framed(stream, &mut self.out, &body, &self.ubuf[..taken]).await
            }
        };
        if !ok {
            return Next::Close;
        }
        if taken < self.ubuf.len() {
            // Bytes after the response: the upstream connection is unusable.
            reusable = false;
        }
        self.ubuf.clear();
        // Then the rest, as it comes.
        if !done {
            let mut watch = ClientWatch::default();
            loop {
                reserve(&mut self.ubuf);
                let deadline = Instant::now() + read_timeout;
                let read = watch.or_gone(stream, up.stream.read_buf(&mut self.ubuf));
                let n = match self.timer.within(deadline, read).await {
                    Some(Some(Ok(n))) => n,
                    Some(None) => {
                        tracing::debug!(
                            request_id,
                            "client closed its connection during the response body"
                        );
                        return Next::Close;
                    }
                    Some(Some(Err(e))) => {
                        tracing::debug!(request_id, error = %e, "upstream response body failed");
                        return Next::Close;
                    }
                    None => {
                        tracing::debug!(request_id, "upstream response body timed out");
                        return Next::Close;
                    }
                };
                if n == 0 {
                    if body.framing != Framing::Close {
                        tracing::debug!(request_id, "upstream closed mid-body");
                        return Next::Close;
                    }
                    body.ended = true;
                }
                let Some(taken) = body.take(&self.ubuf) else {
                    return abort(up, "invalid chunked response body");
                };
                if taken < self.ubuf.len() {
                    reusable = false;
                }
                self.out.clear();
                let ok = write_framed(stream, &mut self.out, &body, &self.ubuf[..taken]).await;
                self.ubuf.clear();
                if !ok {
                    return Next::Close;
                }
                if body.done() {
                    break;
                }
            }
        }
        if reusable {
            proxy.pool.checkin_direct(peer.addr, up.stream);
        }
        drop(peer);
        if close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }
}

/// A response body being passed through.
struct Body {
    framing: Framing,
    /// `Length`: bytes still to come.
    left: u64,
    chunked: ChunkedScanner,
    /// The end was seen (EOF for `Close`, the last chunk for `Chunked`).
    ended: bool,
}

impl Body {
    fn new(framing: Framing) -> Self {
        Body {
            framing,
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunked: ChunkedScanner::default(),
            ended: false,
        }
    }

    /// How many bytes of `data` belong to the body (None: broken framing).
    fn take(&mut self, data: &[u8]) -> Option<usize> {
        match self.framing {
            Framing::Length(_) => {
                let n = self.left.min(data.len() as u64);
                self.left -= n;
                Some(n as usize)
            }
            Framing::Chunked => {
                if self.ended {
                    return Some(0);
                }
                match self.chunked.feed(data) {
                    ChunkedEnd::More => Some(data.len()),
                    ChunkedEnd::At(n) => {
                        self.ended = true;
                        Some(n)
                    }
                    ChunkedEnd::Invalid => None,
                }
            }
            Framing::Close => Some(data.len()),
        }
    }

    fn done(&self) -> bool {
        match self.framing {
            Framing::Length(_) => self.left == 0,
            Framing::Chunked | Framing::Close => self.ended,
        }
    }

    /// Append `data` (body bytes) to `out` as the client gets them.
    fn frame_into(&self, out: &mut Vec<u8>, data: &[u8]) {
        if self.framing == Framing::Close && !data.is_empty() {
            use std::io::Write;
            let _ = write!(out, "{:x}\r\n", data.len());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(data);
        }
    }

    /// Append the end of the body, once it has ended (re-framed bodies).
    fn finish_into(&self, out: &mut Vec<u8>) {
        if self.framing == Framing::Close && self.ended {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
}

/// Write `out` (already framed bytes), then `data` framed by `body`, then
/// the end of a re-framed body if it ended. False when the client is gone.
async fn write_framed(stream: &mut TcpStream, out: &mut Vec<u8>, body: &Body, data: &[u8]) -> bool {
    if body.framing == Framing::Close {
        body.frame_into(out, data);
        body.finish_into(out);
        return stream.write_all(out).await.is_ok();
    }
    (out.is_empty() || stream.write_all(out).await.is_ok())
        && (data.is_empty() || stream.write_all(data).await.is_ok())
}

/// Give up on a response mid-way: close the upstream connection and the
/// client's (whose response is then cut short, as with the general path).
fn abort(up: crate::proxy::pool::DirectConn, why: &str) -> Next {
    tracing::warn!(why, "upstream response broken; closing the connection");
    drop(up);
    Next::Close
}

/// A parsed response head.
struct ResponseHead {
    len: usize,
    status: u16,
    /// Reason phrase (offsets into the head).
    reason: Range<usize>,
    framing: Framing,
    /// HTTP/1.1 without `Connection: close`.
    reusable: bool,
    /// `Connection` names other headers to drop.
    connection_names: bool,
}

/// Send the request head and read the response head into `ubuf` (its
/// headers' offsets into `headers`).
#[allow(clippy::too_many_arguments)]
async fn exchange(
    timer: &mut Timer,
    up: &mut TcpStream,
    head: &[u8],
    body: RequestBody<'_>,
    ubuf: &mut BytesMut,
    headers: &mut Vec<HeaderAt>,
    write_timeout: Duration,
    read_timeout: Duration,
) -> Result<ResponseHead, Failure> {
    match timer
        .within(Instant::now() + write_timeout, up.write_all(head))
        .await
    {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(Failure::NothingBack(e)),
        None => return Err(Failure::Timeout),
    }
    // The body: what came with the head, then the rest as the client sends
    // it (`write_timeout` per write: no progress for that long is a 504).
    if !body.prefix.is_empty() {
        write_within(timer, up, body.prefix, write_timeout).await?;
    }
    let mut rest = body.rest;
    while rest > 0 {
        ubuf.clear();
        reserve(ubuf);
        let deadline = Instant::now() + body.client_timeout;
        let n = match timer.within(deadline, body.client.read_buf(ubuf)).await {
            None => return Err(Failure::ClientBody("client request body timed out")),
            Some(Ok(0)) | Some(Err(_)) => {
                return Err(Failure::ClientBody("client closed mid-body"))
            }
            Some(Ok(n)) => n,
        };
        let take = usize::try_from(rest).unwrap_or(usize::MAX).min(n);
        write_within(timer, up, &ubuf[..take], write_timeout).await?;
        body.pending.extend_from_slice(&ubuf[take..]);
        rest -= take as u64;
    }
    ubuf.clear();
    let client: &TcpStream = body.client;
    let mut watch = ClientWatch::default();
    let deadline = Instant::now() + read_timeout;
    loop {
        reserve(ubuf);
        let read = watch.or_gone(client, up.read_buf(ubuf));
        let Some(read) = timer.within(deadline, read).await else {
            return Err(Failure::Timeout);
        };
        match read {
            None => return Err(Failure::ClientGone),
            Some(Ok(0)) if ubuf.is_empty() => {
                return Err(Failure::NothingBack(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ))
            }
            Some(Ok(0)) => {
                return Err(Failure::Transport(std::io::ErrorKind::UnexpectedEof.into()))
            }
            Some(Err(e)) if ubuf.is_empty() => return Err(Failure::NothingBack(e)),
            Some(Err(e)) => return Err(Failure::Transport(e)),
            Some(Ok(_)) => {}
        }
        loop {
            match parse_response_head(ubuf, headers) {
                Parse::Complete(h) if (100..200).contains(&h.status) && h.status != 101 => {
                    // An interim response (103 Early Hints, a stray 100):
                    // not passed on; the final one follows.
                    ubuf.advance(h.len);
                    if ubuf.is_empty() {
                        break;
                    }
                }
                Parse::Complete(h) if h.status == 101 => {
                    return Err(Failure::InvalidResponse("101 without an upgrade request"))
                }
                Parse::Complete(h) => return Ok(h),
                Parse::Partial if ubuf.len() >= MAX_RESPONSE_HEAD => {
                    return Err(Failure::InvalidResponse("response head too large"))
                }
                Parse::Partial => break,
                Parse::Invalid(why) => return Err(Failure::InvalidResponse(why)),
            }
        }
    }
}

/// Write all of `data` to the upstream within `write_timeout`.
async fn write_within(
    timer: &mut Timer,
    up: &mut TcpStream,
    data: &[u8],
    write_timeout: Duration,
) -> Result<(), Failure> {
    match timer
        .within(Instant::now() + write_timeout, up.write_all(data))
        .await
    {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(Failure::Transport(e)),
        None => Err(Failure::Timeout),
    }
}

enum Parse<T> {
    Complete(T),
    Partial,
    Invalid(&'static str),
}

/// Parse a request head into offsets (headers into `headers`).
fn parse_request(buf: &[u8], headers: &mut Vec<HeaderAt>) -> Parse<Head> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_REQUEST_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::Invalid("request head"),
    };
    if !head_lines_end_in_crlf(buf, len, &req) {
        // The general path refuses it (h1_guard).
        return Parse::Invalid("bare LF");
    }
    if req.version != Some(1) {
        return Parse::Invalid("not HTTP/1.1");
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Parse::Invalid("request line");
    };
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    headers.clear();
    headers.extend(req.headers.iter().map(|h| HeaderAt {
        kind: Name::of(h.name.as_bytes()),
        name: at(h.name.as_bytes()),
        value: at(h.value),
    }));
    Parse::Complete(Head {
        len,
        method: at(method.as_bytes()),
        target: at(target.as_bytes()),
    })
}

/// What the request's headers say about framing, `Host` and `Connection`.
fn request_facts(buf: &[u8], headers: &[HeaderAt]) -> RequestFacts {
    let mut f = RequestFacts::default();
    let mut seen_length = false;
    for h in headers {
        let value = &buf[h.value.clone()];
        match h.kind {
            Name::Host => {
                if f.host.is_some() {
                    f.general = true;
                }
                f.host = Some(h.value.clone());
            }
            Name::ContentLength => match decimal(value) {
                // Several, or not digits: the general path refuses it.
                Some(n) if !seen_length => {
                    seen_length = true;
                    f.content_length = n;
                }
                _ => f.general = true,
            },
            Name::TransferEncoding | Name::Upgrade | Name::Expect => f.general = true,
            Name::Connection => {
                for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        f.close = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        f.general = true;
                    } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                        f.connection_names = true;
                    }
                }
            }
            _ => {}
        }
    }
    f
}

/// The request's headers as a `HeaderMap` (for header-matching routes).
fn header_map(buf: &[u8], headers: &[HeaderAt]) -> http::HeaderMap {
    let mut map = http::HeaderMap::with_capacity(headers.len());
    for h in headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(&buf[h.name.clone()]),
            http::HeaderValue::from_bytes(&buf[h.value.clone()]),
        ) {
            map.append(n, v);
        }
    }
    map
}

/// True when `name` is one of the tokens of the `Connection` headers.
fn named_in_connection(buf: &[u8], headers: &[HeaderAt], name: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.kind == Name::Connection)
        .any(|h| has_token(&buf[h.value.clone()], name))
}

/// Everything the upstream request head is made of.
struct UpstreamHead<'a> {
    buf: &'a [u8],
    headers: &'a [HeaderAt],
    method: &'a str,
    /// The upstream path.
    path: &'a str,
    /// The client's own path, and its whole target.
    raw_path: &'a str,
    target: &'a str,
    query: Option<&'a str>,
    /// `Host` to send; `None`: the client's `host`.
    host_header: Option<&'a [u8]>,
    host: &'a str,
    trusted: bool,
    facts: &'a RequestFacts,
    peer_ip: IpAddr,
    client_ip: IpAddr,
    /// For `X-Forwarded-Port`: the listener's port, through `--port-maps`.
    public_port: u16,
    stripped_prefix: Option<&'a str>,
    request_id: &'a [u8; 32],
}

/// Write the upstream request head: the rules of `forward::strip_hop_by_hop`
/// and `forward::set_forwarded`, on bytes.
fn write_upstream_head(out: &mut Vec<u8>, r: &UpstreamHead<'_>) {
    out.extend_from_slice(r.method.as_bytes());
    out.push(b' ');
    if r.path == r.raw_path {
        out.extend_from_slice(r.target.as_bytes());
    } else {
        out.extend_from_slice(r.path.as_bytes());
        if let Some(q) = r.query {
            out.push(b'?');
            out.extend_from_slice(q.as_bytes());
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    header(out, b"host", r.host_header.unwrap_or(r.host.as_bytes()));
    let present = |kind: Name| r.headers.iter().any(|h| h.kind == kind);
    let keep_proto = r.trusted && present(Name::XForwardedProto);
    let keep_host = r.trusted && present(Name::XForwardedHost);
    let keep_port = r.trusted && present(Name::XForwardedPort);
    let keep_prefix = r.trusted && present(Name::XForwardedPrefix);
    let mut te_via = TeAndVia::default();
    let mut xff: smallvec::SmallVec<[&[u8]; 2]> = smallvec::SmallVec::new();
    for h in r.headers {
        let value = &r.buf[h.value.clone()];
        let copy = match h.kind {
            Name::Host | Name::XRealIp | Name::RequestId => false,
            k if k.is_hop_by_hop() => false,
            Name::Te | Name::Via => {
                te_via.take(out, h.kind, value);
                false
            }
            Name::XForwardedFor => {
                // Only values the general path reads (`to_str` succeeds).
                if is_visible_ascii(value) {
                    xff.push(value);
                }
                false
            }
            Name::XForwardedProto => keep_proto,
            Name::XForwardedHost => keep_host,
            Name::XForwardedPort => keep_port,
            Name::XForwardedPrefix => keep_prefix,
            _ => {
                !(r.facts.connection_names
                    && named_in_connection(r.buf, r.headers, &r.buf[h.name.clone()]))
            }
        };
        if copy {
            out.extend_from_slice(&r.buf[h.name.clone()]);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
    // X-Forwarded-For: the client's values (only valid strings, as the
    // general path reads them), then the peer.
    out.extend_from_slice(b"x-forwarded-for: ");
    for v in xff {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    push_ip(out, r.peer_ip);
    out.extend_from_slice(b"\r\nx-real-ip: ");
    push_ip(out, r.client_ip);
    out.extend_from_slice(b"\r\n");
    if !keep_proto {
        out.extend_from_slice(b"x-forwarded-proto: http\r\n");
    }
    if !keep_host {
        header(
            out,
            b"x-forwarded-host",
            host_without_port(r.host).as_bytes(),
        );
    }
    if !keep_port {
        header(
            out,
            b"x-forwarded-port",
            itoa::Buffer::new().format(r.public_port).as_bytes(),
        );
    }
    if !keep_prefix {
        if let Some(p) = r.stripped_prefix {
            header(out, b"x-forwarded-prefix", p.as_bytes());
        }
    }
    via_header(out, te_via.via);
    header(out, b"x-gateway-request-id", r.request_id);
    out.extend_from_slice(b"\r\n");
}

/// `TE` and `Via` on the way through (both directions, as
/// `forward::strip_hop_by_hop` and `forward::append_via`): the first `TE`
/// is reduced to `trailers` (or dropped); the first `Via` is kept to have
/// this gateway appended.
#[derive(Default)]
struct TeAndVia<'a> {
    te_seen: bool,
    via: Option<&'a [u8]>,
}

impl<'a> TeAndVia<'a> {
    fn take(&mut self, out: &mut Vec<u8>, kind: Name, value: &'a [u8]) {
        if kind == Name::Via {
            self.via.get_or_insert(value);
            return;
        }
        if !self.te_seen && has_token(value, b"trailers") {
            out.extend_from_slice(b"te: trailers\r\n");
        }
        self.te_seen = true;
    }
}

fn is_visible_ascii(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// `Via` with this gateway appended (as `forward::append_via`: after the
/// first value, if it is a non-empty string).
fn via_header(out: &mut Vec<u8>, first: Option<&[u8]>) {
    out.extend_from_slice(b"via: ");
    if let Some(v) = first.filter(|v| !v.is_empty() && is_visible_ascii(v)) {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(VIA.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(o).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn status_line(out: &mut Vec<u8>, status: u16, upstream_reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map_or(upstream_reason, str::as_bytes);
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// Parse a response head (its headers' offsets into `headers`) and read
/// its framing as hyper's client does.
fn parse_response_head(buf: &[u8], headers: &mut Vec<HeaderAt>) -> Parse<ResponseHead> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::Invalid("response head does not parse"),
    };
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Parse::Invalid("response status line");
    };
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let reason = resp.reason.map_or(0..0, |r| at(r.as_bytes()));
    headers.clear();
    let mut te = false;
    let mut chunked = false;
    let mut length: Option<u64> = None;
    let mut close = minor == 0;
    let mut connection_names = false;
    for h in resp.headers.iter() {
        let kind = Name::of(h.name.as_bytes());
        headers.push(HeaderAt {
            kind,
            name: at(h.name.as_bytes()),
            value: at(h.value),
        });
        match kind {
            Name::TransferEncoding => {
                te = true;
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(h.value);
                chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
            }
            Name::ContentLength => {
                let Some(n) = decimal(h.value) else {
                    return Parse::Invalid("invalid Content-Length");
                };
                if length.is_some_and(|prev| prev != n) {
                    return Parse::Invalid("differing Content-Length values");
                }
                length = Some(n);
            }
            Name::Connection => {
                for t in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if !t.is_empty() && !t.eq_ignore_ascii_case(b"keep-alive") {
                        connection_names = true;
                    }
                }
            }
            _ => {}
        }
    }
    let framing = match (te, chunked, length) {
        (true, true, _) => Framing::Chunked,
        (true, false, _) => Framing::Close,
        (false, _, Some(n)) => Framing::Length(n),
        (false, _, None) => Framing::Close,
    };
    Parse::Complete(ResponseHead {
        len,
        status,
        reason,
        framing,
        reusable: !close,
        connection_names,
    })
}

/// Write the client's response head from the upstream's (`head`): its
/// headers minus hop-by-hop ones (as `forward::strip_hop_by_hop`), then
/// framing, `Date` when missing, `Via`, the request id.
fn write_response_head(
    out: &mut Vec<u8>,
    head: &[u8],
    headers: &[HeaderAt],
    resp: &ResponseHead,
    framing: Framing,
    request_id: &[u8],
    close: bool,
) {
    status_line(out, resp.status, &head[resp.reason.clone()]);
    let mut has_date = false;
    let mut te_via = TeAndVia::default();
    let te_framed = matches!(resp.framing, Framing::Chunked | Framing::Close);
    for h in headers {
        let name = &head[h.name.clone()];
        let value = &head[h.value.clone()];
        let copy = match h.kind {
            Name::RequestId => false,
            k if k.is_hop_by_hop() => false,
            Name::Te | Name::Via => {
                te_via.take(out, h.kind, value);
                false
            }
            // With Transfer-Encoding, a Content-Length is not the framing.
            Name::ContentLength => !te_framed,
            Name::Date => {
                has_date = true;
                true
            }
            _ => !(resp.connection_names && named_in_connection(head, headers, name)),
        };
        if copy {
            header(out, name, value);
        }
    }
    if matches!(framing, Framing::Chunked | Framing::Close) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !has_date {
        date_header(out);
    }
    via_header(out, te_via.via);
    header(out, b"x-gateway-request-id", request_id);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// True when the comma-separated `value` has `token` (any case).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// `date: <IMF-fixdate>`, formatted once per second per thread.
fn date_header(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        header(out, b"date", d.1.as_bytes());
    });
}

/// Make room for a read.
fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_SIZE / 4 {
        buf.reserve(READ_SIZE);
    }
}

/// One timer for all deadlines of a connection (see the module doc).
struct Timer {
    sleep: Pin<Box<Sleep>>,
}

impl Timer {
    fn new() -> Self {
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(
                Instant::now() + Duration::from_secs(24 * 3600),
            )),
        }
    }

    /// `fut`'s output, or `None` once `deadline` has passed.
    async fn within<F: Future>(&mut self, deadline: Instant, fut: F) -> Option<F::Output> {
        if self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
        let mut fut = std::pin::pin!(fut);
        let sleep = &mut self.sleep;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            loop {
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) if Instant::now() >= deadline => return Poll::Ready(None),
                    // Armed for an earlier deadline: re-arm for this one.
                    Poll::Ready(()) => sleep.as_mut().reset(deadline),
                }
            }
        })
        .await
    }
}

/// The rest of a connection's bytes first, then the socket: how the
/// general path gets a connection the direct path has read from.
pub struct Rewind<T> {
    prefix: bytes::Bytes,
    io: T,
}

impl<T> Rewind<T> {
    pub fn new(prefix: BytesMut, io: T) -> Self {
        Rewind {
            prefix: prefix.freeze(),
            io,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

//! Active health checks: one tokio task per balancer that has a non-zero
//! `healthy.interval` or `unhealthy.interval`.
//!
//! Every `healthy.interval` the task probes the addresses currently
//! HEALTHY, every `unhealthy.interval` those currently UNHEALTHY (an
//! interval of 0 disables that half), at most `concurrency` probes at a
//! time. A probe is a TCP connect (`tcp`), or an HTTP/1.0 `GET http_path`
//! whose status line is read (`http`; `https` does the same over TLS,
//! verified unless `https_verify_certificate: false`, SNI `https_sni` or the
//! target host), or a call of the gRPC health-checking protocol
//! (`grpc.health.v1.Health/Check` for the server as a whole, over h2c for
//! `grpc`, over TLS with ALPN h2 for `grpcs`): `SERVING` is a success, any
//! other answer (another serving status, a gRPC error such as
//! `UNIMPLEMENTED`, a non-200 HTTP status) an HTTP failure.
//!
//! The task holds only a `Weak` to the balancer's state between rounds and
//! is also aborted when its `Balancer` is dropped, so removing an upstream
//! from the config stops its checks.

use super::balancer::{AddrState, Inner};
use super::health::{Event, HealthConfig, ProbeKind};
use futures_util::StreamExt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;
use tokio::time::{timeout, Instant};

/// Counts live checker tasks (decremented when the task ends or is aborted).
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Start the active checker of `inner`, if it has active checks and a
/// tokio runtime is available.
pub(crate) fn spawn(inner: &Arc<Inner>, live: &Arc<AtomicUsize>) -> Option<AbortHandle> {
    if !inner.hc.has_active() {
        return None;
    }
    let rt = match tokio::runtime::Handle::try_current() {
        Ok(rt) => rt,
        Err(_) => {
            tracing::error!(upstream = %inner.name, "no tokio runtime: active health checks not started");
            return None;
        }
    };
    live.fetch_add(1, Ordering::Relaxed);
    let guard = Live(live.clone());
    let weak = Arc::downgrade(inner);
    let hc = inner.hc.clone();
    let name = inner.name.clone();
    tracing::debug!(upstream = %name, "active health checker started");
    let task = rt.spawn(async move {
        let _guard = guard;
        run(weak, hc).await;
        tracing::debug!(upstream = %name, "active health checker stopped");
    });
    Some(task.abort_handle())
}

async fn run(weak: Weak<Inner>, hc: Arc<HealthConfig>) {
    let start = Instant::now();
    let mut next_healthy = hc.healthy_interval.map(|d| start + d);
    let mut next_unhealthy = hc.unhealthy_interval.map(|d| start + d);
    loop {
        let wake = match (next_healthy, next_unhealthy) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return,
        };
        tokio::time::sleep_until(wake).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.needs_initial_resolve() {
            inner.initial_resolve().await;
        } else {
            inner.refresh_if_expired().await;
        }
        let now = Instant::now();
        let due_healthy = next_healthy.is_some_and(|t| t <= now);
        let due_unhealthy = next_unhealthy.is_some_and(|t| t <= now);
        let topo = inner.topology.load_full();
        let host_header = inner.host_header.clone();
        let jobs: Vec<(Arc<AddrState>, String)> = topo
            .addrs
            .iter()
            .filter(|a| a.weight > 0)
            .filter(|a| {
                if a.health.is_healthy() {
                    due_healthy
                } else {
                    due_unhealthy
                }
            })
            .map(|a| {
                let host = host_header
                    .clone()
                    .or_else(|| inner.targets.get(a.target).map(|t| t.host.to_string()))
                    .unwrap_or_else(|| a.addr.ip().to_string());
                (a.clone(), host)
            })
            .collect();
        drop(topo);
        drop(inner);

        let results: Vec<(Arc<AddrState>, Probe)> = futures_util::stream::iter(jobs)
            .map(|(a, host)| {
                let hc = hc.clone();
                async move {
                    let r = probe(&hc, a.addr, &host).await;
                    (a, r)
                }
            })
            .buffer_unordered(hc.concurrency)
            .collect()
            .await;

        let Some(inner) = weak.upgrade() else { return };
        for (a, r) in results {
            let ev = match r {
                Probe::Connected | Probe::GrpcServing => Some(Event::Success),
                Probe::GrpcNotServing => Some(Event::HttpFailure),
                Probe::Status(s) => hc.active.classify(s),
                Probe::TcpFailure => Some(Event::TcpFailure),
                Probe::Timeout => Some(Event::Timeout),
            };
            tracing::trace!(upstream = %inner.name, address = %a.addr, probe = ?r, "active health check");
            if let Some(ev) = ev {
                inner.apply(&a, ev, &hc.active, "active");
            }
        }
        drop(inner);
        let now = Instant::now();
        if due_healthy {
            next_healthy = hc.healthy_interval.map(|d| now + d);
        }
        if due_unhealthy {
            next_unhealthy = hc.unhealthy_interval.map(|d| now + d);
        }
    }
}

/// The result of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// TCP probe connected.
    Connected,
    /// HTTP probe got this status.
    Status(u16),
    /// gRPC health check answered `SERVING`.
    GrpcServing,
    /// gRPC health check answered anything else (see the module docs).
    GrpcNotServing,
    TcpFailure,
    Timeout,
}

fn host_for_header(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => host.to_string(),
    }
}

pub(crate) async fn probe(hc: &HealthConfig, addr: SocketAddr, host: &str) -> Probe {
    let stream = match timeout(hc.timeout, TcpStream::connect(addr)).await {
        Err(_) => return Probe::Timeout,
        Ok(Err(_)) => return Probe::TcpFailure,
        Ok(Ok(s)) => s,
    };
    match (hc.probe, &hc.tls) {
        (ProbeKind::Tcp, _) => Probe::Connected,
        (ProbeKind::Grpc, _) => grpc_health(hc, stream, "http", host).await,
        (ProbeKind::Https | ProbeKind::Grpcs, Some(tls)) => {
            let name = hc.https_sni.as_deref().unwrap_or(host);
            let Ok(server_name) = crate::proxy::tls::server_name(name) else {
                return Probe::TcpFailure;
            };
            match timeout(hc.timeout, tls.connector.connect(server_name, stream)).await {
                Err(_) => Probe::Timeout,
                // Kong counts a failed handshake (e.g. an untrusted
                // certificate) as a TCP failure.
                Ok(Err(e)) => {
                    tracing::debug!(address = %addr, error = %e, "https health check: TLS handshake failed");
                    Probe::TcpFailure
                }
                Ok(Ok(tls_stream)) if hc.probe == ProbeKind::Grpcs => {
                    grpc_health(hc, tls_stream, "https", host).await
                }
                Ok(Ok(tls_stream)) => http_status(hc, tls_stream, host).await,
            }
        }
        _ => http_status(hc, stream, host).await,
    }
}

/// The path of the gRPC health-checking protocol's `Check` method.
const GRPC_HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// Call `grpc.health.v1.Health/Check` for the whole server (empty
/// `service`) over HTTP/2 on `stream`, within `hc.timeout`.
async fn grpc_health<S>(hc: &HealthConfig, stream: S, scheme: &str, host: &str) -> Probe
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Full<Bytes>>(TokioIo::new(stream));
    let (mut sender, conn) = match timeout(hc.timeout, handshake).await {
        Err(_) => return Probe::Timeout,
        Ok(Err(_)) => return Probe::TcpFailure,
        Ok(Ok(pair)) => pair,
    };
    // The connection task ends with this probe (dropped sender) or is
    // aborted on timeout.
    let conn = tokio::spawn(conn);
    let mut req = http::Request::post(format!(
        "{scheme}://{}{GRPC_HEALTH_CHECK}",
        host_for_header(host)
    ))
    .header(http::header::CONTENT_TYPE, "application/grpc")
    .header(http::header::TE, "trailers")
    .header(http::header::USER_AGENT, "gateway-healthcheck");
    for (k, v) in &hc.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    // One uncompressed message of length 0: HealthCheckRequest{service: ""}.
    let Ok(req) = req.body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))) else {
        conn.abort();
        return Probe::GrpcNotServing;
    };
    let call = async {
        let resp = sender.send_request(req).await.ok()?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.ok()?;
        let trailers = body.trailers().cloned();
        Some((parts, trailers, body.to_bytes()))
    };
    let answer = timeout(hc.timeout, call).await;
    conn.abort();
    match answer {
        Err(_) => Probe::Timeout,
        Ok(None) => Probe::TcpFailure,
        Ok(Some((parts, trailers, body))) => {
            // grpc-status is in the trailers, or in the headers of a
            // trailers-only answer.
            let status = trailers
                .as_ref()
                .and_then(|t| t.get("grpc-status"))
                .or_else(|| parts.headers.get("grpc-status"));
            let ok = parts.status == http::StatusCode::OK
                && status.is_some_and(|s| s == "0")
                && grpc_serving(&body);
            if ok {
                Probe::GrpcServing
            } else {
                Probe::GrpcNotServing
            }
        }
    }
}

/// Whether a gRPC response body (length-prefixed messages) holds a
/// `HealthCheckResponse` whose `status` (field 1) is `SERVING` (1).
fn grpc_serving(body: &[u8]) -> bool {
    // One uncompressed message: flag 0, 4-byte big-endian length.
    let Some((head, rest)) = body.split_first_chunk::<5>() else {
        return false;
    };
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if head[0] != 0 || rest.len() < len {
        return false;
    }
    let mut msg = &rest[..len];
    let mut status = 0u64;
    // Walk the fields; the last `status` wins, unknown fields are skipped.
    while let Some((key, tail)) = varint(msg) {
        msg = tail;
        match (key >> 3, key & 7) {
            (field, 0) => {
                let Some((v, tail)) = varint(msg) else {
                    return false;
                };
                msg = tail;
                if field == 1 {
                    status = v;
                }
            }
            (_, 2) => {
                let Some((n, tail)) = varint(msg) else {
                    return false;
                };
                let Some(tail) = tail.get(n as usize..) else {
                    return false;
                };
                msg = tail;
            }
            (_, 1) if msg.len() >= 8 => msg = &msg[8..],
            (_, 5) if msg.len() >= 4 => msg = &msg[4..],
            _ => return false,
        }
    }
    msg.is_empty() && status == 1
}

/// A protobuf varint and the bytes after it.
fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

/// Send `GET http_path` over `stream` and read the status line.
async fn http_status<S>(hc: &HealthConfig, mut stream: S, host: &str) -> Probe
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut req = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: gateway-healthcheck\r\n",
        hc.http_path,
        host_for_header(host)
    );
    for (k, v) in &hc.headers {
        req.push_str(k);
        req.push_str(": ");
        req.push_str(v);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    match timeout(hc.timeout, stream.write_all(req.as_bytes())).await {
        Err(_) => return Probe::Timeout,
        Ok(Err(_)) => return Probe::TcpFailure,
        Ok(Ok(())) => {}
    }
    let read_status = async {
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        loop {
            if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                return parse_status_line(&buf[..end]);
            }
            if buf.len() > 1024 {
                return None;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    match timeout(hc.timeout, read_status).await {
        Err(_) => Probe::Timeout,
        Ok(Some(status)) => Probe::Status(status),
        Ok(None) => Probe::TcpFailure,
    }
}

/// `HTTP/1.1 200 OK` -> 200.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_health_answers() {
        // HealthCheckResponse{status: SERVING}
        assert!(grpc_serving(&[0, 0, 0, 0, 2, 0x08, 1]));
        // NOT_SERVING, UNKNOWN (the default: an empty message), SERVICE_UNKNOWN
        assert!(!grpc_serving(&[0, 0, 0, 0, 2, 0x08, 2]));
        assert!(!grpc_serving(&[0, 0, 0, 0, 0]));
        assert!(!grpc_serving(&[0, 0, 0, 0, 2, 0x08, 3]));
        // An unknown length-delimited field before the status is skipped.
        assert!(grpc_serving(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 1]));
        // Compressed, truncated, or a bad varint: not serving.
        assert!(!grpc_serving(&[1, 0, 0, 0, 2, 0x08, 1]));
        assert!(!grpc_serving(&[0, 0, 0, 0, 3, 0x08, 1]));
        assert!(!grpc_serving(&[0, 0, 0, 0, 2, 0x08, 0x81]));
        assert!(!grpc_serving(&[0, 0, 0]));
    }

    #[test]
    fn status_line() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20000"), None);
    }
}

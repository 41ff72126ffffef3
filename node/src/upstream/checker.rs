//! Active health checks: one tokio task per balancer that has a non-zero
//! `healthy.interval` or `unhealthy.interval`.
//!
//! Every `healthy.interval` the task probes the addresses currently
//! HEALTHY, every `unhealthy.interval` those currently UNHEALTHY (an
//! interval of 0 disables that half), at most `concurrency` probes at a
//! time. A probe is a TCP connect (`tcp`), or an HTTP/1.0 `GET http_path`
//! whose status line is read (`http`; `https` does the same over TLS,
//! verified unless `https_verify_certificate: false`, SNI `https_sni` or the
//! target host); `grpc`/`grpcs` fall back to a TCP connect (logged when the
//! upstream is built).
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
                Probe::Connected => Some(Event::Success),
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
        (ProbeKind::Https, Some(tls)) => {
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
                Ok(Ok(tls_stream)) => http_status(hc, tls_stream, host).await,
            }
        }
        _ => http_status(hc, stream, host).await,
    }
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
    fn status_line() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20000"), None);
    }
}

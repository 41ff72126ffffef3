//! What changes in a request on its way upstream and in a response on its
//! way back: hop-by-hop headers, `X-Forwarded-*`, `X-Real-IP`, `Via`, `Host`.
//!
//! Kong's rules: `X-Forwarded-For` always gets the peer address appended;
//! `X-Forwarded-Proto/-Host/-Port/-Prefix` from the client are kept only when
//! the peer is a trusted proxy (`--trusted-ips`), otherwise set from this
//! connection. The real client address is the last untrusted address in
//! `X-Forwarded-For` when the peer is trusted (nginx's `real_ip_recursive`).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

/// The `Via` token this gateway adds.
pub const VIA: &str = "1.1 gateway";

/// A set of trusted proxy networks (CIDRs).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Parse `10.0.0.0/8,127.0.0.1` style lists. `0.0.0.0/0` and `::/0`
    /// trust everyone.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (addr, len) = match item.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (item, None),
            };
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("trusted ip {item:?}: not an IP address or CIDR"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match len {
                Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| {
                    format!("trusted ip {item:?}: prefix length must be 0..={max}")
                })?,
                None => max,
            };
            nets.push((ip, len));
        }
        Ok(TrustedProxies { nets })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.nets.iter().any(|(net, len)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
                u32::from(*n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if *len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                u128::from(*n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }

    /// The real client address: the peer, or when the peer is trusted, the
    /// right-most untrusted address of `X-Forwarded-For`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut last = peer;
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        for ip in hops.into_iter().rev() {
            last = ip;
            if !self.contains(ip) {
                break;
            }
        }
        last
    }
}

/// Removes hop-by-hop headers (RFC 9110 7.6.1), including those named in
/// `Connection`. `keep_upgrade` keeps `Upgrade`/`Connection: upgrade` for
/// protocol switches; `TE: trailers` is kept (gRPC needs it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in [
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "transfer-encoding",
        "trailer",
    ] {
        headers.remove(n);
    }
    let te_trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    headers.remove(header::TE);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

/// What the proxy knows about the client side of a request.
pub struct ClientSide<'a> {
    pub peer: SocketAddr,
    pub client_ip: IpAddr,
    pub trusted: bool,
    /// `http` or `https`.
    pub scheme: &'static str,
    pub host: Option<&'a str>,
    pub local_port: u16,
    /// The path prefix `strip_path` removed, if any.
    pub stripped_prefix: Option<&'a str>,
}

/// Set `X-Forwarded-*`, `X-Real-IP` and `Via` on an upstream request.
pub fn set_forwarded(headers: &mut HeaderMap, c: &ClientSide<'_>) {
    let xff = match headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
    {
        v if v.is_empty() => c.peer.ip().to_string(),
        v => format!("{}, {}", v.join(", "), c.peer.ip()),
    };
    set(headers, "x-forwarded-for", &xff);
    set(headers, "x-real-ip", &c.client_ip.to_string());
    let keep = |h: &HeaderMap, n: &str| c.trusted && h.contains_key(n);
    if !keep(headers, "x-forwarded-proto") {
        set(headers, "x-forwarded-proto", c.scheme);
    }
    if !keep(headers, "x-forwarded-host") {
        if let Some(host) = c.host {
            let host = host_without_port(host);
            set(headers, "x-forwarded-host", host);
        }
    }
    if !keep(headers, "x-forwarded-port") {
        let port = c.host.and_then(port_of).unwrap_or(c.local_port).to_string();
        set(headers, "x-forwarded-port", &port);
    }
    if !keep(headers, "x-forwarded-prefix") {
        match c.stripped_prefix {
            Some(p) if !p.is_empty() => set(headers, "x-forwarded-prefix", p),
            _ => {
                headers.remove("x-forwarded-prefix");
            }
        }
    }
    append_via(headers);
}

/// Append this gateway to `Via`.
pub fn append_via(headers: &mut HeaderMap) {
    let via = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(v) if !v.is_empty() => format!("{v}, {VIA}"),
        _ => VIA.to_owned(),
    };
    set(headers, "via", &via);
}

/// `name` is a lower-case literal: `from_static` borrows it, so no header
/// name is allocated per request.
fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn port_of(host: &str) -> Option<u16> {
    let rest = if host.starts_with('[') {
        host.split_once("]:").map(|(_, p)| p)?
    } else {
        host.rsplit_once(':').map(|(_, p)| p)?
    };
    rest.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_cidrs_and_real_client_ip() {
        let t = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").expect("valid");
        assert!(t.contains("10.1.2.3".parse().unwrap()));
        assert!(t.contains("127.0.0.1".parse().unwrap()));
        assert!(!t.contains("127.0.0.2".parse().unwrap()));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("nope").is_err());
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.0.0.5"),
        );
        assert_eq!(
            t.client_ip("127.0.0.1".parse().unwrap(), &h).to_string(),
            "203.0.113.7"
        );
        // An untrusted peer's claims are ignored.
        assert_eq!(
            t.client_ip("198.51.100.1".parse().unwrap(), &h).to_string(),
            "198.51.100.1"
        );
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers, deflate"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["te", "x-keep"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn forwarded_headers_from_untrusted_client_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        let c = ClientSide {
            peer: "192.0.2.1:5000".parse().unwrap(),
            client_ip: "192.0.2.1".parse().unwrap(),
            trusted: false,
            scheme: "http",
            host: Some("api.example.com:8000"),
            local_port: 8000,
            stripped_prefix: Some("/foo"),
        };
        set_forwarded(&mut h, &c);
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 192.0.2.1");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(h["x-forwarded-port"], "8000");
        assert_eq!(h["x-forwarded-prefix"], "/foo");
        assert_eq!(h["x-real-ip"], "192.0.2.1");
        assert_eq!(h["via"], VIA);
    }

    #[test]
    fn forwarded_headers_from_trusted_proxy_are_kept() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("public.example.com"),
        );
        h.insert("x-forwarded-port", HeaderValue::from_static("443"));
        let c = ClientSide {
            peer: "127.0.0.1:5000".parse().unwrap(),
            client_ip: "203.0.113.9".parse().unwrap(),
            trusted: true,
            scheme: "http",
            host: Some("gw.internal"),
            local_port: 8000,
            stripped_prefix: None,
        };
        set_forwarded(&mut h, &c);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "public.example.com");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
    }

    #[test]
    fn host_port_split() {
        assert_eq!(host_without_port("a.com:80"), "a.com");
        assert_eq!(host_without_port("a.com"), "a.com");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        assert_eq!(port_of("[::1]:81"), Some(81));
        assert_eq!(port_of("a:82"), Some(82));
        assert_eq!(port_of("a"), None);
    }
}

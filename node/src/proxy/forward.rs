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

/// Kong's `port_maps`: for a port the gateway listens on, the port clients
/// actually connect to in front of it (a NodePort, a load balancer, a
/// container port mapping). `X-Forwarded-Port` reports the mapped port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMaps {
    /// (listener port, public port)
    maps: Vec<(u16, u16)>,
}

impl PortMaps {
    /// `PUBLIC:LISTENER` pairs, comma-separated, as Kong writes them:
    /// `80:8000, 443:8443`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut maps: Vec<(u16, u16)> = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p != 0);
            let (public, listener) = item
                .split_once(':')
                .and_then(|(a, b)| Some((port(a)?, port(b)?)))
                .ok_or_else(|| {
                    format!("port map {item:?}: expected PUBLIC:LISTENER, two ports 1-65535")
                })?;
            if maps.iter().any(|(l, _)| *l == listener) {
                return Err(format!(
                    "port map {item:?}: port {listener} is mapped twice"
                ));
            }
            maps.push((listener, public));
        }
        Ok(PortMaps { maps })
    }

    /// The port `X-Forwarded-Port` reports for a request that came in on
    /// `listener`: its mapping, or `listener` itself.
    pub fn public_port(&self, listener: u16) -> u16 {
        self.maps
            .iter()
            .find(|(l, _)| *l == listener)
            .map_or(listener, |(_, public)| *public)
    }
}

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
        self.client_ip_from(
            peer,
            headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    }

    /// `client_ip`, given the request's `X-Forwarded-For` values in order.
    pub fn client_ip_from<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a str>,
    ) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut last = peer;
        let hops: Vec<IpAddr> = forwarded_for
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

/// Header names this module sets or removes, as constants so that no
/// header name is parsed or allocated per request.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes hop-by-hop headers (RFC 9110 7.6.1), including those named in
/// `Connection`. `keep_upgrade` keeps `Upgrade`/`Connection: upgrade` for
/// protocol switches; `TE: trailers` is kept (gRPC needs it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Usually there is none: one pass over the names instead of a lookup
    // per hop-by-hop name.
    if !keep_upgrade && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
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
    }
    for n in [
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::TRANSFER_ENCODING,
        header::TRAILER,
    ] {
        headers.remove(n);
    }
    // Only the first `TE` value is looked at, as before.
    if let Some(te) = headers.remove(header::TE) {
        let te_trailers = te.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
        if te_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

/// Names `strip_hop_by_hop` removes whatever `Connection` says.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::UPGRADE
        || name == header::TE
        || name == header::TRANSFER_ENCODING
        || name == header::TRAILER
        || name == header::PROXY_AUTHENTICATE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Header values made for one request, written into one shared buffer:
/// two allocations for all of them (the buffer and, at the first split,
/// its reference count), and cloning a value only counts a reference.
pub struct ValueBuf {
    buf: bytes::BytesMut,
}

impl Default for ValueBuf {
    fn default() -> Self {
        ValueBuf {
            buf: bytes::BytesMut::with_capacity(160),
        }
    }
}

impl ValueBuf {
    /// A header value with these bytes (None if not a valid value).
    pub fn bytes(&mut self, b: &[u8]) -> Option<HeaderValue> {
        self.buf.extend_from_slice(b);
        self.take()
    }

    /// An IP address as a header value.
    pub fn ip(&mut self, ip: IpAddr) -> Option<HeaderValue> {
        match ip {
            IpAddr::V4(v4) => {
                for (i, o) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.buf.extend_from_slice(b".");
                    }
                    self.push_dec(o.into());
                }
            }
            IpAddr::V6(v6) => {
                use std::fmt::Write;
                write!(self.buf, "{v6}").ok()?;
            }
        }
        self.take()
    }

    /// A port number as a header value.
    pub fn port(&mut self, port: u16) -> Option<HeaderValue> {
        self.push_dec(port.into());
        self.take()
    }

    fn push_dec(&mut self, n: u32) {
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    fn take(&mut self) -> Option<HeaderValue> {
        HeaderValue::from_maybe_shared(self.buf.split().freeze()).ok()
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
    /// The client's `Host` header value (`host`), when it has one.
    pub host_value: Option<&'a HeaderValue>,
    /// The port the client connected to: the listener's, through
    /// `--port-maps` (never the `Host` header's, as Kong).
    pub public_port: u16,
    /// The path prefix `strip_path` removed, if any.
    pub stripped_prefix: Option<&'a str>,
}

/// Set `X-Forwarded-*`, `X-Real-IP` and `Via` on an upstream request.
/// New values are written into `vb`.
pub fn set_forwarded(headers: &mut HeaderMap, c: &ClientSide<'_>, vb: &mut ValueBuf) {
    // Room for the headers added below, so the map grows at most once.
    headers.reserve(7);
    let peer_ip = vb.ip(c.peer.ip());
    let mut prev_xff = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .peekable();
    let xff = if prev_xff.peek().is_some() {
        for prev in prev_xff {
            vb.buf.extend_from_slice(prev.as_bytes());
            vb.buf.extend_from_slice(b", ");
        }
        if let Some(ip) = &peer_ip {
            vb.buf.extend_from_slice(ip.as_bytes());
        }
        vb.take()
    } else {
        peer_ip.clone()
    };
    insert(headers, X_FORWARDED_FOR, xff);
    let real_ip = if c.client_ip == c.peer.ip() {
        peer_ip
    } else {
        vb.ip(c.client_ip)
    };
    insert(headers, X_REAL_IP, real_ip);
    let keep = |h: &HeaderMap, n: &HeaderName| c.trusted && h.contains_key(n);
    if !keep(headers, &X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(c.scheme));
    }
    if !keep(headers, &X_FORWARDED_HOST) {
        if let Some(host) = c.host {
            let bare = host_without_port(host);
            let value = match c.host_value {
                Some(v) if bare.len() == host.len() => Some(v.clone()),
                _ => vb.bytes(bare.as_bytes()),
            };
            insert(headers, X_FORWARDED_HOST, value);
        }
    }
    if !keep(headers, &X_FORWARDED_PORT) {
        insert(headers, X_FORWARDED_PORT, vb.port(c.public_port));
    }
    if !keep(headers, &X_FORWARDED_PREFIX) {
        match c.stripped_prefix {
            Some(p) if !p.is_empty() => insert(headers, X_FORWARDED_PREFIX, vb.bytes(p.as_bytes())),
            _ => {
                headers.remove(X_FORWARDED_PREFIX);
            }
        }
    }
    append_via(headers);
}

/// Append this gateway to `Via`.
pub fn append_via(headers: &mut HeaderMap) {
    let via = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(v) if !v.is_empty() => HeaderValue::from_str(&format!("{v}, {VIA}")).ok(),
        _ => Some(HeaderValue::from_static(VIA)),
    };
    insert(headers, header::VIA, via);
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: Option<HeaderValue>) {
    if let Some(v) = value {
        headers.insert(name, v);
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
            host_value: None,
            public_port: 8000,
            stripped_prefix: Some("/foo"),
        };
        set_forwarded(&mut h, &c, &mut ValueBuf::default());
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
            host_value: None,
            public_port: 8000,
            stripped_prefix: None,
        };
        set_forwarded(&mut h, &c, &mut ValueBuf::default());
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
    }

    #[test]
    fn port_maps_parse_as_kong_writes_them() {
        let m = PortMaps::parse("80:8000, 443:8443").expect("parse");
        assert_eq!(m.public_port(8000), 80);
        assert_eq!(m.public_port(8443), 443);
        assert_eq!(m.public_port(9000), 9000, "unmapped: the listener's own");
        assert_eq!(PortMaps::parse("").expect("empty"), PortMaps::default());
        for (bad, says) in [
            ("80", "expected PUBLIC:LISTENER"),
            ("80:x", "expected PUBLIC:LISTENER"),
            ("0:8000", "expected PUBLIC:LISTENER"),
            ("80:70000", "expected PUBLIC:LISTENER"),
            ("80:8000,81:8000", "port 8000 is mapped twice"),
        ] {
            let e = PortMaps::parse(bad).expect_err(bad);
            assert!(e.contains(says) && e.contains('"'), "{bad}: {e}");
        }
    }
}

//! Hosts: `host[:port]` parsing and case-insensitive host maps.
//!
//! Kong turns a route host into `http.host == "h"` (plain), `http.host =^
//! ".example.com"` (for `*.example.com`: a suffix test, so any number of
//! leading labels matches) or `http.host ^= "example."` (for `example.*`: a
//! prefix test), and a `:port` into an extra `net.dst.port == port` test.
//!
//! At lookup a request host is looked up whole in the plain-host map, and
//! each suffix starting at a `.` and each prefix ending at a `.` in the
//! wildcard maps, but only when a key of that length exists (each map keeps
//! a bitset of its key lengths). Hashes are FNV-1a over ASCII-lower-cased
//! bytes (suffixes hashed right to left), so nothing is allocated or
//! lower-cased per request; a hit is confirmed by a case-insensitive compare.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Split `host[:port]`. A bracketed IPv6 literal keeps its brackets. A port
/// that is not a number in 0..=65535 leaves the whole string as the host, as
/// Kong's `split_host_port` does; an empty port (`host:`) is dropped.
pub(crate) fn split_host_port(h: &str) -> (&str, Option<u16>) {
    let colon = if h.starts_with('[') {
        match h.find(']') {
            Some(end) if h.as_bytes().get(end + 1) == Some(&b':') => end + 1,
            _ => return (h, None),
        }
    } else {
        match h.find(':') {
            Some(c) => c,
            None => return (h, None),
        }
    };
    let port = &h[colon + 1..];
    if port.is_empty() {
        return (&h[..colon], None);
    }
    if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return (h, None);
    }
    match port.parse::<u32>() {
        Ok(p) if p <= u32::from(u16::MAX) => (&h[..colon], Some(p as u16)),
        _ => (h, None),
    }
}

/// A route host, lower-cased, without its port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum HostPattern {
    Exact(String),
    /// `*.example.com` -> `.example.com`: the request host must end with it.
    Suffix(String),
    /// `example.*` -> `example.`: the request host must start with it.
    Prefix(String),
}

impl HostPattern {
    pub(crate) fn is_match(&self, host: &str) -> bool {
        let h = host.as_bytes();
        match self {
            HostPattern::Exact(p) => h.eq_ignore_ascii_case(p.as_bytes()),
            HostPattern::Suffix(s) => {
                h.len() >= s.len() && h[h.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
            HostPattern::Prefix(s) => {
                h.len() >= s.len() && h[..s.len()].eq_ignore_ascii_case(s.as_bytes())
            }
        }
    }
}

/// Parse a route host as Kong's `compat.lua` does: split the port, then a
/// leading `*` makes a suffix pattern of the rest, else a trailing `*` a
/// prefix pattern.
pub(crate) fn parse_route_host(h: &str) -> (HostPattern, Option<u16>) {
    let (host, port) = split_host_port(h);
    let host = host.to_ascii_lowercase();
    let pat = if let Some(rest) = host.strip_prefix('*') {
        HostPattern::Suffix(rest.to_owned())
    } else if let Some(rest) = host.strip_suffix('*') {
        HostPattern::Prefix(rest.to_owned())
    } else {
        HostPattern::Exact(host)
    };
    (pat, port)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[inline]
pub(crate) fn step(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(FNV_PRIME)
}

pub(crate) fn hash_fwd(b: &[u8]) -> u64 {
    b.iter().fold(FNV_OFFSET, |h, &c| step(h, c))
}

pub(crate) fn hash_rev(b: &[u8]) -> u64 {
    b.iter().rev().fold(FNV_OFFSET, |h, &c| step(h, c))
}

/// Passes a pre-computed u64 through, with a final mix so the low bits the
/// table indexes by are well spread.
#[derive(Default)]
pub(crate) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = step(self.0, b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Case-insensitive map from a host key to a bucket id. Keys are stored
/// lower-cased; the caller supplies the hash (forward or reverse, always the
/// same kind for one map).
/// Keys sharing one hash, each with its bucket id.
type Slot = Vec<(Box<[u8]>, u32)>;

#[derive(Default)]
pub(crate) struct HostMap {
    map: HashMap<u64, Slot, BuildHasherDefault<PreHashed>>,
    /// Bit `n` set when some key is `n` bytes long (n < 256); lets a lookup
    /// skip hashing and probing candidate keys of absent lengths.
    lens: [u64; 4],
    /// Some key is 256 bytes or longer.
    long: bool,
}

impl HostMap {
    pub(crate) fn insert(&mut self, hash: u64, key: &str, bucket: u32) {
        if key.len() < 256 {
            self.lens[key.len() / 64] |= 1 << (key.len() % 64);
        } else {
            self.long = true;
        }
        let slot = self.map.entry(hash).or_default();
        let key = key.to_ascii_lowercase().into_bytes().into_boxed_slice();
        if !slot.iter().any(|(k, _)| *k == key) {
            slot.push((key, bucket));
        }
    }

    #[inline]
    pub(crate) fn get(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let slot = self.map.get(&hash)?;
        slot.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, b)| *b)
    }

    /// Whether a key of `len` bytes may exist.
    #[inline]
    pub(crate) fn has_len(&self, len: usize) -> bool {
        if len < 256 {
            self.lens[len / 64] & (1 << (len % 64)) != 0
        } else {
            self.long
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_ports() {
        // Cases from Kong's `split_port` spec, for the parts that apply.
        assert_eq!(split_host_port(""), ("", None));
        assert_eq!(split_host_port("localhost"), ("localhost", None));
        assert_eq!(split_host_port("localhost:"), ("localhost", None));
        assert_eq!(split_host_port("localhost:80"), ("localhost", Some(80)));
        assert_eq!(split_host_port("localhost:23h"), ("localhost:23h", None));
        assert_eq!(split_host_port("localhost/24"), ("localhost/24", None));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("[::1]:"), ("[::1]", None));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(split_host_port("[::1]:80b"), ("[::1]:80b", None));
        assert_eq!(split_host_port("a:99999"), ("a:99999", None));
        assert_eq!(split_host_port("a:65535"), ("a", Some(65535)));
        assert_eq!(split_host_port("*.a.com:8080"), ("*.a.com", Some(8080)));
    }

    #[test]
    fn patterns() {
        let (p, port) = parse_route_host("*.Example.com:81");
        assert_eq!(p, HostPattern::Suffix(".example.com".into()));
        assert_eq!(port, Some(81));
        assert!(p.is_match("a.b.EXAMPLE.com"));
        assert!(!p.is_match("example.com"));
        let (p, _) = parse_route_host("example.*");
        assert_eq!(p, HostPattern::Prefix("example.".into()));
        assert!(p.is_match("example.org"));
        assert!(p.is_match("Example.co.uk"));
        assert!(!p.is_match("example"));
        let (p, port) = parse_route_host("a.com");
        assert_eq!(
            (p.clone(), port),
            (HostPattern::Exact("a.com".into()), None)
        );
        assert!(p.is_match("A.COM"));
    }

    #[test]
    fn hashes_ignore_case_and_map_confirms_key() {
        assert_eq!(hash_fwd(b"A.Com"), hash_fwd(b"a.com"));
        assert_eq!(hash_rev(b".A.Com"), hash_rev(b".a.com"));
        let mut m = HostMap::default();
        m.insert(hash_fwd(b"a.com"), "a.com", 3);
        assert_eq!(m.get(hash_fwd(b"A.COM"), b"A.COM"), Some(3));
        // Same hash slot, different key: confirmed by comparison.
        assert_eq!(m.get(hash_fwd(b"a.com"), b"b.com"), None);
    }
}

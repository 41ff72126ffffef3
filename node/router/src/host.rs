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

#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const EMPTY: u64 = u64::MAX;
/// Keys up to this length live in their slot (one cache line per probe).
const INLINE_KEY: usize = 32;

#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    /// [`EMPTY`] for a free slot.
    value: u64,
    key_len: u32,
    /// Offset in `HostMap::keys` when the key is longer than `INLINE_KEY`.
    key_ext: u32,
    key_inline: [u8; INLINE_KEY],
}

/// Case-insensitive map from a host key to a value (a bucket), as a flat
/// open-addressing table (linear probing, load factor at most 1/2); keys of
/// up to 32 bytes are stored in their slot, so a lookup usually touches one
/// slot and nothing else. Keys are stored lower-cased; the caller supplies
/// the hash (forward or reverse, always the same kind for one map).
#[derive(Debug, Default)]
pub(crate) struct HostMap {
    slots: Vec<Slot>,
    keys: Vec<u8>,
    /// Bit `n` set when some key is `n` bytes long (n < 256); lets a lookup
    /// skip hashing and probing candidate keys of absent lengths.
    lens: [u64; 4],
    /// Some key is 256 bytes or longer.
    long: bool,
}

impl HostMap {
    /// Build from `(hash, key, value)`; keys must be distinct
    /// (case-insensitively).
    pub(crate) fn new(entries: Vec<(u64, String, u64)>) -> HostMap {
        let mut m = HostMap::default();
        if entries.is_empty() {
            return m;
        }
        let cap = (entries.len() * 2).next_power_of_two();
        let mask = cap - 1;
        let free = Slot {
            hash: 0,
            value: EMPTY,
            key_len: 0,
            key_ext: 0,
            key_inline: [0; INLINE_KEY],
        };
        m.slots = vec![free; cap];
        for (hash, key, value) in entries {
            let key = key.to_ascii_lowercase();
            let len = key.len();
            if len < 256 {
                m.lens[len / 64] |= 1 << (len % 64);
            } else {
                m.long = true;
            }
            let mut slot = Slot {
                hash,
                value,
                key_len: len as u32,
                ..free
            };
            if len <= INLINE_KEY {
                slot.key_inline[..len].copy_from_slice(key.as_bytes());
            } else {
                slot.key_ext = m.keys.len() as u32;
                m.keys.extend_from_slice(key.as_bytes());
            }
            let mut i = (mix(hash) as usize) & mask;
            while m.slots[i].value != EMPTY {
                i = (i + 1) & mask;
            }
            m.slots[i] = slot;
        }
        m
    }

    #[inline]
    pub(crate) fn get(&self, hash: u64, key: &[u8]) -> Option<u64> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = (mix(hash) as usize) & mask;
        loop {
            let s = &self.slots[i];
            if s.value == EMPTY {
                return None;
            }
            if s.hash == hash && s.key_len as usize == key.len() {
                let stored = if key.len() <= INLINE_KEY {
                    &s.key_inline[..key.len()]
                } else {
                    let start = s.key_ext as usize;
                    &self.keys[start..start + key.len()]
                };
                if stored.eq_ignore_ascii_case(key) {
                    return Some(s.value);
                }
            }
            i = (i + 1) & mask;
        }
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
        let long = "x".repeat(40) + ".com";
        let m = HostMap::new(vec![
            (hash_fwd(long.as_bytes()), long.to_uppercase(), 9),
            (hash_fwd(b"a.com"), "a.com".into(), 3),
            (hash_fwd(b"b.com"), "B.com".into(), 4),
            // Forced collision: same hash, different key.
            (hash_fwd(b"a.com"), "c.com".into(), 5),
        ]);
        assert_eq!(m.get(hash_fwd(b"A.COM"), b"A.COM"), Some(3));
        assert_eq!(m.get(hash_fwd(b"b.com"), b"b.COM"), Some(4));
        assert_eq!(m.get(hash_fwd(b"a.com"), b"c.com"), Some(5));
        assert_eq!(m.get(hash_fwd(b"a.com"), b"d.com"), None);
        assert_eq!(m.get(hash_fwd(b"zz"), b"zz"), None);
        assert_eq!(m.get(hash_fwd(long.as_bytes()), long.as_bytes()), Some(9));
        assert!(m.has_len(5) && !m.has_len(4));
        assert_eq!(HostMap::new(vec![]).get(1, b"x"), None);
    }
}

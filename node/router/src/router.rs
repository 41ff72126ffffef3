//! [`Router::build`] and [`Router::find`].
//!
//! ## Build
//! Every route is split into candidates (see `priority`). Candidates are
//! sorted by (Kong priority descending, field kinds descending, route index
//! ascending) into *classes* of equal (priority, field kinds), and every
//! (candidate, host, path) triple becomes an
//! [`Entry`] whose 64-bit `rank` packs, most significant first:
//!
//! | bits  | field |
//! |-------|-------|
//! | 40-63 | priority class (0 = highest priority) |
//! | 39    | 1 when the host entry has no port (port-specific wins ties) |
//! | 15-38 | ordinal of the route inside its class (declaration order) |
//! | 0-14  | index of the path inside the route (first declared wins) |
//!
//! so "lowest rank that matches" is exactly the documented order. Entries
//! are filed by host into buckets (an exact-host map, a `*.suffix` map, a
//! `prefix.*` map, a list of odd wildcard patterns, and one bucket for
//! candidates without hosts). A bucket of at most 16 entries is a list
//! sorted by rank, each entry with its path key; a larger one is a radix
//! tree of path keys (see `trie`).
//!
//! ## Find
//! The request host selects at most `1 + 2 * (dots in host) + odd patterns +
//! 1` buckets (wildcard maps are probed only for suffix/prefix lengths they
//! contain); each bucket's list is scanned, or its tree walked along the
//! request path; entries are scanned best first, skipping any whose rank cannot
//! beat the best match so far, and stopping at the first that matches
//! (port and method mask from the entry itself, then SNI and headers only
//! for routes that have them, then the regex). Regexes therefore run only
//! when their candidate could still win. Nothing is allocated.

use std::collections::HashMap;

use gateway_config::Route;

use crate::cond::{flags, method_bit, method_mask, Conds, Ctx, NEEDS_CONDS};
use crate::host::{self, parse_route_host, split_host_port, HostMap, HostPattern};
use crate::literal::literal_prefix;
use crate::priority::{field_kinds, split, PathSpec, Priority};
use crate::re::{path_regex, PathRegex, RegexCache};
use crate::trie::{Arena, Entry, ANY_PORT, KIND_NO_PATH, KIND_PREFIX, KIND_REGEX_BASE};
use crate::{normalize_path, RequestView, RouteMatch, RouterError};

const CLASS_BITS: u32 = 24;
const ORD_BITS: u32 = 24;
const PATH_BITS: u32 = 15;
const PORT_SHIFT: u32 = PATH_BITS + ORD_BITS;
const CLASS_SHIFT: u32 = PORT_SHIFT + 1;
const MAX_PATH_IDX: usize = (1 << PATH_BITS) - 1;

/// A wildcard host that is neither `*.x` nor `x.*` with a dot at the joint
/// (e.g. `*example.com`): checked linearly.
#[derive(Debug)]
struct OddWildcard {
    pattern: HostPattern,
    bucket: u64,
}

/// Buckets with at most this many entries are a rank-sorted list instead
/// of a tree: scanning a few contiguous lines beats a chain of dependent
/// node loads when the data is not in cache.
const FLAT_MAX: usize = 16;

/// A bucket handle: low 32 bits a trie root or the start of a flat list,
/// high 32 bits `TRIE` or the flat list's length.
const TRIE: u64 = u32::MAX as u64;

fn trie_bucket(root: u32) -> u64 {
    (TRIE << 32) | u64::from(root)
}

fn flat_bucket(start: usize, len: usize) -> u64 {
    ((len as u64) << 32) | start as u64
}

#[derive(Debug, Clone, Copy)]
struct FlatEntry {
    entry: Entry,
    key_start: u32,
    key_len: u32,
}

/// A compiled, immutable route table. Cheap to share (`Send + Sync`).
pub struct Router {
    /// Per route: the SNI / header / unusual-method conditions, `None` for
    /// a route without any (most routes; 8 bytes instead of 48 each).
    conds: Vec<Option<Box<Conds>>>,
    /// Some route has header conditions.
    matches_headers: bool,
    /// Path regexes, searched anchored at the start of the path.
    regexes: Vec<PathRegex>,
    arena: Arena,
    /// Plain hosts -> trie root.
    exact: HostMap,
    /// `.suffix` (keyed by reverse hash) -> trie root.
    suffix: HostMap,
    /// `prefix.` (keyed by forward hash) -> trie root.
    prefix: HostMap,
    odd: Vec<OddWildcard>,
    /// The bucket of the candidates without hosts.
    hostless: Option<u64>,
    /// Entries of small buckets, each bucket contiguous and sorted by rank.
    flat: Vec<FlatEntry>,
    /// Path keys of `flat`, each bucket contiguous.
    flat_keys: Vec<u8>,
    routes: usize,
    candidates: usize,
    buckets: usize,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes)
            .field("candidates", &self.candidates)
            .field("regexes", &self.regexes.len())
            .field("buckets", &self.buckets)
            .field("trie_nodes", &self.arena.node_count())
            .finish()
    }
}

#[derive(Clone, Copy)]
struct Best {
    rank: u64,
    route: u32,
    len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BucketKey {
    Hostless,
    Host(HostPattern),
}

impl Router {
    /// Compile a router from the routes to serve. The caller filters out
    /// routes it does not want served (e.g. of disabled services); the index
    /// of a route in `routes` is its identity in [`RouteMatch::route`] and
    /// the final tie-break (lower index wins).
    pub fn build(routes: &[Route]) -> Result<Router, RouterError> {
        // 1. Compile paths and split routes into candidates.
        struct Pending {
            route: usize,
            /// Kong's priority, then our field-kind tie-break.
            key: (Priority, u8),
            paths: Vec<usize>,
        }
        let mut regexes: Vec<PathRegex> = Vec::new();
        let mut regex_cache = RegexCache::default();
        // Per route: per path, (trie key, kind).
        let mut path_keys: Vec<Vec<(Vec<u8>, u32)>> = Vec::with_capacity(routes.len());
        let mut pending: Vec<Pending> = Vec::new();
        let mut conds: Vec<Option<Box<Conds>>> = Vec::with_capacity(routes.len());
        for (ri, route) in routes.iter().enumerate() {
            let mut specs = Vec::with_capacity(route.paths.len());
            let mut keys = Vec::with_capacity(route.paths.len());
            for (pi, p) in route.paths.iter().enumerate() {
                if let Some(src) = p.strip_prefix('~') {
                    let re = path_regex(src, &mut regex_cache).map_err(|e| {
                        RouterError::InvalidRegex {
                            route: ri,
                            path: pi,
                            message: e.to_string(),
                        }
                    })?;
                    let kind = KIND_REGEX_BASE + regexes.len() as u32;
                    regexes.push(re);
                    keys.push((literal_prefix(src).into_bytes(), kind));
                    specs.push(PathSpec::Regex);
                } else {
                    let norm = normalize_path(p)
                        .map_err(|error| RouterError::InvalidPath {
                            route: ri,
                            path: pi,
                            error,
                        })?
                        .into_owned();
                    keys.push((norm.clone().into_bytes(), KIND_PREFIX));
                    specs.push(PathSpec::Prefix(norm));
                }
            }
            let fields = field_kinds(route);
            for g in split(route, &specs) {
                pending.push(Pending {
                    route: ri,
                    key: (g.priority, fields),
                    paths: g.paths,
                });
            }
            path_keys.push(keys);
            let c = Conds::compile(ri, route)?;
            conds.push((!c.is_empty()).then(|| Box::new(c)));
        }
        if regexes.len() as u64 >= u64::from(u32::MAX - KIND_REGEX_BASE) {
            return Err(RouterError::TooLarge {
                what: "regex paths",
                count: regexes.len(),
                max: (u32::MAX - KIND_REGEX_BASE) as usize,
            });
        }

        // 2. Order candidates and assign (class, ordinal).
        pending.sort_by(|a, b| b.key.cmp(&a.key).then(a.route.cmp(&b.route)));
        let mut class_ord: Vec<(u64, u64)> = Vec::with_capacity(pending.len());
        let (mut class, mut ord) = (0u64, 0u64);
        for (i, p) in pending.iter().enumerate() {
            if i > 0 {
                if p.key != pending[i - 1].key {
                    class += 1;
                    ord = 0;
                } else {
                    ord += 1;
                }
            }
            if class >= 1 << CLASS_BITS || ord >= 1 << ORD_BITS {
                return Err(RouterError::TooLarge {
                    what: "route candidates",
                    count: pending.len(),
                    max: 1 << ORD_BITS,
                });
            }
            class_ord.push((class, ord));
        }

        // 3. File entries into host buckets.
        let mut bucket_ids: HashMap<BucketKey, u32> = HashMap::new();
        let mut bucket_items: Vec<Vec<(Vec<u8>, Entry)>> = Vec::new();
        for (ci, p) in pending.iter().enumerate() {
            let (class, ord) = class_ord[ci];
            let route = &routes[p.route];
            let hosts: Vec<(BucketKey, u32)> = if route.hosts.is_empty() {
                vec![(BucketKey::Hostless, ANY_PORT)]
            } else {
                route
                    .hosts
                    .iter()
                    .map(|h| {
                        let (pat, port) = parse_route_host(h);
                        (BucketKey::Host(pat), port.map_or(ANY_PORT, u32::from))
                    })
                    .collect()
            };
            let keys = &path_keys[p.route];
            for (bkey, port) in hosts {
                let next = bucket_items.len() as u32;
                let b = *bucket_ids.entry(bkey).or_insert(next);
                if b == next {
                    bucket_items.push(Vec::new());
                }
                let port_bit = u64::from(port == ANY_PORT);
                let base = (class << CLASS_SHIFT) | (port_bit << PORT_SHIFT) | (ord << PATH_BITS);
                let entry = Entry {
                    rank: base,
                    route: p.route as u32,
                    port,
                    kind: KIND_NO_PATH,
                    methods: method_mask(route),
                    flags: flags(route),
                };
                let items = &mut bucket_items[b as usize];
                if p.paths.is_empty() {
                    items.push((Vec::new(), entry));
                }
                for &pi in &p.paths {
                    let (key, kind) = &keys[pi];
                    items.push((
                        key.clone(),
                        Entry {
                            rank: base | pi.min(MAX_PATH_IDX) as u64,
                            kind: *kind,
                            ..entry
                        },
                    ));
                }
            }
        }

        // 4. Build each bucket (a flat list or a tree) and the host maps.
        let mut arena = Arena::default();
        let mut flat: Vec<FlatEntry> = Vec::new();
        let mut flat_keys: Vec<u8> = Vec::new();
        let handles: Vec<u64> = bucket_items
            .into_iter()
            .map(|mut items| {
                if items.len() > FLAT_MAX {
                    return trie_bucket(arena.build(items));
                }
                items.sort_by_key(|(_, e)| e.rank);
                let start = flat.len();
                for (key, entry) in &items {
                    flat.push(FlatEntry {
                        entry: *entry,
                        key_start: flat_keys.len() as u32,
                        key_len: key.len() as u32,
                    });
                    flat_keys.extend_from_slice(key);
                }
                flat_bucket(start, items.len())
            })
            .collect();
        let (mut exact, mut suffix, mut prefix) = (Vec::new(), Vec::new(), Vec::new());
        let mut odd = Vec::new();
        let mut hostless = None;
        let buckets = handles.len();
        for (key, b) in bucket_ids {
            let bucket = handles[b as usize];
            match key {
                BucketKey::Hostless => hostless = Some(bucket),
                BucketKey::Host(HostPattern::Exact(h)) => {
                    exact.push((host::hash_fwd(h.as_bytes()), h, bucket))
                }
                BucketKey::Host(HostPattern::Suffix(s)) if s.starts_with('.') => {
                    suffix.push((host::hash_rev(s.as_bytes()), s, bucket))
                }
                BucketKey::Host(HostPattern::Prefix(s)) if s.ends_with('.') => {
                    prefix.push((host::hash_fwd(s.as_bytes()), s, bucket))
                }
                BucketKey::Host(pattern) => odd.push((b, OddWildcard { pattern, bucket })),
            }
        }
        // Odd patterns are checked in a fixed order (any order is correct).
        odd.sort_by_key(|(b, _)| *b);
        // The tables live as long as the config is served; growing them
        // by doubling left up to half of each unused (1.3 MB of trie nodes
        // at 10,000 routes).
        arena.shrink_to_fit();
        flat.shrink_to_fit();
        flat_keys.shrink_to_fit();
        regexes.shrink_to_fit();
        Ok(Router {
            matches_headers: conds.iter().flatten().any(|c| c.has_headers()),
            conds,
            regexes,
            arena,
            exact: HostMap::new(exact),
            suffix: HostMap::new(suffix),
            prefix: HostMap::new(prefix),
            odd: odd.into_iter().map(|(_, o)| o).collect(),
            hostless,
            flat,
            flat_keys,
            routes: routes.len(),
            candidates: pending.len(),
            buckets,
        })
    }

    /// True when some route matches on request headers (then
    /// `RequestView::headers` must hold the request's headers; otherwise
    /// the router never reads them).
    pub fn matches_headers(&self) -> bool {
        self.matches_headers
    }

    /// Number of routes the router was built from.
    pub fn route_count(&self) -> usize {
        self.routes
    }

    /// The best route for this request, or `None` (404).
    pub fn find(&self, req: &RequestView<'_>) -> Option<RouteMatch> {
        let (host, port) = match req.host {
            Some(h) if !h.is_empty() => {
                let (h, p) = split_host_port(h);
                (Some(h), p)
            }
            _ => (None, None),
        };
        let ctx = Ctx {
            method: req.method,
            method_bit: method_bit(req.method),
            sni: req.sni.map(str::as_bytes),
            headers: req.headers,
            port,
            path: req.path,
        };
        let mut best = Best {
            rank: u64::MAX,
            route: 0,
            len: 0,
        };
        if let Some(hs) = host.filter(|h| !h.is_empty()) {
            let h = hs.as_bytes();
            if self.exact.has_len(h.len()) {
                if let Some(bucket) = self.exact.get(host::hash_fwd(h), h) {
                    self.search(bucket, &ctx, &mut best);
                }
            }
            for (i, _) in h.iter().enumerate().filter(|(_, c)| **c == b'.') {
                let suffix = &h[i..];
                if self.suffix.has_len(suffix.len()) {
                    if let Some(bucket) = self.suffix.get(host::hash_rev(suffix), suffix) {
                        self.search(bucket, &ctx, &mut best);
                    }
                }
                let prefix = &h[..=i];
                if self.prefix.has_len(prefix.len()) {
                    if let Some(bucket) = self.prefix.get(host::hash_fwd(prefix), prefix) {
                        self.search(bucket, &ctx, &mut best);
                    }
                }
            }
            for odd in &self.odd {
                if odd.pattern.is_match(hs) {
                    self.search(odd.bucket, &ctx, &mut best);
                }
            }
        }
        if let Some(bucket) = self.hostless {
            self.search(bucket, &ctx, &mut best);
        }
        (best.rank != u64::MAX).then_some(RouteMatch {
            route: best.route as usize,
            matched_path_len: best.len,
        })
    }

    /// Search one bucket.
    #[inline]
    fn search(&self, bucket: u64, ctx: &Ctx<'_>, best: &mut Best) {
        let low = (bucket & 0xffff_ffff) as usize;
        match bucket >> 32 {
            TRIE => self.search_trie(low as u32, ctx, best),
            len => self.search_flat(low, len as usize, ctx, best),
        }
    }

    /// A small bucket: its entries best first; the first that matches wins.
    fn search_flat(&self, start: usize, len: usize, ctx: &Ctx<'_>, best: &mut Best) {
        let path = ctx.path.as_bytes();
        for f in &self.flat[start..start + len] {
            if f.entry.rank >= best.rank {
                return;
            }
            let ks = f.key_start as usize;
            if !path.starts_with(&self.flat_keys[ks..ks + f.key_len as usize]) {
                continue;
            }
            if let Some(len) = self.check(&f.entry, f.key_len as usize, ctx) {
                *best = Best {
                    rank: f.entry.rank,
                    route: f.entry.route,
                    len,
                };
                return;
            }
        }
    }

    /// Walk a bucket's tree along the path.
    fn search_trie(&self, root: u32, ctx: &Ctx<'_>, best: &mut Best) {
        let path = ctx.path.as_bytes();
        let mut node = self.arena.node(root);
        let mut pos = 0usize;
        loop {
            if node.min_rank >= best.rank {
                return;
            }
            let label = self.arena.label(node);
            if !path[pos..].starts_with(label) {
                return;
            }
            pos += label.len();
            for e in self.arena.entries(node) {
                if e.rank >= best.rank {
                    break;
                }
                if let Some(len) = self.check(e, pos, ctx) {
                    *best = Best {
                        rank: e.rank,
                        route: e.route,
                        len,
                    };
                    break;
                }
            }
            if pos >= path.len() {
                return;
            }
            match self.arena.child(node, path[pos]) {
                Some(c) => node = self.arena.node(c),
                None => return,
            }
        }
    }

    /// Whether the entry, whose path key (`depth` bytes) prefixes the path,
    /// matches the request; `Some(matched_path_len)` if so.
    #[inline]
    fn check(&self, e: &Entry, depth: usize, ctx: &Ctx<'_>) -> Option<usize> {
        if e.port != ANY_PORT && ctx.port.map(u32::from) != Some(e.port) {
            return None;
        }
        let conds = || self.conds[e.route as usize].as_deref();
        if !ctx.method_allowed(e.methods, conds) {
            return None;
        }
        if e.flags & NEEDS_CONDS != 0 && !conds().is_none_or(|c| c.matches(ctx)) {
            return None;
        }
        match e.kind {
            KIND_NO_PATH => Some(0),
            KIND_PREFIX => Some(depth),
            k => self.regexes[(k - KIND_REGEX_BASE) as usize].match_end(ctx.path),
        }
    }
}

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
//! candidates without hosts), and inside a bucket by path key into a radix
//! tree (see `trie`).
//!
//! ## Find
//! The request host selects at most `1 + 2 * (dots in host) + odd patterns +
//! 1` buckets; each bucket's tree is walked along the request path; at each
//! node the entries are scanned best first, skipping any whose rank cannot
//! beat the best match so far, and stopping at the first that matches
//! (port, methods, SNI, headers, then regex). Regexes therefore run only
//! when their candidate could still win. Nothing is allocated.

use std::collections::HashMap;

use gateway_config::Route;
use regex_automata::meta::Regex as MetaRegex;
use regex_automata::{Anchored, Input};

use crate::cond::{method_bit, Conds, Ctx};
use crate::host::{self, parse_route_host, split_host_port, HostMap, HostPattern};
use crate::literal::literal_prefix;
use crate::priority::{field_kinds, split, PathSpec, Priority};
use crate::re::path_regex;
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
    root: u32,
}

/// A compiled, immutable route table. Cheap to share (`Send + Sync`).
pub struct Router {
    /// Candidate -> route index (a candidate is a route restricted to one
    /// group of its paths).
    cands: Vec<u32>,
    /// Per route: the conditions the index does not cover.
    conds: Vec<Conds>,
    /// Path regexes, searched anchored at the start of the path.
    regexes: Vec<MetaRegex>,
    arena: Arena,
    /// Bucket roots, indexed by bucket id.
    roots: Vec<u32>,
    exact: HostMap,
    /// Keyed by the reverse hash of `.suffix`.
    suffix: HostMap,
    /// Keyed by the forward hash of `prefix.`.
    prefix: HostMap,
    odd: Vec<OddWildcard>,
    hostless: Option<u32>,
    routes: usize,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes)
            .field("candidates", &self.cands.len())
            .field("regexes", &self.regexes.len())
            .field("buckets", &self.roots.len())
            .field("trie_nodes", &self.arena.node_count())
            .finish()
    }
}

#[derive(Clone, Copy)]
struct Best {
    rank: u64,
    cand: u32,
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
        let mut regexes: Vec<MetaRegex> = Vec::new();
        // Per route: per path, (trie key, kind).
        let mut path_keys: Vec<Vec<(Vec<u8>, u32)>> = Vec::with_capacity(routes.len());
        let mut pending: Vec<Pending> = Vec::new();
        let mut conds: Vec<Conds> = Vec::with_capacity(routes.len());
        for (ri, route) in routes.iter().enumerate() {
            let mut specs = Vec::with_capacity(route.paths.len());
            let mut keys = Vec::with_capacity(route.paths.len());
            for (pi, p) in route.paths.iter().enumerate() {
                if let Some(src) = p.strip_prefix('~') {
                    let re = path_regex(src).map_err(|e| RouterError::InvalidRegex {
                        route: ri,
                        path: pi,
                        message: e.to_string(),
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
            conds.push(Conds::compile(ri, route)?);
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
        let mut cands: Vec<u32> = Vec::with_capacity(pending.len());
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
            cands.push(p.route as u32);
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
                let items = &mut bucket_items[b as usize];
                if p.paths.is_empty() {
                    items.push((
                        Vec::new(),
                        Entry {
                            rank: base,
                            cand: ci as u32,
                            port,
                            kind: KIND_NO_PATH,
                        },
                    ));
                }
                for &pi in &p.paths {
                    let (key, kind) = &keys[pi];
                    items.push((
                        key.clone(),
                        Entry {
                            rank: base | pi.min(MAX_PATH_IDX) as u64,
                            cand: ci as u32,
                            port,
                            kind: *kind,
                        },
                    ));
                }
            }
        }

        // 4. Build one tree per bucket and the host maps.
        let mut arena = Arena::default();
        let mut roots = Vec::with_capacity(bucket_items.len());
        for items in bucket_items {
            roots.push(arena.build(items));
        }
        let mut router = Router {
            cands,
            conds,
            regexes,
            arena,
            roots,
            exact: HostMap::default(),
            suffix: HostMap::default(),
            prefix: HostMap::default(),
            odd: Vec::new(),
            hostless: None,
            routes: routes.len(),
        };
        let mut keys: Vec<(BucketKey, u32)> = bucket_ids.into_iter().collect();
        keys.sort_by_key(|(_, b)| *b);
        for (key, b) in keys {
            match key {
                BucketKey::Hostless => router.hostless = Some(b),
                BucketKey::Host(HostPattern::Exact(h)) => {
                    router.exact.insert(host::hash_fwd(h.as_bytes()), &h, b)
                }
                BucketKey::Host(HostPattern::Suffix(s)) if s.starts_with('.') => {
                    router.suffix.insert(host::hash_rev(s.as_bytes()), &s, b)
                }
                BucketKey::Host(HostPattern::Prefix(s)) if s.ends_with('.') => {
                    router.prefix.insert(host::hash_fwd(s.as_bytes()), &s, b)
                }
                BucketKey::Host(pattern) => router.odd.push(OddWildcard {
                    pattern,
                    root: router.roots[b as usize],
                }),
            }
        }
        Ok(router)
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
            cand: 0,
            len: 0,
        };
        if let Some(hs) = host.filter(|h| !h.is_empty()) {
            let h = hs.as_bytes();
            if self.exact.has_len(h.len()) {
                if let Some(b) = self.exact.get(host::hash_fwd(h), h) {
                    self.search(b, &ctx, &mut best);
                }
            }
            for (i, _) in h.iter().enumerate().filter(|(_, c)| **c == b'.') {
                let suffix = &h[i..];
                if self.suffix.has_len(suffix.len()) {
                    if let Some(b) = self.suffix.get(host::hash_rev(suffix), suffix) {
                        self.search(b, &ctx, &mut best);
                    }
                }
                let prefix = &h[..=i];
                if self.prefix.has_len(prefix.len()) {
                    if let Some(b) = self.prefix.get(host::hash_fwd(prefix), prefix) {
                        self.search(b, &ctx, &mut best);
                    }
                }
            }
            for odd in &self.odd {
                if odd.pattern.is_match(hs) {
                    self.search_root(odd.root, &ctx, &mut best);
                }
            }
        }
        if let Some(b) = self.hostless {
            self.search(b, &ctx, &mut best);
        }
        (best.rank != u64::MAX).then(|| RouteMatch {
            route: self.cands[best.cand as usize] as usize,
            matched_path_len: best.len,
        })
    }

    #[inline]
    fn search(&self, bucket: u32, ctx: &Ctx<'_>, best: &mut Best) {
        self.search_root(self.roots[bucket as usize], ctx, best);
    }

    fn search_root(&self, root: u32, ctx: &Ctx<'_>, best: &mut Best) {
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
            self.scan(self.arena.entries(node), pos, ctx, best);
            if pos >= path.len() {
                return;
            }
            match self.arena.child(node, path[pos]) {
                Some(c) => node = self.arena.node(c),
                None => return,
            }
        }
    }

    #[inline]
    fn scan(&self, entries: &[Entry], depth: usize, ctx: &Ctx<'_>, best: &mut Best) {
        for e in entries {
            if e.rank >= best.rank {
                return;
            }
            if e.port != ANY_PORT && ctx.port.map(u32::from) != Some(e.port) {
                continue;
            }
            let route = self.cands[e.cand as usize] as usize;
            if !self.conds[route].matches(ctx) {
                continue;
            }
            let len = match e.kind {
                KIND_NO_PATH => 0,
                KIND_PREFIX => depth,
                k => {
                    let input = Input::new(ctx.path).anchored(Anchored::Yes);
                    match self.regexes[(k - KIND_REGEX_BASE) as usize].search_half(&input) {
                        Some(m) => m.offset(),
                        None => continue,
                    }
                }
            };
            *best = Best {
                rank: e.rank,
                cand: e.cand,
                len,
            };
            return;
        }
    }
}

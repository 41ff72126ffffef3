//! # gateway-router: Kong `traditional_compatible` route matching
//!
//! Built once per config from `gateway_config::Route`s, immutable after,
//! shared by all requests. [`Router::find`] does not allocate.
//!
//! ## Layout
//! - [`path`]: [`normalize_path`], the request-path canonicalisation the
//!   proxy applies before matching and forwarding.
//! - `priority`: Kong's per-path-group split of a route and its priority
//!   tuple (`get_priority` in Kong's `transform.lua` / `compat.lua`).
//! - `host`: `host[:port]` parsing and the case-insensitive host tables.
//! - `cond`: per-route conditions checked at lookup (methods, SNIs,
//!   headers).
//! - `literal`: the literal prefix of a regex path (its index key, and the
//!   part its compiled form can skip).
//! - `re`: regex compilation (small anchored DFAs, match end only).
//! - `trie`: radix trees of path keys for large host buckets.
//! - `router`: [`Router::build`] and [`Router::find`].
//! - [`upstream`]: [`upstream_path`], Kong's `path_handling` v0 / v1.
//!
//! ## Semantics in one paragraph
//! A route is split, as Kong does, into one candidate per group of its paths
//! (all regex paths together, each distinct prefix length alone).
//! Candidates are ordered by Kong's priority, compared as a tuple: number of
//! non-empty fields among methods/hosts/headers/paths/snis, then "all hosts
//! plain" (no wildcard), then header count, then "regex path", then
//! `regex_priority` (regex candidates only, signed), then prefix length.
//! Kong leaves remaining ties to route UUIDs; we break them by the kinds of
//! fields used (hosts > headers > paths > methods > snis, the `traditional`
//! router's order), then a port-specific host over an any-port one, then
//! the lower route index (declaration order). The first candidate in that
//! order whose every condition matches wins. `protocols` is **not** a
//! matching condition: an `http` request can match an `https`-only route and
//! the proxy answers it with `https_redirect_status_code` (Kong does the
//! same). `docs/routing.md` lists every rule and every difference from Kong.

pub mod path;
pub mod upstream;

mod cond;
mod host;
mod literal;
mod priority;
mod re;
mod router;
mod trie;

pub use path::{normalize_path, PathError};
pub use router::Router;
pub use upstream::upstream_path;

/// What the router sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Upper-case method, e.g. `GET`.
    pub method: &'a str,
    /// The `Host` header (or `:authority`), possibly with `:port`, as sent.
    /// Compared case-insensitively; `None` or `""` matches only routes
    /// without hosts.
    pub host: Option<&'a str>,
    /// The request path without the query string. The proxy passes the
    /// output of [`normalize_path`] here (and forwards that same path), so
    /// `/a/../admin` is matched as `/admin`. The router itself matches the
    /// bytes it is given.
    pub path: &'a str,
    /// TLS SNI, when the connection is TLS. `None` means "not TLS": routes
    /// with `snis` then match regardless of SNI, as in Kong.
    pub sni: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
}

/// A successful match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index of the matched route in the `routes` slice given to `build`.
    pub route: usize,
    /// Byte length of the prefix of `RequestView::path` that the route's
    /// path matched (the part `strip_path` removes); 0 when the route has no
    /// paths.
    pub matched_path_len: usize,
}

/// Why a route table could not be compiled. Every variant names the route
/// (its index in the slice given to [`Router::build`]); retrying the same
/// table cannot help, the config must change.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("routes[{route}].paths[{path}]: invalid regex: {message}")]
    InvalidRegex {
        route: usize,
        path: usize,
        message: String,
    },
    #[error("routes[{route}].paths[{path}]: invalid prefix path: {error}")]
    InvalidPath {
        route: usize,
        path: usize,
        error: PathError,
    },
    #[error("routes[{route}].headers[{header:?}]: invalid header name: {message}")]
    InvalidHeaderName {
        route: usize,
        header: String,
        message: String,
    },
    #[error("routes[{route}].headers[{header:?}]: invalid regex {value:?}: {message}")]
    InvalidHeaderRegex {
        route: usize,
        header: String,
        value: String,
        message: String,
    },
    #[error("route table too large: {what} = {count} exceeds {max}")]
    TooLarge {
        what: &'static str,
        count: usize,
        max: usize,
    },
}

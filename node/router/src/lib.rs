//! # gateway-router: Kong `traditional_compatible` route matching
//!
//! Built once per config from `gateway_config::Route`s, immutable after,
//! shared by all requests. `Router::find` is allocation-free on the hot path.

use gateway_config::Route;

/// What the router sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Upper-case method, e.g. `GET`.
    pub method: &'a str,
    /// The `Host` header (or `:authority`), possibly with `:port`, as sent.
    pub host: Option<&'a str>,
    /// The request path without the query string, as sent (not decoded).
    pub path: &'a str,
    /// TLS SNI, when the connection is TLS.
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

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("routes[{route}].paths[{path}]: invalid regex: {message}")]
    InvalidRegex { route: usize, path: usize, message: String },
}

pub struct Router {
    _private: (),
}

impl Router {
    /// Compile a router. Routes whose service is disabled should already be
    /// filtered out by the caller (pass `None` entries? no: pass only the
    /// routes to serve, with `ids` mapping back) — see `build_with_ids`.
    pub fn build(routes: &[Route]) -> Result<Router, RouterError> {
        let _ = routes;
        todo!("Router::build")
    }

    /// The best route for this request, or `None` (404).
    pub fn find(&self, req: &RequestView<'_>) -> Option<RouteMatch> {
        let _ = req;
        todo!("Router::find")
    }
}

/// The upstream path Kong sends for a matched request (`path_handling` v0/v1,
/// `strip_path`), including Kong's slash-merging rules. `service_path` is the
/// service's `path` (None = "/"); `req_path` the raw request path (no query).
pub fn upstream_path(
    service_path: Option<&str>,
    req_path: &str,
    matched_path_len: usize,
    strip_path: bool,
    path_handling: gateway_config::PathHandling,
) -> String {
    let _ = (service_path, req_path, matched_path_len, strip_path, path_handling);
    todo!("upstream_path")
}

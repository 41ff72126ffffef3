//! Conditions checked per candidate at lookup: methods, SNIs, headers.
//!
//! Hosts and paths are not here: the index (host buckets, path trie) has
//! already established them when a candidate is looked at. Everything here
//! is compiled at build time so a check allocates nothing.

use gateway_config::Route;
use http::{HeaderMap, HeaderName};

use crate::re::header_regex;
use crate::RouterError;

/// Request-method bit of any method that is not one of the nine above.
pub(crate) const OTHER_METHOD: u16 = 1 << 9;
/// Entry-mask bit: the route lists methods outside the nine; check them in
/// [`Conds`].
pub(crate) const OTHER_LISTED: u16 = 1 << 10;
/// Entry-mask value of a route without methods.
pub(crate) const ANY_METHOD: u16 = 0x3ff;
/// `Entry::flags` bit: the route has SNIs or headers to check.
pub(crate) const NEEDS_CONDS: u16 = 1;

/// Bit of a request method: one of the nine well-known methods, else
/// [`OTHER_METHOD`].
#[inline]
pub(crate) fn method_bit(m: &str) -> u16 {
    match m {
        "GET" => 1,
        "HEAD" => 1 << 1,
        "POST" => 1 << 2,
        "PUT" => 1 << 3,
        "DELETE" => 1 << 4,
        "CONNECT" => 1 << 5,
        "OPTIONS" => 1 << 6,
        "TRACE" => 1 << 7,
        "PATCH" => 1 << 8,
        _ => OTHER_METHOD,
    }
}

/// The entry mask of a route's methods (see [`Ctx::method_allowed`]).
pub(crate) fn method_mask(route: &Route) -> u16 {
    if route.methods.is_empty() {
        return ANY_METHOD;
    }
    route.methods.iter().fold(0, |mask, m| match method_bit(m) {
        OTHER_METHOD => mask | OTHER_LISTED,
        bit => mask | bit,
    })
}

/// The entry flags of a route.
pub(crate) fn flags(route: &Route) -> u16 {
    if route.snis.is_empty() && route.headers.is_empty() {
        0
    } else {
        NEEDS_CONDS
    }
}

/// What a lookup knows about the request, computed once per `find`.
pub(crate) struct Ctx<'a> {
    pub method: &'a str,
    pub method_bit: u16,
    pub sni: Option<&'a [u8]>,
    pub headers: &'a HeaderMap,
    pub port: Option<u16>,
    pub path: &'a str,
}

/// One `headers` entry: the request must carry `name` with at least one
/// value equal (ASCII case-insensitively) to one of `exact`, or matched by
/// one of `regexes` (the `~*` values, searched case-insensitively and
/// unanchored, as Kong's `any(lower(http.headers.x)) ~ "re"`).
#[derive(Debug)]
struct HeaderCond {
    name: HeaderName,
    exact: Box<[Box<[u8]>]>,
    regexes: Box<[regex_automata::meta::Regex]>,
}

impl HeaderCond {
    fn matches(&self, headers: &HeaderMap) -> bool {
        headers.get_all(&self.name).iter().any(|v| {
            let v = v.as_bytes();
            self.exact.iter().any(|e| e.eq_ignore_ascii_case(v))
                || self.regexes.iter().any(|r| r.is_match(v))
        })
    }
}

/// The conditions of one route that neither the index nor the entry's
/// method mask covers.
#[derive(Debug)]
pub(crate) struct Conds {
    other_methods: Box<[Box<str>]>,
    snis: Box<[Box<[u8]>]>,
    headers: Box<[HeaderCond]>,
}

impl<'a> Ctx<'a> {
    /// Whether the request method is allowed by an entry's method mask (and,
    /// for a method outside the nine, by the route's list). `conds` gives
    /// the route's conditions, `None` when it has none.
    #[inline]
    pub(crate) fn method_allowed(
        &self,
        mask: u16,
        conds: impl FnOnce() -> Option<&'a Conds>,
    ) -> bool {
        if mask & self.method_bit != 0 {
            return true;
        }
        self.method_bit == OTHER_METHOD
            && mask & OTHER_LISTED != 0
            && conds().is_some_and(|c| c.other_methods.iter().any(|m| &**m == self.method))
    }
}

impl Conds {
    /// True when the route has no condition here (most routes): the router
    /// then keeps no `Conds` for it.
    pub(crate) fn is_empty(&self) -> bool {
        self.other_methods.is_empty() && self.snis.is_empty() && self.headers.is_empty()
    }

    /// True when the route matches on request headers.
    pub(crate) fn has_headers(&self) -> bool {
        !self.headers.is_empty()
    }

    pub(crate) fn compile(idx: usize, route: &Route) -> Result<Conds, RouterError> {
        let other_methods = route
            .methods
            .iter()
            .filter(|m| method_bit(m) == OTHER_METHOD)
            .map(|m| m.clone().into_boxed_str())
            .collect();
        let snis = route
            .snis
            .iter()
            .map(|s| {
                // Kong: "last dot in FQDNs must not be used for routing".
                let s = if s.len() > 1 {
                    s.strip_suffix('.').unwrap_or(s)
                } else {
                    s
                };
                s.to_ascii_lowercase().into_bytes().into_boxed_slice()
            })
            .collect();
        let mut headers = Vec::with_capacity(route.headers.len());
        for (name, values) in &route.headers {
            let hname =
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|e| {
                    RouterError::InvalidHeaderName {
                        route: idx,
                        header: name.clone(),
                        message: e.to_string(),
                    }
                })?;
            let mut exact = Vec::new();
            let mut regexes = Vec::new();
            for v in values {
                if let Some(re) = v.strip_prefix("~*") {
                    let r = header_regex(re).map_err(|e| RouterError::InvalidHeaderRegex {
                        route: idx,
                        header: name.clone(),
                        value: v.clone(),
                        message: e.to_string(),
                    })?;
                    regexes.push(r);
                } else {
                    exact.push(v.as_bytes().to_vec().into_boxed_slice());
                }
            }
            headers.push(HeaderCond {
                name: hname,
                exact: exact.into_boxed_slice(),
                regexes: regexes.into_boxed_slice(),
            });
        }
        Ok(Conds {
            other_methods,
            snis,
            headers: headers.into_boxed_slice(),
        })
    }

    /// SNI and header conditions (checked only for entries flagged
    /// [`NEEDS_CONDS`]).
    #[inline]
    pub(crate) fn matches(&self, ctx: &Ctx<'_>) -> bool {
        // Kong: `(net.protocol != "https" || tls.sni == ...)`: SNI only
        // constrains TLS requests.
        if !self.snis.is_empty() {
            if let Some(sni) = ctx.sni {
                if !self.snis.iter().any(|s| s.eq_ignore_ascii_case(sni)) {
                    return false;
                }
            }
        }
        self.headers.iter().all(|h| h.matches(ctx.headers))
    }
}

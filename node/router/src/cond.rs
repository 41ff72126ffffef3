//! Conditions checked per candidate at lookup: methods, SNIs, headers.
//!
//! Hosts and paths are not here: the index (host buckets, path trie) has
//! already established them when a candidate is looked at. Everything here
//! is compiled at build time so a check allocates nothing.

use gateway_config::Route;
use http::{HeaderMap, HeaderName};

use crate::re::header_regex;
use crate::RouterError;

/// Bit of a well-known method, 0 for any other method.
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
        _ => 0,
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

/// The non-index conditions of one candidate.
#[derive(Debug)]
pub(crate) struct Conds {
    method_mask: u16,
    other_methods: Box<[Box<str>]>,
    any_method: bool,
    snis: Box<[Box<[u8]>]>,
    headers: Box<[HeaderCond]>,
}

impl Conds {
    pub(crate) fn compile(idx: usize, route: &Route) -> Result<Conds, RouterError> {
        let mut method_mask = 0u16;
        let mut other_methods = Vec::new();
        for m in &route.methods {
            let bit = method_bit(m);
            if bit != 0 {
                method_mask |= bit;
            } else {
                other_methods.push(m.clone().into_boxed_str());
            }
        }
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
            any_method: route.methods.is_empty(),
            method_mask,
            other_methods: other_methods.into_boxed_slice(),
            snis,
            headers: headers.into_boxed_slice(),
        })
    }

    #[inline]
    pub(crate) fn matches(&self, ctx: &Ctx<'_>) -> bool {
        if !self.any_method {
            let ok = if ctx.method_bit != 0 {
                self.method_mask & ctx.method_bit != 0
            } else {
                self.other_methods.iter().any(|m| &**m == ctx.method)
            };
            if !ok {
                return false;
            }
        }
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

//! The path sent upstream: Kong's `path_handling` v0 and v1.
//!
//! v0 is `get_upstream_uri_v0` from Kong's `kong/router/utils.lua` (the
//! only behaviour of Kong's `traditional_compatible` and `expressions`
//! flavors). v1 is the `path_handling == "v1"` branch of Kong's
//! `traditional` router (`kong/router/traditional.lua`); Kong deprecated it
//! in 3.0 and its `traditional_compatible` flavor ignores it and applies v0
//! (it only logs a deprecation warning). We implement both so that a config
//! that asks for v1 gets what the `traditional` router did; the proxy may
//! choose to map v1 to v0 for strict `traditional_compatible` parity.
//!
//! Both start from the same "postfix": the part of the request path after
//! what the route's path matched (or the whole path without its leading `/`
//! when the route has no paths or `strip_path` is off), with a leading `.`,
//! `..`, `./` or `../` removed (`sanitize_uri_postfix`).

use gateway_config::PathHandling;
use std::borrow::Cow;

/// The upstream path Kong sends for a matched request (`path_handling` v0/v1,
/// `strip_path`), including Kong's slash-merging rules. `service_path` is the
/// service's `path` (None = "/"); `req_path` the request path the route was
/// matched against (normalized, no query); `matched_path_len` from
/// [`crate::RouteMatch`]. Borrows `req_path` when the upstream path is the
/// request path unchanged (service path `/`, no `strip_path`), the common
/// case, so that nothing is allocated for it.
pub fn upstream_path<'a>(
    service_path: Option<&str>,
    req_path: &'a str,
    matched_path_len: usize,
    strip_path: bool,
    path_handling: PathHandling,
) -> Cow<'a, str> {
    let base = match service_path {
        Some(p) if !p.is_empty() => p,
        _ => "/",
    };
    // Both v0 and v1 give `base + req_path[1..]` here, i.e. `req_path`.
    if !strip_path && base == "/" && req_path.starts_with('/') {
        return Cow::Borrowed(req_path);
    }
    // Kong: `request_prefix = strip_path and matched_path`; without a path
    // match (no paths on the route) the postfix is the path minus its `/`.
    let raw_postfix = if strip_path && matched_path_len > 0 {
        req_path.get(matched_path_len..).unwrap_or("")
    } else {
        req_path.get(1..).unwrap_or("")
    };
    let postfix = sanitize_postfix(raw_postfix);
    Cow::Owned(match path_handling {
        PathHandling::V0 => v0(base, postfix, req_path, strip_path),
        PathHandling::V1 => v1(base, postfix, req_path, strip_path),
    })
}

/// Kong's `sanitize_uri_postfix`.
fn sanitize_postfix(p: &str) -> &str {
    if p == "." || p == ".." {
        ""
    } else if let Some(rest) = p.strip_prefix("./") {
        rest
    } else if let Some(rest) = p.strip_prefix("../") {
        rest
    } else {
        p
    }
}

fn concat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// Kong's `get_upstream_uri_v0`, branch for branch.
fn v0(base: &str, postfix: &str, req: &str, strip: bool) -> String {
    let base_no_slash = base.strip_suffix('/');
    if let Some(trimmed) = base_no_slash {
        if strip {
            if postfix.is_empty() {
                if base == "/" {
                    return "/".to_owned();
                }
                if req.ends_with('/') {
                    return base.to_owned();
                }
                return trimmed.to_owned();
            }
            if postfix.starts_with('/') {
                // double "/", so drop the first
                return concat(&[trimmed, postfix]);
            }
            return concat(&[base, postfix]);
        }
        // keep the incoming path, prefixed with the base, minus its first /
        return concat(&[base, req.get(1..).unwrap_or("")]);
    }
    if strip {
        if postfix.is_empty() {
            if req.len() > 1 && req.ends_with('/') {
                return concat(&[base, "/"]);
            }
            return base.to_owned();
        }
        if postfix.starts_with('/') {
            return concat(&[base, postfix]);
        }
        return concat(&[base, "/", postfix]);
    }
    if req == "/" {
        return base.to_owned();
    }
    concat(&[base, req])
}

/// The `path_handling == "v1"` branch of Kong's traditional router.
fn v1(base: &str, postfix: &str, req: &str, strip: bool) -> String {
    if strip {
        if base.ends_with('/') && postfix.starts_with('/') {
            return concat(&[&base[..base.len() - 1], postfix]);
        }
        return concat(&[base, postfix]);
    }
    concat(&[base, req.get(1..).unwrap_or("")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize() {
        assert_eq!(sanitize_postfix(""), "");
        assert_eq!(sanitize_postfix("."), "");
        assert_eq!(sanitize_postfix(".."), "");
        assert_eq!(sanitize_postfix("./x"), "x");
        assert_eq!(sanitize_postfix("../x"), "x");
        assert_eq!(sanitize_postfix(".x"), ".x");
        assert_eq!(sanitize_postfix("/x"), "/x");
    }

    #[test]
    fn out_of_range_match_len_does_not_panic() {
        let p = upstream_path(Some("/s"), "/é", 2, true, PathHandling::V0);
        assert_eq!(p, "/s");
        let p = upstream_path(Some("/s"), "/a", 99, true, PathHandling::V1);
        assert_eq!(p, "/s");
        let p = upstream_path(None, "", 0, false, PathHandling::V0);
        assert_eq!(p, "/");
    }
}

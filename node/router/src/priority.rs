//! Kong's route priority, and the split of a route into per-path-group
//! candidates.
//!
//! Kong's `traditional_compatible` flavor (`kong/router/compat.lua`,
//! `split_routes_and_services_by_path`, and `get_priority` in
//! `kong/router/transform.lua`) splits every HTTP route that has more than
//! one path into one sub-route per group of paths: all regex paths form one
//! group, and prefix paths are grouped by byte length. Each sub-route gets a
//! 64-bit priority packed, high bits first, as:
//!
//! | bits  | field |
//! |-------|-------|
//! | 61-63 | match weight: number of non-empty fields among methods, hosts, headers, snis, paths |
//! | 60    | all hosts are plain (no `*`) |
//! | 52-59 | number of header names, capped at 255 |
//! | 51    | the group is the regex group |
//! | 19-50 | `regex_priority` (regex group only, else 0) |
//! | 0-18  | prefix length (prefix groups only, else 0) |
//!
//! [`Priority`] is that tuple compared field by field, which is the same
//! order for non-negative values and stays correct for a negative
//! `regex_priority` (which Kong's bit packing would smear into the higher
//! fields).

use gateway_config::Route;

/// Kong caps the header count used for ordering at 255.
pub(crate) const MAX_HEADER_COUNT: usize = 255;

/// A candidate's priority; larger is better. Field order is comparison
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Priority {
    pub match_weight: u8,
    pub plain_hosts_only: bool,
    pub header_count: u8,
    pub regex: bool,
    pub regex_priority: i64,
    pub prefix_len: usize,
}

/// Tie-break between candidates of equal [`Priority`]: which kinds of field
/// the route uses, as a bitmask ordered like the match categories of Kong's
/// `traditional` router: hosts > headers > paths > methods > snis. Kong's
/// `traditional_compatible` flavor leaves such ties to route UUID order
/// (arbitrary); this makes them deterministic and agree with the
/// `traditional` router and with Kong's own spec (e.g. "[method] does not
/// supersede [wildcard host]").
pub(crate) fn field_kinds(route: &Route) -> u8 {
    (u8::from(!route.hosts.is_empty()) << 4)
        | (u8::from(!route.headers.is_empty()) << 3)
        | (u8::from(!route.paths.is_empty()) << 2)
        | (u8::from(!route.methods.is_empty()) << 1)
        | u8::from(!route.snis.is_empty())
}

/// How a route path is matched, after compile-time processing.
#[derive(Debug, Clone)]
pub(crate) enum PathSpec {
    /// Normalized prefix.
    Prefix(String),
    /// A regex path.
    Regex,
}

/// One candidate of a route: the indices (into `route.paths`) of the paths
/// in its group, in declaration order, and its priority. Empty `paths` means
/// the route has no paths.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub paths: Vec<usize>,
    pub priority: Priority,
}

/// Split `route` into candidates. `specs[i]` describes `route.paths[i]`.
pub(crate) fn split(route: &Route, specs: &[PathSpec]) -> Vec<Group> {
    let mut weight = 0u8;
    weight += u8::from(!route.methods.is_empty());
    weight += u8::from(!route.hosts.is_empty());
    weight += u8::from(!route.headers.is_empty());
    weight += u8::from(!route.snis.is_empty());
    weight += u8::from(!specs.is_empty());
    let plain_hosts_only = !route.hosts.is_empty() && !route.hosts.iter().any(|h| h.contains('*'));
    let header_count = route.headers.len().min(MAX_HEADER_COUNT) as u8;
    let base = Priority {
        match_weight: weight,
        plain_hosts_only,
        header_count,
        regex: false,
        regex_priority: 0,
        prefix_len: 0,
    };
    if specs.is_empty() {
        return vec![Group {
            paths: Vec::new(),
            priority: base,
        }];
    }
    // Group key: None for regex, Some(len) for prefixes; keep first-seen
    // order of groups (it does not matter: priorities differ) and
    // declaration order inside a group (it decides which regex reports the
    // match).
    let mut groups: Vec<(Option<usize>, Vec<usize>)> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let key = match spec {
            PathSpec::Prefix(p) => Some(p.len()),
            PathSpec::Regex => None,
        };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    groups
        .into_iter()
        .map(|(key, paths)| {
            let priority = match key {
                None => Priority {
                    regex: true,
                    regex_priority: route.regex_priority,
                    ..base
                },
                Some(len) => Priority {
                    prefix_len: len,
                    ..base
                },
            };
            Group { paths, priority }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        Route {
            meta: Default::default(),
            name: None,
            service: None,
            protocols: Default::default(),
            methods: Default::default(),
            hosts: Default::default(),
            paths: Default::default(),
            headers: Default::default(),
            snis: Default::default(),
            strip_path: true,
            preserve_host: false,
            regex_priority: 0,
            path_handling: gateway_config::PathHandling::V0,
            https_redirect_status_code: 426,
            request_buffering: true,
            response_buffering: true,
        }
    }

    fn specs(paths: &[&str]) -> Vec<PathSpec> {
        paths
            .iter()
            .map(|p| match p.strip_prefix('~') {
                Some(_) => PathSpec::Regex,
                None => PathSpec::Prefix((*p).to_owned()),
            })
            .collect()
    }

    #[test]
    fn splits_by_regex_and_length() {
        let mut r = route();
        r.regex_priority = 7;
        r.hosts = vec!["a.com".into(), "*.b.com".into()].into();
        let s = specs(&["/a", "~/x", "/bb", "/c", "~/y", "/ddd"]);
        let g = split(&r, &s);
        let got: Vec<(Vec<usize>, bool, i64, usize)> = g
            .iter()
            .map(|g| {
                (
                    g.paths.clone(),
                    g.priority.regex,
                    g.priority.regex_priority,
                    g.priority.prefix_len,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![0, 3], false, 0, 2),
                (vec![1, 4], true, 7, 0),
                (vec![2], false, 0, 3),
                (vec![5], false, 0, 4),
            ]
        );
        assert!(g.iter().all(|g| g.priority.match_weight == 2));
        assert!(g.iter().all(|g| !g.priority.plain_hosts_only));
    }

    #[test]
    fn weight_counts_fields() {
        let mut r = route();
        r.methods = vec!["GET".into()].into();
        r.snis = vec!["x".into()].into();
        r.headers.insert("a".into(), vec!["1".into()]);
        r.headers.insert("b".into(), vec!["1".into()]);
        r.hosts = vec!["h:8080".into()].into();
        let g = split(&r, &[]);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].priority.match_weight, 4);
        assert_eq!(g[0].priority.header_count, 2);
        assert!(g[0].priority.plain_hosts_only);
    }

    #[test]
    fn ordering_is_lexicographic_and_handles_negative_regex_priority() {
        let p = |w, plain, h, re, rp, len| Priority {
            match_weight: w,
            plain_hosts_only: plain,
            header_count: h,
            regex: re,
            regex_priority: rp,
            prefix_len: len,
        };
        assert!(p(2, false, 0, false, 0, 1) > p(1, true, 9, true, 99, 999));
        assert!(p(1, true, 0, false, 0, 1) > p(1, false, 9, true, 99, 999));
        assert!(p(1, true, 2, false, 0, 1) > p(1, true, 1, true, 99, 999));
        assert!(p(1, true, 1, true, -5, 0) > p(1, true, 1, false, 0, 999));
        assert!(p(1, true, 1, true, 0, 0) > p(1, true, 1, true, -1, 0));
        assert!(p(1, true, 1, false, 0, 5) > p(1, true, 1, false, 0, 4));
    }
}

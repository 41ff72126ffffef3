//! The indexed router against a naive reference: a linear scan over every
//! route and path group, written from the rules in `docs/routing.md` and
//! sharing no code with the router. Random small tables drawn from pools
//! designed to collide (hosts, wildcards, ports, prefixes, regexes,
//! methods, headers, SNIs, regex priorities), and the 10,000-route benchmark
//! table with its samples.

mod common;

#[path = "../benches/support/table.rs"]
mod table;

use std::cmp::Reverse;
use std::collections::HashMap;

use common::*;
use gateway_config::Route;

/// (weight, plain hosts only, header count, regex, regex_priority, prefix
/// length, field kinds, port-specific host, Reverse(route index))
type Key = (u8, bool, u8, bool, i64, usize, u8, bool, Reverse<usize>);

#[derive(Default)]
struct Reference {
    path_res: HashMap<String, regex::Regex>,
    header_res: HashMap<String, regex::bytes::Regex>,
}

fn split_host(h: &str) -> (String, Option<u16>) {
    let (host, port) = if h.starts_with('[') {
        match h.find("]:") {
            Some(i) => (&h[..=i], &h[i + 2..]),
            None => (h, ""),
        }
    } else {
        match h.split_once(':') {
            Some((a, b)) => (a, b),
            None => (h, ""),
        }
    };
    if port.is_empty() {
        return (host.to_ascii_lowercase(), None);
    }
    match port.parse::<u16>() {
        Ok(p) if port.bytes().all(|b| b.is_ascii_digit()) => (host.to_ascii_lowercase(), Some(p)),
        _ => (h.to_ascii_lowercase(), None),
    }
}

impl Reference {
    fn path_re(&mut self, src: &str) -> &regex::Regex {
        self.path_res
            .entry(src.to_owned())
            .or_insert_with(|| regex::Regex::new(&format!("^(?:{src})")).unwrap())
    }

    fn header_re(&mut self, src: &str) -> &regex::bytes::Regex {
        self.header_res
            .entry(src.to_owned())
            .or_insert_with(|| regex::bytes::Regex::new(&format!("(?i){src}")).unwrap())
    }

    fn find(&mut self, routes: &[Route], q: &Req) -> Option<(usize, usize)> {
        let req_host = q.host.as_deref().filter(|h| !h.is_empty()).map(split_host);
        let mut best: Option<(Key, usize)> = None;
        'routes: for (i, r) in routes.iter().enumerate() {
            if !r.methods.is_empty() && !r.methods.contains(&q.method) {
                continue;
            }
            if let (false, Some(sni)) = (r.snis.is_empty(), &q.sni) {
                let ok = r.snis.iter().any(|s| {
                    let s = if s.len() > 1 {
                        s.strip_suffix('.').unwrap_or(s)
                    } else {
                        s
                    };
                    s.eq_ignore_ascii_case(sni)
                });
                if !ok {
                    continue;
                }
            }
            for (name, values) in &r.headers {
                let got: Vec<Vec<u8>> = q
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .map(|v| v.as_bytes().to_vec())
                    .collect();
                let mut ok = false;
                for v in values {
                    for g in &got {
                        ok |= match v.strip_prefix("~*") {
                            Some(re) => self.header_re(re).is_match(g),
                            None => v.as_bytes().eq_ignore_ascii_case(g),
                        };
                    }
                }
                if !ok {
                    continue 'routes;
                }
            }
            let mut port_specific = false;
            if !r.hosts.is_empty() {
                let Some((host, port)) = &req_host else {
                    continue;
                };
                let mut any = false;
                for h in &r.hosts {
                    let (pat, hport) = split_host(h);
                    let ok = if let Some(s) = pat.strip_prefix('*') {
                        host.ends_with(s)
                    } else if let Some(p) = pat.strip_suffix('*') {
                        host.starts_with(p)
                    } else {
                        *host == pat
                    };
                    if ok && (hport.is_none() || hport == *port) {
                        any = true;
                        port_specific |= hport.is_some();
                    }
                }
                if !any {
                    continue;
                }
            }
            let weight = [
                !r.methods.is_empty(),
                !r.hosts.is_empty(),
                !r.headers.is_empty(),
                !r.snis.is_empty(),
                !r.paths.is_empty(),
            ]
            .iter()
            .filter(|b| **b)
            .count() as u8;
            let plain = !r.hosts.is_empty() && r.hosts.iter().all(|h| !h.contains('*'));
            let headers = r.headers.len().min(255) as u8;
            let kinds = (u8::from(!r.hosts.is_empty()) << 4)
                | (u8::from(!r.headers.is_empty()) << 3)
                | (u8::from(!r.paths.is_empty()) << 2)
                | (u8::from(!r.methods.is_empty()) << 1)
                | u8::from(!r.snis.is_empty());
            // groups: None = regex, Some(len) = prefixes of that length
            let mut groups: Vec<Option<usize>> = r
                .paths
                .iter()
                .map(|p| (!p.starts_with('~')).then_some(p.len()))
                .collect();
            groups.sort();
            groups.dedup();
            if r.paths.is_empty() {
                let key = (
                    weight,
                    plain,
                    headers,
                    false,
                    0,
                    0,
                    kinds,
                    port_specific,
                    Reverse(i),
                );
                if best.as_ref().is_none_or(|(k, _)| key > *k) {
                    best = Some((key, 0));
                }
            }
            for g in groups {
                let mut len = None;
                for p in &r.paths {
                    match (g, p.strip_prefix('~')) {
                        (None, Some(src)) => {
                            if let Some(m) = self.path_re(src).find(&q.path) {
                                len = Some(m.end());
                                break;
                            }
                        }
                        (Some(l), None) if p.len() == l && q.path.starts_with(p.as_str()) => {
                            len = Some(l);
                            break;
                        }
                        _ => {}
                    }
                }
                let Some(len) = len else { continue };
                let key = match g {
                    None => (weight, plain, headers, true, r.regex_priority, 0),
                    Some(l) => (weight, plain, headers, false, 0, l),
                };
                let key = (
                    key.0,
                    key.1,
                    key.2,
                    key.3,
                    key.4,
                    key.5,
                    kinds,
                    port_specific,
                    Reverse(i),
                );
                if best.as_ref().is_none_or(|(k, _)| key > *k) {
                    best = Some((key, len));
                }
            }
        }
        best.map(|(k, len)| (k.8 .0, len))
    }
}

const R_HOSTS: &[&str] = &[
    "a.com",
    "b.com",
    "x.a.com",
    "*.a.com",
    "*.x.a.com",
    "a.*",
    "x.*",
    "a.com:8080",
    "*.a.com:8080",
    "b.*:81",
    "c.org",
    "[::1]",
    "*a.com",
    "x*",
];
const Q_HOSTS: &[Option<&str>] = &[
    Some("a.com"),
    Some("A.com"),
    Some("b.com"),
    Some("x.a.com"),
    Some("y.x.a.com"),
    Some("a.org"),
    Some("x.a.com:8080"),
    Some("a.com:8080"),
    Some("a.com:81"),
    Some("b.com:81"),
    Some("b.org:81"),
    Some("c.org"),
    Some("[::1]:8080"),
    Some("[::1]"),
    Some(""),
    None,
    Some("xa.com"),
    Some("X.A.COM"),
];
const R_PATHS: &[&str] = &[
    "/",
    "/a",
    "/ab",
    "/a/",
    "/a/b",
    "/b",
    "/abc/d",
    r"~/a/\d+",
    "~/a.*",
    "~/(a|b)/c",
    "~/ab?c",
    r"~/a/[0-9]{2}",
    "~/b(/.*)?$",
    "~",
    "~/a|/b",
    "~/A/1",
    r"~/(?i)a/1",
];
const Q_PATHS: &[&str] = &[
    "/", "/a", "/ab", "/abc", "/a/", "/a/b", "/a/12", "/a/1", "/b", "/b/c", "/a/c", "/ac",
    "/abc/d/e", "/c", "/x/b", "/A/1",
];
const R_METHODS: &[&str] = &["GET", "POST", "PURGE"];
const Q_METHODS: &[&str] = &["GET", "POST", "PUT", "PURGE"];
const H_NAMES: &[&str] = &["x-a", "x-b"];
const R_HVALUES: &[&str] = &["v1", "V2", "~*^v[0-9]$", "~*foo"];
const Q_HVALUES: &[&str] = &["v1", "v2", "V1", "foo-bar", "x"];
const R_SNIS: &[&str] = &["a.com", "b.com."];
const Q_SNIS: &[Option<&str>] = &[None, Some("a.com"), Some("b.com"), Some("c.com")];

fn pick<T: Copy>(rng: &mut table::Rng, v: &[T]) -> T {
    v[rng.below(v.len())]
}

fn some_of<T: for<'a> From<&'a str> + PartialEq>(
    rng: &mut table::Rng,
    v: &[&str],
    max: usize,
) -> Vec<T> {
    let n = 1 + rng.below(max);
    let mut out: Vec<T> = (0..n).map(|_| pick(rng, v).into()).collect();
    out.dedup();
    out
}

fn random_route(rng: &mut table::Rng) -> Route {
    let mut r = route();
    if rng.pct(50) {
        r.hosts = some_of::<gateway_config::CompactString>(rng, R_HOSTS, 2).into();
    }
    if rng.pct(65) {
        r.paths = some_of::<gateway_config::CompactString>(rng, R_PATHS, 3).into();
    }
    if rng.pct(30) {
        r.methods = some_of::<String>(rng, R_METHODS, 2).into();
    }
    if rng.pct(20) {
        for _ in 0..1 + rng.below(2) {
            let name = pick(rng, H_NAMES);
            r.headers
                .insert(name.to_owned(), some_of(rng, R_HVALUES, 2));
        }
    }
    if rng.pct(15) {
        r.snis = some_of::<String>(rng, R_SNIS, 2).into();
    }
    r.regex_priority = rng.below(3) as i64 - 1;
    r
}

fn random_req(rng: &mut table::Rng) -> Req {
    let mut q = req(pick(rng, Q_METHODS), pick(rng, Q_PATHS), pick(rng, Q_HOSTS));
    for _ in 0..rng.below(3) {
        q = q.header(pick(rng, H_NAMES), pick(rng, Q_HVALUES));
    }
    if let Some(s) = pick(rng, Q_SNIS) {
        q = q.sni(s);
    }
    q
}

#[test]
fn random_tables_match_the_reference() {
    let mut rng = table::Rng::new(0x5eed_0001);
    let mut reference = Reference::default();
    let (mut compared, mut matched) = (0usize, 0usize);
    for case in 0..2000 {
        // Small tables exercise the flat buckets (at most 16 entries);
        // larger ones put the busiest buckets in radix trees.
        let n = if rng.pct(70) {
            1 + rng.below(12)
        } else {
            20 + rng.below(40)
        };
        let routes: Vec<Route> = (0..n).map(|_| random_route(&mut rng)).collect();
        let router = router(&routes);
        for _ in 0..60 {
            let q = random_req(&mut rng);
            let want = reference.find(&routes, &q);
            let got = find_match(&router, &q).map(|m| (m.route, m.matched_path_len));
            assert_eq!(
                got,
                want,
                "case {case}: request {q:#?}\nroutes: {:#?}",
                routes
                    .iter()
                    .map(|r| (
                        &r.hosts,
                        &r.paths,
                        &r.methods,
                        &r.headers,
                        &r.snis,
                        r.regex_priority
                    ))
                    .collect::<Vec<_>>()
            );
            compared += 1;
            matched += usize::from(want.is_some());
        }
    }
    // The pools must produce both outcomes often.
    assert!(
        matched > compared / 4 && matched < compared * 9 / 10,
        "{matched}/{compared}"
    );
}

#[test]
fn benchmark_table_matches_the_reference() {
    let t = table::generate(10_000, 42);
    let router = router(&t.routes);
    let mut reference = Reference::default();
    let mut rng = table::Rng::new(7);
    let mut hits = 0;
    for _ in 0..400 {
        let s = &t.samples[rng.below(t.samples.len())];
        let mut q = req(&s.method, &s.path, s.host.as_deref());
        for (k, v) in &s.headers {
            q = q.header(k, v);
        }
        let want = reference.find(&t.routes, &q);
        let got = find_match(&router, &q).map(|m| (m.route, m.matched_path_len));
        assert_eq!(got, want, "{s:?}");
        if s.kind == table::Kind::Miss {
            assert_eq!(got, None, "{s:?}");
        } else {
            assert!(got.is_some(), "{s:?}");
            hits += 1;
        }
    }
    assert!(hits > 200);
}

//! A deterministic, realistic route table for the router benchmark, the
//! `route_latency` example and the large-table reference test.
//!
//! Shape of `generate(n, seed)`:
//! - hosts: 55% one exact host out of n/10 (`api{k}.tenant{k%97}.example.com`),
//!   8% a `*.t{k}.example.net` wildcard, 3% an `app{k}.*` wildcard, 34% none;
//! - paths: 95% prefix paths `/{top}/v{1..3}/{word}/{0..24}` (6 tops x 3
//!   versions x 48 words: long shared prefixes), 10% of those with a second
//!   `-legacy` path; 5% one regex path (three shapes: digits then a word
//!   and `$`, a named hex group of 6 to 12 digits then a two-word
//!   alternation, a `[a-z]+-\d+` segment then a word; the parts after the
//!   literal prefix are mostly distinct), with `regex_priority` in -1..=1;
//! - methods: 15% GET+HEAD, 10% POST+PUT+PATCH, 5% DELETE, 70% none;
//! - headers: 3% (`x-api-version: v1|v2`, or a `~*` user-agent regex).
//!
//! Samples: one request built from each route (a hit on it or on a route
//! that outranks it), plus n/4 misses (unknown host, unknown path).
#![allow(dead_code)]

use gateway_config::{PathHandling, Protocol, Route};

/// splitmix64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn pct(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hit,
    RegexHit,
    Miss,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub kind: Kind,
    pub method: String,
    pub host: Option<String>,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

pub struct Table {
    pub routes: Vec<Route>,
    pub samples: Vec<Sample>,
}

pub fn base_route() -> Route {
    Route {
        meta: Default::default(),
        name: None,
        service: Some(0),
        protocols: [Protocol::Http, Protocol::Https].into_iter().collect(),
        methods: Default::default(),
        hosts: Default::default(),
        paths: Default::default(),
        headers: Default::default(),
        snis: Default::default(),
        strip_path: true,
        preserve_host: false,
        regex_priority: 0,
        path_handling: PathHandling::V0,
        https_redirect_status_code: 426,
        request_buffering: true,
        response_buffering: true,
    }
}

const WORDS: [&str; 48] = [
    "users",
    "orders",
    "payments",
    "invoices",
    "products",
    "catalog",
    "search",
    "cart",
    "checkout",
    "accounts",
    "profiles",
    "sessions",
    "tokens",
    "reports",
    "metrics",
    "events",
    "notifications",
    "messages",
    "files",
    "images",
    "videos",
    "comments",
    "reviews",
    "ratings",
    "inventory",
    "shipping",
    "returns",
    "coupons",
    "subscriptions",
    "plans",
    "billing",
    "customers",
    "vendors",
    "partners",
    "teams",
    "projects",
    "tasks",
    "tickets",
    "alerts",
    "logs",
    "audit",
    "settings",
    "config",
    "health",
    "status",
    "webhooks",
    "exports",
    "imports",
];
const TOPS: [&str; 6] = ["api", "v1", "internal", "public", "admin", "svc"];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Append to one of a route's (boxed) lists.
fn push<T>(list: &mut Box<[T]>, v: T) {
    let mut l = std::mem::take(list).into_vec();
    l.push(v);
    *list = l.into();
}

pub fn generate(n: usize, seed: u64) -> Table {
    let mut rng = Rng::new(seed);
    let n_hosts = (n / 10).max(1);
    let n_wild = (n / 100).max(1);
    let mut routes = Vec::with_capacity(n);
    let mut samples = Vec::with_capacity(n + n / 4);
    for _ in 0..n {
        let mut r = base_route();
        let h = rng.below(100);
        let host = if h < 55 {
            let k = rng.below(n_hosts);
            let host = format!("api{k}.tenant{}.example.com", k % 97);
            push(&mut r.hosts, host.as_str().into());
            host
        } else if h < 63 {
            let k = rng.below(n_wild);
            push(&mut r.hosts, format!("*.t{k}.example.net").into());
            format!("edge{}.t{k}.example.net", rng.below(50))
        } else if h < 66 {
            let k = rng.below(n_wild);
            push(&mut r.hosts, format!("app{k}.*").into());
            format!("app{k}.example.org")
        } else {
            format!("www{}.example.io", rng.below(1000))
        };
        let top = TOPS[rng.below(TOPS.len())];
        let v = 1 + rng.below(3);
        let w = WORDS[rng.below(WORDS.len())];
        let j = rng.below(25);
        let kind;
        let path = if rng.pct(5) {
            kind = Kind::RegexHit;
            r.regex_priority = rng.below(3) as i64 - 1;
            // Mostly distinct regex tails, so compiled tails are rarely
            // shared (the router shares identical tails).
            let (a, b) = (WORDS[rng.below(WORDS.len())], WORDS[rng.below(WORDS.len())]);
            let (pat, sample) = match rng.below(3) {
                0 => (
                    format!(r"~/{top}/v{v}/{w}/\d+/{a}{j}$"),
                    format!("/{top}/v{v}/{w}/{}/{a}{j}", rng.below(100_000)),
                ),
                1 => {
                    let n = 6 + rng.below(7);
                    (
                        format!(r"~/{top}/v{v}/{w}/(?<id>[0-9a-f]{{{n}}})/({a}|{b})"),
                        format!("/{top}/v{v}/{w}/{}/{b}/{}", "c".repeat(n), rng.below(100)),
                    )
                }
                _ => (
                    format!(r"~/{top}/v{v}/{w}{j}/[a-z]+-\d+/{a}"),
                    format!("/{top}/v{v}/{w}{j}/abc-{}/{a}", rng.below(1000)),
                ),
            };
            push(&mut r.paths, pat.into());
            sample
        } else {
            kind = Kind::Hit;
            let p = format!("/{top}/v{v}/{w}/{j}");
            push(&mut r.paths, p.as_str().into());
            if rng.pct(10) {
                push(&mut r.paths, format!("/{top}/v{v}/{w}-legacy/{j}").into());
            }
            format!("{p}/{}", rng.below(1000))
        };
        let m = rng.below(100);
        let method = if m < 15 {
            r.methods = strings(&["GET", "HEAD"]).into();
            "GET"
        } else if m < 25 {
            r.methods = strings(&["POST", "PUT", "PATCH"]).into();
            "POST"
        } else if m < 30 {
            r.methods = strings(&["DELETE"]).into();
            "DELETE"
        } else if rng.pct(50) {
            "GET"
        } else {
            "POST"
        };
        let mut headers = Vec::new();
        if rng.pct(3) {
            if rng.pct(50) {
                r.headers
                    .insert("x-api-version".into(), strings(&["v1", "v2"]));
                headers.push(("x-api-version".to_owned(), "v2".to_owned()));
            } else {
                r.headers
                    .insert("user-agent".into(), strings(&["~*mobile|android|iphone"]));
                headers.push((
                    "user-agent".to_owned(),
                    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)".to_owned(),
                ));
            }
        }
        samples.push(Sample {
            kind,
            method: method.to_owned(),
            host: Some(host),
            path,
            headers,
        });
        routes.push(r);
    }
    for k in 0..n / 4 {
        let (host, path) = match k % 3 {
            0 => (
                format!("unknown{k}.example.com"),
                format!("/nothing/{k}/here"),
            ),
            1 => (
                format!("api{}.tenant0.example.com:8443", rng.below(n_hosts)),
                format!("/api/v9/{}/{k}", WORDS[rng.below(WORDS.len())]),
            ),
            _ => (
                format!("edge.t{}.example.net", rng.below(n_wild)),
                format!("/zzz/{k}"),
            ),
        };
        samples.push(Sample {
            kind: Kind::Miss,
            method: "GET".to_owned(),
            host: Some(host),
            path,
            headers: Vec::new(),
        });
    }
    Table { routes, samples }
}

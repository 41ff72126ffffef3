//! Test helpers: a `Route` builder and an owned request.
#![allow(dead_code)]

use gateway_config::{PathHandling, Protocol, Route};
use gateway_router::{RequestView, RouteMatch, Router};
use http::{HeaderMap, HeaderName, HeaderValue};

/// A route with Kong's defaults and no matching fields.
pub fn route() -> Route {
    Route {
        meta: Default::default(),
        name: None,
        service: None,
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

pub trait RouteExt: Sized {
    fn hosts(self, v: &[&str]) -> Self;
    fn paths(self, v: &[&str]) -> Self;
    fn methods(self, v: &[&str]) -> Self;
    fn header(self, name: &str, values: &[&str]) -> Self;
    fn snis(self, v: &[&str]) -> Self;
    fn regex_priority(self, p: i64) -> Self;
    fn protocols(self, v: &[Protocol]) -> Self;
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

impl RouteExt for Route {
    fn hosts(mut self, v: &[&str]) -> Self {
        self.hosts = v.iter().map(|s| (*s).into()).collect();
        self
    }
    fn paths(mut self, v: &[&str]) -> Self {
        self.paths = v.iter().map(|s| (*s).into()).collect();
        self
    }
    fn methods(mut self, v: &[&str]) -> Self {
        self.methods = strings(v).into();
        self
    }
    fn header(mut self, name: &str, values: &[&str]) -> Self {
        self.headers.insert(name.to_owned(), strings(values));
        self
    }
    fn snis(mut self, v: &[&str]) -> Self {
        self.snis = strings(v).into();
        self
    }
    fn regex_priority(mut self, p: i64) -> Self {
        self.regex_priority = p;
        self
    }
    fn protocols(mut self, v: &[Protocol]) -> Self {
        self.protocols = v.iter().copied().collect();
        self
    }
}

/// An owned request for tests.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub host: Option<String>,
    pub path: String,
    pub sni: Option<String>,
    pub headers: HeaderMap,
}

pub fn req(method: &str, path: &str, host: Option<&str>) -> Req {
    Req {
        method: method.to_owned(),
        host: host.map(str::to_owned),
        path: path.to_owned(),
        sni: None,
        headers: HeaderMap::new(),
    }
}

impl Req {
    /// Append a header value (repeated names give several values).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        self
    }
    pub fn sni(mut self, s: &str) -> Self {
        self.sni = Some(s.to_owned());
        self
    }
    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            host: self.host.as_deref(),
            path: &self.path,
            sni: self.sni.as_deref(),
            headers: &self.headers,
        }
    }
}

pub fn router(routes: &[Route]) -> Router {
    Router::build(routes).expect("routes compile")
}

/// Index of the matched route.
pub fn find(r: &Router, q: &Req) -> Option<usize> {
    r.find(&q.view()).map(|m| m.route)
}

pub fn find_match(r: &Router, q: &Req) -> Option<RouteMatch> {
    r.find(&q.view())
}

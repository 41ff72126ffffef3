//! Plugins: a trait of request phases with a per-request context and no-op
//! defaults, in the style of Pingora's `ProxyHttp`.
//!
//! ```text
//!  client request
//!       │
//!   [router] ── no match ──────────────────────────────► 404 ─┐
//!       │                                                     │
//!   request_filter  (Kong: access)   may answer directly ────►│
//!       │                                                     │
//!   [balancer pick, retries, timeouts: proxy layers]          │
//!       │                                                     │
//!   upstream_request_filter  (rewrite what goes upstream)     │
//!       │                                                     │
//!   upstream ──► response head                                │
//!       │                                                     │
//!   response_filter  (Kong: header_filter) ◄──────────────────┘
//!       │            (also runs on gateway-generated responses)
//!   body streamed to the client
//!       │
//!   logging  (Kong: log) once the exchange is over
//! ```
//!
//! Cross-cutting concerns (timeouts, retries, body limits, metrics) are not
//! plugins: they are layers in `proxy`. A plugin only holds its own logic.
//!
//! Each config compiles, per route, the chain of plugin instances that apply
//! to it (Kong precedence: route > service > global for the same plugin
//! name), ordered by descending plugin priority as in Kong.

mod correlation_id;
mod request_termination;

use crate::proxy::body::ProxyBody;
use gateway_config::{Config, PluginCatalog, RouteIdx};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Per-request state shared by all phases of all plugins of one request.
pub struct RequestCtx {
    /// The gateway's request id (also in the `X-Gateway-Request-Id` header).
    pub request_id: String,
    /// The client address (the real client when behind a trusted proxy).
    pub client_addr: SocketAddr,
    pub route: Option<RouteIdx>,
    pub service: Option<gateway_config::ServiceIdx>,
    /// Set by an authentication plugin.
    pub consumer: Option<String>,
    pub started: Instant,
    /// Typed per-request storage for plugins (one value per type).
    pub extensions: http::Extensions,
}

/// What `request_filter` decided.
pub enum Flow {
    Continue,
    /// Answer the client with this response; the upstream is not called.
    Respond(http::Response<ProxyBody>),
}

/// What `logging` sees of a finished exchange.
#[derive(Debug, Clone)]
pub struct RequestSummary {
    pub status: u16,
    pub upstream_addr: Option<SocketAddr>,
    pub duration: std::time::Duration,
}

#[async_trait::async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// The Kong plugin name, e.g. `correlation-id`.
    fn name(&self) -> &'static str;

    /// Inspect or change the client request; may answer it directly.
    async fn request_filter(&self, _req: &mut http::request::Parts, _ctx: &mut RequestCtx) -> Flow {
        Flow::Continue
    }

    /// Change the request about to go upstream (headers, path).
    fn upstream_request_filter(&self, _req: &mut http::request::Parts, _ctx: &mut RequestCtx) {}

    /// Change the response head going to the client. Runs for upstream
    /// responses and for responses the gateway or a plugin produced.
    fn response_filter(&self, _resp: &mut http::response::Parts, _ctx: &mut RequestCtx) {}

    /// After the exchange (no effect on the response).
    fn logging(&self, _summary: &RequestSummary, _ctx: &RequestCtx) {}
}

/// Errors `(sub_path, message)` of a plugin config check.
pub type ConfigIssues = Vec<(String, String)>;

/// Knows one plugin: checks its config and builds instances.
pub trait PluginFactory: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Kong's priority: higher runs first.
    fn priority(&self) -> i32;
    /// Validate `config` and return it with defaults filled in.
    fn check(&self, config: &serde_json::Value) -> Result<serde_json::Value, ConfigIssues>;
    /// Build an instance from a config `check` accepted.
    fn build(&self, config: &serde_json::Value) -> Result<Arc<dyn Plugin>, String>;
}

/// The plugins this build knows. Also the validator's `PluginCatalog`, so
/// `gateway validate` and the node reject exactly the same configs.
pub struct PluginRegistry {
    factories: BTreeMap<&'static str, Box<dyn PluginFactory>>,
}

impl Default for PluginRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl PluginRegistry {
    /// All built-in plugins.
    pub fn builtin() -> Self {
        let mut r = PluginRegistry {
            factories: BTreeMap::new(),
        };
        r.register(Box::new(correlation_id::Factory));
        r.register(Box::new(request_termination::Factory));
        r
    }

    pub fn register(&mut self, f: Box<dyn PluginFactory>) {
        self.factories.insert(f.name(), f);
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.factories.keys().copied()
    }

    /// Build, for every route of `config`, the ordered chain of plugin
    /// instances that apply to it. Disabled plugins are skipped;
    /// consumer-scoped plugins are not in the chain (they need an
    /// authenticated consumer; see the auth plugins issue).
    pub fn compile(&self, config: &Config) -> Result<PluginChains, String> {
        let mut instances: Vec<Option<(i32, Arc<dyn Plugin>)>> = Vec::new();
        for p in &config.plugins {
            if !p.enabled || p.consumer.is_some() {
                instances.push(None);
                continue;
            }
            let f = self
                .factories
                .get(p.name.as_str())
                .ok_or_else(|| format!("plugin {:?} is not supported by this version", p.name))?;
            let inst = f
                .build(&p.config)
                .map_err(|e| format!("plugin {:?}: {e}", p.name))?;
            instances.push(Some((f.priority(), inst)));
        }
        let mut per_route = Vec::with_capacity(config.routes.len());
        let mut shared: HashMap<Vec<usize>, Chain> = HashMap::new();
        for (ri, route) in config.routes.iter().enumerate() {
            // name -> (specificity, plugin index)
            let mut chosen: BTreeMap<&str, (u8, usize)> = BTreeMap::new();
            for (pi, p) in config.plugins.iter().enumerate() {
                if instances[pi].is_none() {
                    continue;
                }
                let specificity = match (p.route, p.service) {
                    (Some(r), Some(s)) if r == ri && Some(s) == route.service => 3,
                    (Some(r), None) if r == ri => 2,
                    (None, Some(s)) if Some(s) == route.service => 1,
                    (None, None) => 0,
                    _ => continue,
                };
                let e = chosen.entry(p.name.as_str()).or_insert((specificity, pi));
                if specificity > e.0 {
                    *e = (specificity, pi);
                }
            }
            let mut chain: Vec<(i32, usize)> = chosen
                .values()
                .filter_map(|&(_, pi)| instances[pi].as_ref().map(|(prio, _)| (*prio, pi)))
                .collect();
            chain.sort_by_key(|e| std::cmp::Reverse(e.0));
            let key: Vec<usize> = chain.into_iter().map(|(_, pi)| pi).collect();
            // Routes with the same plugins share one chain (most routes
            // have the same one, often empty).
            let chain = shared
                .entry(key)
                .or_insert_with_key(|key| {
                    key.iter()
                        .filter_map(|&pi| instances[pi].as_ref().map(|(_, p)| p.clone()))
                        .collect::<Vec<_>>()
                        .into()
                })
                .clone();
            per_route.push(chain);
        }
        let global: Vec<(i32, Arc<dyn Plugin>)> = config
            .plugins
            .iter()
            .enumerate()
            .filter(|(_, p)| p.route.is_none() && p.service.is_none())
            .filter_map(|(pi, _)| instances[pi].clone())
            .collect();
        let mut global = global;
        global.sort_by_key(|e| std::cmp::Reverse(e.0));
        Ok(PluginChains {
            per_route,
            global: Arc::from(global.into_iter().map(|(_, p)| p).collect::<Vec<_>>()),
        })
    }
}

impl PluginCatalog for PluginRegistry {
    fn check(
        &self,
        name: &str,
        config: &serde_json::Value,
    ) -> Option<Result<serde_json::Value, Vec<(String, String)>>> {
        self.factories.get(name).map(|f| f.check(config))
    }
}

pub type Chain = Arc<[Arc<dyn Plugin>]>;

/// Plugin chains of one compiled config.
pub struct PluginChains {
    per_route: Vec<Chain>,
    /// Global plugins: run for requests that matched no route (Kong runs
    /// global plugins on 404s too).
    global: Chain,
}

impl PluginChains {
    pub fn empty() -> Self {
        PluginChains {
            per_route: Vec::new(),
            global: Arc::from(Vec::new()),
        }
    }
    pub fn for_route(&self, route: Option<RouteIdx>) -> &Chain {
        route
            .and_then(|r| self.per_route.get(r))
            .unwrap_or(&self.global)
    }
}

/// Helpers for plugin config checking.
pub(crate) mod schema {
    use super::ConfigIssues;
    use serde_json::{Map, Value};

    /// A config object's fields, rejecting unknown ones.
    pub fn object<'a>(
        config: &'a Value,
        known: &[&str],
        issues: &mut ConfigIssues,
    ) -> Option<&'a Map<String, Value>> {
        let Some(obj) = config.as_object() else {
            issues.push((String::new(), "expected an object".into()));
            return None;
        };
        for k in obj.keys() {
            if !known.contains(&k.as_str()) {
                issues.push((k.clone(), format!("unknown field {k:?}")));
            }
        }
        Some(obj)
    }

    pub fn string(
        obj: &Map<String, Value>,
        key: &str,
        default: Option<&str>,
        issues: &mut ConfigIssues,
    ) -> Option<String> {
        match obj.get(key) {
            None | Some(Value::Null) => default.map(str::to_owned),
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                issues.push((key.into(), format!("expected a string, found {other}")));
                None
            }
        }
    }

    pub fn boolean(
        obj: &Map<String, Value>,
        key: &str,
        default: bool,
        issues: &mut ConfigIssues,
    ) -> bool {
        match obj.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                issues.push((key.into(), format!("expected a boolean, found {other}")));
                default
            }
        }
    }

    pub fn integer(
        obj: &Map<String, Value>,
        key: &str,
        default: Option<i64>,
        range: std::ops::RangeInclusive<i64>,
        issues: &mut ConfigIssues,
    ) -> Option<i64> {
        match obj.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) if range.contains(&v) => Some(v),
                _ => {
                    issues.push((
                        key.into(),
                        format!("value {n} out of range {}..={}", range.start(), range.end()),
                    ));
                    None
                }
            },
            Some(other) => {
                issues.push((key.into(), format!("expected an integer, found {other}")));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        let registry = PluginRegistry::builtin();
        gateway_config::parse(
            &[gateway_config::SourceFile {
                name: "kong.yml".into(),
                text: yaml.into(),
            }],
            &registry,
        )
        .unwrap()
    }

    fn names(chain: &Chain) -> Vec<&'static str> {
        chain.iter().map(|p| p.name()).collect()
    }

    #[test]
    fn routes_with_the_same_plugins_share_one_chain() {
        let c = config(
            "_format_version: \"3.0\"\n\
             plugins:\n  - name: correlation-id\n\
             services:\n\
             \x20 - name: a\n    url: http://127.0.0.1:9\n    routes:\n\
             \x20     - name: r0\n        paths: [/r0]\n\
             \x20     - name: r1\n        paths: [/r1]\n\
             \x20     - name: r2\n        paths: [/r2]\n        plugins:\n          - name: request-termination\n\
             \x20     - name: r3\n        paths: [/r3]\n        plugins:\n          - name: request-termination\n\
             \x20 - name: b\n    url: http://127.0.0.1:9\n    plugins:\n      - name: request-termination\n    routes:\n\
             \x20     - name: r4\n        paths: [/r4]\n",
        );
        let chains = PluginRegistry::builtin().compile(&c).unwrap();
        let chain = |r| chains.for_route(Some(r));
        assert_eq!(names(chain(0)), ["correlation-id"]);
        assert!(Arc::ptr_eq(chain(0), chain(1)));
        // Higher priority first: correlation-id (100001), then
        // request-termination (2).
        assert_eq!(names(chain(2)), ["correlation-id", "request-termination"]);
        assert!(!Arc::ptr_eq(chain(0), chain(2)));
        // Two plugin entries with equal config are two instances: routes
        // share a chain only when they use the same entries.
        assert!(!Arc::ptr_eq(chain(2), chain(3)));
        assert_eq!(names(chain(4)), ["correlation-id", "request-termination"]);
        assert!(!Arc::ptr_eq(chain(2), chain(4)));
        assert_eq!(names(chains.for_route(None)), ["correlation-id"]);
    }
}

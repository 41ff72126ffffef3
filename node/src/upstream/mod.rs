//! Upstream selection: load balancers, health checks, DNS.
//!
//! Layout:
//! - `UpstreamManager` (here): long-lived (survives config reloads); owns
//!   the DNS resolver and the live balancers, and builds a `Balancers` set
//!   for each new config, reusing the `Arc<Balancer>` (health state,
//!   checker, DNS answers) of upstreams whose definition did not change.
//! - `Balancer` (here, state in `balancer`): one per `Upstream` entity, plus
//!   one implicit balancer per enabled service whose `host` is a plain
//!   hostname/IP (Kong does the same). `pick` chooses a peer (round-robin /
//!   least-connections / consistent-hashing), `report` feeds passive health
//!   checks, `health_report` renders Kong's `/upstreams/{name}/health`.
//! - `wheel`: the precomputed weighted round-robin wheel.
//! - `ring`: the consistent-hashing ring and its fixed hash function.
//! - `health`: per-address health state and Kong's counter rules.
//! - `checker`: the active health-check task and its TCP/HTTP probes.
//! - `dns`: resolver construction and TTL handling.
//!
//! Hot path: `pick` reads one immutable topology through an atomic pointer,
//! advances an atomic cursor (round-robin) or scans in-flight counters
//! (least-connections) or binary-searches the ring (hashing). It takes no
//! lock and does not wait on DNS except for a balancer's very first
//! resolution; expired answers keep serving while one background task
//! re-resolves them. `report` takes a per-address lock only while counting
//! failures.

mod balancer;
mod checker;
mod dns;
mod health;
mod ring;
#[cfg(test)]
mod tests;
mod wheel;

use balancer::{Inner, PeerGuard};
use gateway_config::{Config, ServiceIdx, Upstream};
use hickory_resolver::TokioResolver;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::task::AbortHandle;

/// Inputs to consistent hashing for one request.
pub struct HashInput<'a> {
    pub client_ip: IpAddr,
    pub headers: &'a http::HeaderMap,
    /// Authenticated consumer id/username, when an auth plugin set one.
    pub consumer: Option<&'a str>,
    /// The value of the hash cookie the gateway is about to set (see
    /// `Balancer::cookie_to_set`), used when the request has none.
    pub new_cookie: Option<&'a str>,
}

/// A chosen upstream peer. Dropping it ends its "active connection" count
/// (least-connections).
pub struct Peer {
    pub addr: SocketAddr,
    /// The target's configured host (for the `Host` header / TLS SNI).
    pub host: Arc<str>,
    pub port: u16,
    /// The `Host` header for this target when the service does not set
    /// one: `host`, or `host:port` unless the port is 80 or 443.
    pub host_header: Option<http::HeaderValue>,
    guard: PeerGuard,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("addr", &self.addr)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

/// What happened when the proxy used a peer (feeds passive health checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status.
    Response(u16),
    /// Connect refused / reset / other transport failure.
    TcpFailure,
    /// Connect, write or read timed out.
    Timeout,
}

/// Why no peer could be chosen. The proxy answers 503 to both.
#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    #[error("no healthy target in upstream {0:?}")]
    NoHealthyTarget(String),
    #[error("DNS resolution of {host:?} failed: {message}")]
    Dns { host: String, message: String },
}

/// Owns the balancers across config reloads.
pub struct UpstreamManager {
    resolver: Option<Arc<TokioResolver>>,
    state: Mutex<ManagerState>,
    checkers: Arc<AtomicUsize>,
}

#[derive(Default)]
struct ManagerState {
    /// Upstream name -> (definition, balancer) of the last build.
    /// Definition, CAs trusted by its https health checks, balancer.
    upstreams: HashMap<String, (Upstream, Vec<String>, Arc<Balancer>)>,
    /// (host, port) -> implicit service balancer of the last build.
    implicit: HashMap<(gateway_config::CompactString, u16), Arc<Balancer>>,
}

impl UpstreamManager {
    /// A manager using the system resolver (`/etc/resolv.conf`,
    /// `/etc/hosts`).
    pub fn new() -> Arc<Self> {
        Self::with_resolver_opt(dns::system_resolver())
    }

    /// A manager using `resolver` for target hostnames.
    pub fn with_resolver(resolver: TokioResolver) -> Arc<Self> {
        Self::with_resolver_opt(Some(resolver))
    }

    /// A manager asking the given name servers (UDP, TCP fallback) and
    /// `/etc/hosts`; for tests against a local DNS server.
    pub fn with_nameservers(servers: &[SocketAddr]) -> Arc<Self> {
        Self::with_resolver_opt(dns::resolver_for(servers).ok())
    }

    fn with_resolver_opt(resolver: Option<TokioResolver>) -> Arc<Self> {
        Arc::new(UpstreamManager {
            resolver: resolver.map(Arc::new),
            state: Mutex::new(ManagerState::default()),
            checkers: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Number of running active health-check tasks.
    pub fn active_checkers(&self) -> usize {
        self.checkers.load(Ordering::Relaxed)
    }

    /// Build balancers for `config`. Must run inside a tokio runtime.
    pub fn build(self: &Arc<Self>, config: &Config) -> Balancers {
        let mut st = self.state.lock();
        let mut reused = 0usize;
        let mut created = 0usize;
        let mut next = ManagerState::default();
        let mut by_idx: Vec<Arc<Balancer>> = Vec::with_capacity(config.upstreams.len());
        let mut by_name: HashMap<String, Arc<Balancer>> = HashMap::new();
        // `https` health checks of an upstream trust the CA certificates
        // its services trust for proxying, so a private-CA backend is not
        // marked down by its own checks.
        let upstream_index: HashMap<&str, usize> = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| (u.name.as_str(), i))
            .collect();
        let mut ca_pems: Vec<Vec<String>> = vec![Vec::new(); config.upstreams.len()];
        for s in config
            .services
            .iter()
            .filter(|s| !s.ca_certificates.is_empty())
        {
            let upstream = s
                .upstream
                .or_else(|| upstream_index.get(s.host.as_str()).copied());
            if let Some(pems) = upstream.and_then(|u| ca_pems.get_mut(u)) {
                for &c in &s.ca_certificates {
                    let pem = &config.ca_certificates[c].cert;
                    if !pems.contains(pem) {
                        pems.push(pem.clone());
                    }
                }
            }
        }
        for (u, cas) in config.upstreams.iter().zip(ca_pems) {
            let b = match st.upstreams.get(&u.name) {
                Some((def, def_cas, b)) if def == u && *def_cas == cas => {
                    reused += 1;
                    b.clone()
                }
                _ => {
                    created += 1;
                    self.start(Inner::for_upstream(u, &cas, self.resolver.clone()))
                }
            };
            by_idx.push(b.clone());
            by_name.insert(u.name.clone(), b.clone());
            next.upstreams.insert(u.name.clone(), (u.clone(), cas, b));
        }
        let mut services = Vec::with_capacity(config.services.len());
        for s in &config.services {
            if !s.enabled {
                services.push(None);
                continue;
            }
            let b = match s.upstream {
                Some(i) => by_idx.get(i).cloned(),
                None => by_name.get(s.host.as_str()).cloned(),
            };
            let b = b.unwrap_or_else(|| {
                let key = (s.host.clone(), s.port);
                if let Some(b) = next.implicit.get(&key) {
                    return b.clone();
                }
                let b = match st.implicit.get(&key) {
                    Some(b) => {
                        reused += 1;
                        b.clone()
                    }
                    None => {
                        created += 1;
                        self.start(Inner::for_host(&s.host, s.port, self.resolver.clone()))
                    }
                };
                next.implicit.insert(key, b.clone());
                b
            });
            services.push(Some(b));
        }
        let dropped = st.upstreams.len() + st.implicit.len()
            - st.upstreams
                .keys()
                .filter(|k| next.upstreams.contains_key(*k))
                .count()
            - st.implicit
                .keys()
                .filter(|k| next.implicit.contains_key(*k))
                .count();
        *st = next;
        drop(st);
        tracing::info!(reused, created, dropped, "upstream balancers built");
        Balancers {
            services,
            upstreams: by_name,
        }
    }

    /// Wrap new state in a `Balancer`, start its checker and its first DNS
    /// resolution.
    fn start(&self, inner: Arc<Inner>) -> Arc<Balancer> {
        let checker = checker::spawn(&inner, &self.checkers);
        if inner.needs_initial_resolve() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let i = inner.clone();
                rt.spawn(async move { i.initial_resolve().await });
            }
        }
        Arc::new(Balancer { inner, checker })
    }
}

/// The balancers of one config snapshot.
#[derive(Default)]
pub struct Balancers {
    /// Indexed by `ServiceIdx`; None for disabled services.
    services: Vec<Option<Arc<Balancer>>>,
    upstreams: HashMap<String, Arc<Balancer>>,
}

impl Balancers {
    /// The balancer serving service `idx`.
    pub fn for_service(&self, idx: ServiceIdx) -> Option<&Arc<Balancer>> {
        self.services.get(idx).and_then(Option::as_ref)
    }
    /// The balancer of the upstream named `name`.
    pub fn upstream(&self, name: &str) -> Option<&Arc<Balancer>> {
        self.upstreams.get(name)
    }
    /// All upstream balancers, by name.
    pub fn upstreams(&self) -> impl Iterator<Item = (&str, &Arc<Balancer>)> {
        self.upstreams.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Chooses peers for one upstream (or one service's host).
pub struct Balancer {
    inner: Arc<Inner>,
    checker: Option<AbortHandle>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(h) = self.checker.take() {
            h.abort();
        }
    }
}

impl Balancer {
    /// True when `pick` reads the request's headers (consistent hashing
    /// on a header or a cookie); otherwise any `HashInput::headers` will do.
    pub fn reads_request_headers(&self) -> bool {
        self.inner.reads_request_headers()
    }

    /// See `Inner::cookie_to_set`: (name, path) of a hash cookie to set.
    pub fn cookie_to_set(&self, headers: &http::HeaderMap) -> Option<(&str, &str)> {
        self.inner.cookie_to_set(headers)
    }

    /// Choose a peer, skipping addresses in `exclude` (already tried by
    /// this request) when any other healthy one exists.
    pub async fn pick(
        &self,
        input: &HashInput<'_>,
        exclude: &[SocketAddr],
    ) -> Result<Peer, BalancerError> {
        self.inner.pick(input, exclude).await
    }
    /// Passive health check input. `peer` must come from this balancer's
    /// `pick`.
    pub fn report(&self, peer: &Peer, outcome: Outcome) {
        self.inner.report(peer, outcome)
    }
    /// Kong's `GET /upstreams/{name}/health` body (`data`, `total`,
    /// `next`), plus `balancer_health` (the `?balancer_health=1` value).
    pub fn health_report(&self) -> serde_json::Value {
        self.inner.health_report()
    }
    /// Kong's `GET /upstreams/{name}/health?balancer_health=1` `data`
    /// value: `{"health": .., "details": {"healthy": .., "weight": ..}}`.
    pub fn balancer_health(&self) -> serde_json::Value {
        self.inner.balancer_health()
    }
    /// The upstream name, or `host:port` for a service's implicit balancer.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
    /// True for an `Upstream` entity's balancer.
    pub fn is_upstream(&self) -> bool {
        self.inner.is_upstream
    }
    /// The upstream's `host_header`, which Kong sends as `Host` instead of
    /// the target's host (unless the route preserves the client's host).
    pub fn host_header(&self) -> Option<&str> {
        self.inner.host_header.as_deref()
    }
    /// Whether enough weight is healthy to serve (Kong's balancer health).
    pub fn is_healthy(&self) -> bool {
        self.inner.is_healthy()
    }
}

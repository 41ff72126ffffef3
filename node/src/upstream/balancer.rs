//! The state behind one `Balancer`: its targets, the current address
//! topology (addresses + round-robin wheel + hash ring), peer selection,
//! health bookkeeping and DNS refresh.
//!
//! The topology is immutable and swapped whole (arc-swap) when DNS answers
//! change; per-address health and in-flight counts live in `AddrState`s
//! that survive a swap when the address stays. `pick` never waits on DNS
//! except for the very first resolution of a balancer: an expired answer
//! keeps serving while one background task re-resolves it.

use super::dns::{self, Answer};
use super::health::{AddrHealth, Event, HealthConfig, Limits};
use super::ring::{self, Ring};
use super::wheel;
use super::{BalancerError, HashInput, Outcome, Peer};
use arc_swap::ArcSwap;
use gateway_config::{Algorithm, HashOn, Upstream};
use hickory_resolver::TokioResolver;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One configured target.
#[derive(Debug)]
pub(crate) struct TargetCfg {
    pub host: Arc<str>,
    pub port: u16,
    pub weight: u32,
    /// Set when `host` is an IP literal (no DNS).
    pub ip: Option<IpAddr>,
    pub id: Option<String>,
    pub tags: Vec<String>,
    /// `Host` header value for requests to this target (`host`, or
    /// `host:port` unless the port is 80 or 443), built once.
    pub host_header: Option<http::HeaderValue>,
}

impl TargetCfg {
    pub(crate) fn new(host: &str, port: u16, weight: u32) -> Self {
        let h = host.trim();
        let bare = h
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(h);
        let host_header = if port == 80 || port == 443 {
            http::HeaderValue::from_str(h).ok()
        } else {
            http::HeaderValue::from_str(&format!("{h}:{port}")).ok()
        };
        TargetCfg {
            host: Arc::from(h),
            port,
            weight,
            ip: bare.parse().ok(),
            id: None,
            tags: Vec::new(),
            host_header,
        }
    }
    /// `host:port` as Kong prints targets.
    pub(crate) fn display(&self) -> String {
        match self.ip {
            Some(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// One resolved address of a target.
#[derive(Debug)]
pub(crate) struct AddrState {
    pub addr: SocketAddr,
    pub target: usize,
    pub weight: u32,
    pub health: AddrHealth,
    /// In-flight requests (least-connections); decremented by `PeerGuard`.
    pub active: AtomicUsize,
}

/// Keeps an address's in-flight count up while a `Peer` lives.
pub(crate) struct PeerGuard(pub(crate) Arc<AddrState>);

impl PeerGuard {
    fn new(a: Arc<AddrState>) -> Self {
        a.active.fetch_add(1, Ordering::Relaxed);
        PeerGuard(a)
    }
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DnsState {
    /// The target is an IP literal.
    Literal,
    /// Not resolved yet.
    Pending,
    /// Resolved; `v6` when the addresses came from AAAA records.
    Ok {
        v6: bool,
    },
    Error(String),
}

#[derive(Debug)]
pub(crate) struct TargetView {
    pub dns: DnsState,
    /// This target's addresses in `Topology::addrs`.
    pub addrs: Range<usize>,
}

/// The addresses of all targets at one point in time, and the selection
/// structures built from them.
#[derive(Debug)]
pub(crate) struct Topology {
    pub addrs: Vec<Arc<AddrState>>,
    pub targets: Vec<TargetView>,
    wheel: Arc<Vec<u32>>,
    ring: Option<Arc<Ring>>,
    /// Sum of the weights of all addresses.
    pub total_weight: u64,
    /// When the earliest DNS answer expires (None: nothing to refresh).
    refresh_at: Option<Instant>,
    /// False until the first DNS resolution finished.
    resolved: bool,
}

#[derive(Debug)]
struct HashCfg {
    on: HashOn,
    fallback: HashOn,
    on_header: Option<String>,
    fallback_header: Option<String>,
    cookie: Option<String>,
    /// `hash_on_cookie_path`: the Path of a cookie the gateway sets.
    cookie_path: String,
}

/// The shared state of one balancer.
pub(crate) struct Inner {
    pub name: Arc<str>,
    /// True for an `Upstream` entity, false for a service's implicit one.
    pub is_upstream: bool,
    pub id: Option<String>,
    algorithm: Algorithm,
    hash: HashCfg,
    slots: u32,
    pub host_header: Option<String>,
    pub hc: Arc<HealthConfig>,
    pub targets: Vec<TargetCfg>,
    pub topology: ArcSwap<Topology>,
    resolver: Option<Arc<TokioResolver>>,
    refreshing: AtomicBool,
    initial: tokio::sync::OnceCell<()>,
    cursor: AtomicUsize,
    lc_cursor: AtomicUsize,
    /// Sum of the weights of healthy addresses (recomputed on changes).
    available: AtomicU64,
    recompute: Mutex<()>,
}

impl Inner {
    /// `ca_pems`: extra CAs trusted by `https` active health checks.
    pub(crate) fn for_upstream(
        u: &Upstream,
        ca_pems: &[String],
        resolver: Option<Arc<TokioResolver>>,
    ) -> Arc<Inner> {
        let targets = u
            .targets
            .iter()
            .map(|t| {
                let mut c = TargetCfg::new(&t.host, t.port, t.weight.min(65535));
                c.id = t.meta.id.as_deref().map(str::to_string);
                c.tags = t.meta.tags.to_vec();
                c
            })
            .collect();
        let hash = HashCfg {
            on: u.hash_on,
            fallback: u.hash_fallback,
            on_header: u.hash_on_header.clone(),
            fallback_header: u.hash_fallback_header.clone(),
            cookie: u.hash_on_cookie.clone(),
            cookie_path: u.hash_on_cookie_path.clone(),
        };
        Self::new(
            Arc::from(u.name.as_str()),
            true,
            u.meta.id.as_deref().map(str::to_string),
            u.algorithm,
            hash,
            u.slots,
            u.host_header.clone(),
            HealthConfig::from_config(&u.name, &u.healthchecks, ca_pems),
            targets,
            resolver,
        )
    }

    /// The implicit balancer of a service pointing at `host:port`.
    pub(crate) fn for_host(
        host: &str,
        port: u16,
        resolver: Option<Arc<TokioResolver>>,
    ) -> Arc<Inner> {
        let t = TargetCfg::new(host, port, 100);
        let hash = HashCfg {
            on: HashOn::None,
            fallback: HashOn::None,
            on_header: None,
            fallback_header: None,
            cookie: None,
            cookie_path: String::new(),
        };
        Self::new(
            Arc::from(t.display()),
            false,
            None,
            Algorithm::RoundRobin,
            hash,
            10000,
            None,
            HealthConfig::off(),
            vec![t],
            resolver,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        name: Arc<str>,
        is_upstream: bool,
        id: Option<String>,
        algorithm: Algorithm,
        hash: HashCfg,
        slots: u32,
        host_header: Option<String>,
        hc: HealthConfig,
        targets: Vec<TargetCfg>,
        resolver: Option<Arc<TokioResolver>>,
    ) -> Arc<Inner> {
        let inner = Inner {
            name,
            is_upstream,
            id,
            algorithm,
            hash,
            slots,
            host_header,
            hc: Arc::new(hc),
            targets,
            topology: ArcSwap::from_pointee(Topology {
                addrs: Vec::new(),
                targets: Vec::new(),
                wheel: Arc::default(),
                ring: None,
                total_weight: 0,
                refresh_at: None,
                resolved: false,
            }),
            resolver,
            refreshing: AtomicBool::new(false),
            initial: tokio::sync::OnceCell::new(),
            cursor: AtomicUsize::new(rand::random::<u32>() as usize),
            lc_cursor: AtomicUsize::new(rand::random::<u32>() as usize),
            available: AtomicU64::new(0),
            recompute: Mutex::new(()),
        };
        // Targets that are all IP literals are usable right away.
        let per_target: Vec<(DnsState, Vec<IpAddr>)> = inner
            .targets
            .iter()
            .map(|t| match t.ip {
                Some(ip) => (DnsState::Literal, vec![ip]),
                None => (DnsState::Pending, Vec::new()),
            })
            .collect();
        let needs_dns = inner.targets.iter().any(|t| t.ip.is_none());
        let topo = inner.assemble(per_target, None, None, !needs_dns);
        inner.topology.store(Arc::new(topo));
        inner.recompute_available();
        let inner = Arc::new(inner);
        if !needs_dns {
            let _ = inner.initial.set(());
        }
        inner
    }

    /// True until the first DNS resolution has finished.
    pub(crate) fn needs_initial_resolve(&self) -> bool {
        !self.topology.load().resolved
    }

    /// Resolve every hostname target once (shared by all callers).
    pub(crate) async fn initial_resolve(self: &Arc<Self>) {
        self.initial.get_or_init(|| self.refresh()).await;
    }

    fn assemble(
        &self,
        per_target: Vec<(DnsState, Vec<IpAddr>)>,
        refresh_at: Option<Instant>,
        old: Option<&Topology>,
        resolved: bool,
    ) -> Topology {
        let mut reuse: HashMap<(usize, SocketAddr), Arc<AddrState>> = HashMap::new();
        if let Some(old) = old {
            for a in &old.addrs {
                reuse.insert((a.target, a.addr), a.clone());
            }
        }
        let mut addrs = Vec::new();
        let mut targets = Vec::with_capacity(per_target.len());
        for (ti, (dns, ips)) in per_target.into_iter().enumerate() {
            let t = &self.targets[ti];
            let start = addrs.len();
            for ip in ips {
                let addr = SocketAddr::new(ip, t.port);
                let a = reuse.remove(&(ti, addr)).unwrap_or_else(|| {
                    Arc::new(AddrState {
                        addr,
                        target: ti,
                        weight: t.weight,
                        health: AddrHealth::default(),
                        active: AtomicUsize::new(0),
                    })
                });
                addrs.push(a);
            }
            targets.push(TargetView {
                dns,
                addrs: start..addrs.len(),
            });
        }
        let total_weight = addrs.iter().map(|a| a.weight as u64).sum();
        let same_addrs = old.is_some_and(|o| {
            o.addrs.len() == addrs.len()
                && o.addrs.iter().zip(&addrs).all(|(x, y)| Arc::ptr_eq(x, y))
        });
        let (wheel, ring) = match old {
            Some(o) if same_addrs => (o.wheel.clone(), o.ring.clone()),
            _ => {
                let weights: Vec<u32> = addrs.iter().map(|a| a.weight).collect();
                let wheel = Arc::new(wheel::build(&weights));
                let ring = (self.algorithm == Algorithm::ConsistentHashing).then(|| {
                    let sa: Vec<SocketAddr> = addrs.iter().map(|a| a.addr).collect();
                    Arc::new(Ring::build(self.slots, &sa, &weights))
                });
                (wheel, ring)
            }
        };
        Topology {
            addrs,
            targets,
            wheel,
            ring,
            total_weight,
            refresh_at,
            resolved,
        }
    }

    /// Re-resolve every hostname target and swap in the new topology.
    pub(crate) async fn refresh(self: &Arc<Self>) {
        let old = self.topology.load_full();
        let mut names: Vec<&str> = self
            .targets
            .iter()
            .filter(|t| t.ip.is_none())
            .map(|t| &*t.host)
            .collect();
        names.sort_unstable();
        names.dedup();
        let resolver = self.resolver.as_deref();
        let answers =
            futures_util::future::join_all(names.iter().map(|n| dns::resolve(resolver, n))).await;
        let answers: HashMap<&str, Answer> = names.into_iter().zip(answers).collect();
        let now = Instant::now();
        let mut refresh_at: Option<Instant> = None;
        let mut next = |at: Instant| {
            refresh_at = Some(refresh_at.map_or(at, |r| r.min(at)));
        };
        let mut per_target = Vec::with_capacity(self.targets.len());
        for (ti, t) in self.targets.iter().enumerate() {
            if let Some(ip) = t.ip {
                per_target.push((DnsState::Literal, vec![ip]));
                continue;
            }
            let stale: Vec<IpAddr> = old
                .targets
                .get(ti)
                .map(|v| {
                    old.addrs[v.addrs.clone()]
                        .iter()
                        .map(|a| a.addr.ip())
                        .collect()
                })
                .unwrap_or_default();
            let entry = match answers.get(&*t.host) {
                Some(Answer::Addrs(ips, until)) => {
                    next(*until);
                    if stale != *ips {
                        tracing::info!(
                            upstream = %self.name,
                            target = %t.display(),
                            addresses = ?ips,
                            "target addresses changed"
                        );
                    }
                    let v6 = ips.iter().all(|ip| ip.is_ipv6());
                    (DnsState::Ok { v6 }, ips.clone())
                }
                Some(Answer::NoRecords(msg)) => {
                    next(now + dns::RETRY_AFTER_ERROR);
                    tracing::warn!(upstream = %self.name, target = %t.display(), error = %msg, "DNS resolution failed");
                    (DnsState::Error(msg.clone()), Vec::new())
                }
                Some(Answer::Failed(msg)) => {
                    next(now + dns::RETRY_AFTER_ERROR);
                    let prev = old.targets.get(ti).map(|v| v.dns.clone());
                    if !stale.is_empty() {
                        tracing::warn!(upstream = %self.name, target = %t.display(), error = %msg, "DNS re-resolution failed; keeping stale addresses");
                        (prev.unwrap_or(DnsState::Ok { v6: false }), stale)
                    } else {
                        tracing::warn!(upstream = %self.name, target = %t.display(), error = %msg, "DNS resolution failed");
                        (DnsState::Error(msg.clone()), Vec::new())
                    }
                }
                None => (DnsState::Error("not resolved".into()), Vec::new()),
            };
            per_target.push(entry);
        }
        let topo = self.assemble(per_target, refresh_at, Some(&old), true);
        self.topology.store(Arc::new(topo));
        self.recompute_available();
    }

    /// Re-resolve now, and wait for it, when the DNS answers expired and no
    /// refresh is under way. The active checker calls this before a round,
    /// so that a balancer without traffic (no request starts a refresh)
    /// does not probe addresses DNS no longer returns.
    pub(crate) async fn refresh_if_expired(self: &Arc<Self>) {
        if self.claim_refresh(&self.topology.load()) {
            self.refresh().await;
            self.refreshing.store(false, Ordering::Release);
        }
    }

    /// True when `topo`'s DNS answers expired and no refresh is under way;
    /// the caller then owns the refresh and clears `refreshing` after it.
    fn claim_refresh(&self, topo: &Topology) -> bool {
        topo.refresh_at.is_some_and(|at| Instant::now() >= at)
            && !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// Start a background refresh when the DNS answers expired.
    fn maybe_refresh(self: &Arc<Self>, topo: &Topology) {
        if !self.claim_refresh(topo) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.refreshing.store(false, Ordering::Release);
            return;
        };
        let inner = self.clone();
        rt.spawn(async move {
            inner.refresh().await;
            inner.refreshing.store(false, Ordering::Release);
        });
    }

    pub(crate) fn recompute_available(&self) {
        let _g = self.recompute.lock();
        let topo = self.topology.load();
        let avail: u64 = topo
            .addrs
            .iter()
            .filter(|a| a.health.is_healthy())
            .map(|a| a.weight as u64)
            .sum();
        self.available.store(avail, Ordering::Relaxed);
    }

    /// Kong's balancer health: some weight is available and the available
    /// share is at least `threshold` percent.
    fn healthy(&self, topo: &Topology) -> bool {
        let total = topo.total_weight;
        if total == 0 {
            return false;
        }
        if !self.hc.enabled {
            return true;
        }
        let avail = self.available.load(Ordering::Relaxed);
        avail > 0 && (avail as f64) * 100.0 >= self.hc.threshold * total as f64
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy(&self.topology.load())
    }

    pub(crate) async fn pick(
        self: &Arc<Self>,
        input: &HashInput<'_>,
        exclude: &[SocketAddr],
    ) -> Result<Peer, BalancerError> {
        if self.needs_initial_resolve() {
            self.initial_resolve().await;
        }
        let topo = self.topology.load();
        self.maybe_refresh(&topo);
        if topo.total_weight == 0 {
            if let Some((ti, msg)) =
                topo.targets
                    .iter()
                    .enumerate()
                    .find_map(|(i, v)| match &v.dns {
                        DnsState::Error(m) if self.targets[i].weight > 0 => Some((i, m.clone())),
                        _ => None,
                    })
            {
                return Err(BalancerError::Dns {
                    host: self.targets[ti].host.to_string(),
                    message: msg,
                });
            }
            return Err(self.no_healthy());
        }
        if !self.healthy(&topo) {
            return Err(self.no_healthy());
        }
        let idx = match self.algorithm {
            Algorithm::RoundRobin => self.pick_rr(&topo, exclude),
            Algorithm::LeastConnections => self.pick_lc(&topo, exclude),
            Algorithm::ConsistentHashing => match (&topo.ring, self.hash_value(input)) {
                (Some(ring), Some(h)) if !ring.is_empty() => pick_ring(&topo, ring, h, exclude),
                _ => self.pick_rr(&topo, exclude),
            },
        };
        let Some(i) = idx else {
            return Err(self.no_healthy());
        };
        let a = topo.addrs[i].clone();
        let t = &self.targets[a.target];
        Ok(Peer {
            addr: a.addr,
            host: t.host.clone(),
            port: t.port,
            host_header: t.host_header.clone(),
            guard: PeerGuard::new(a),
        })
    }

    fn no_healthy(&self) -> BalancerError {
        BalancerError::NoHealthyTarget(self.name.to_string())
    }

    fn pick_rr(&self, topo: &Topology, exclude: &[SocketAddr]) -> Option<usize> {
        let wheel = &topo.wheel;
        let len = wheel.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut fallback = None;
        for k in 0..len {
            let i = wheel[start.wrapping_add(k) % len] as usize;
            let a = &topo.addrs[i];
            if !a.health.is_healthy() {
                continue;
            }
            if exclude.contains(&a.addr) {
                fallback.get_or_insert(i);
                continue;
            }
            return Some(i);
        }
        fallback
    }

    fn pick_lc(&self, topo: &Topology, exclude: &[SocketAddr]) -> Option<usize> {
        let n = topo.addrs.len();
        if n == 0 {
            return None;
        }
        let start = self.lc_cursor.fetch_add(1, Ordering::Relaxed);
        // (index, active, weight) of the best non-excluded and excluded.
        let mut best: Option<(usize, u64, u64)> = None;
        let mut best_excluded: Option<(usize, u64, u64)> = None;
        for k in 0..n {
            let i = start.wrapping_add(k) % n;
            let a = &topo.addrs[i];
            if a.weight == 0 || !a.health.is_healthy() {
                continue;
            }
            let cand = (i, a.active.load(Ordering::Relaxed) as u64, a.weight as u64);
            let slot = if exclude.contains(&a.addr) {
                &mut best_excluded
            } else {
                &mut best
            };
            // Lower (active + 1) / weight wins.
            let better = match slot {
                None => true,
                Some((_, act, w)) => (cand.1 + 1) * *w < (*act + 1) * cand.2,
            };
            if better {
                *slot = Some(cand);
            }
        }
        best.or(best_excluded).map(|b| b.0)
    }

    /// True when choosing a peer reads the request's headers: consistent
    /// hashing on a header or a cookie.
    pub(crate) fn reads_request_headers(&self) -> bool {
        let h = &self.hash;
        self.algorithm == Algorithm::ConsistentHashing
            && [h.on, h.fallback]
                .iter()
                .any(|o| matches!(o, HashOn::Header | HashOn::Cookie))
    }

    /// With `hash_on` (or `hash_fallback`) `cookie` and no such cookie in
    /// the request: the cookie's name and path. The caller then hashes on a
    /// new random value (`HashInput::new_cookie`) and sets it on the
    /// response, so the client's next requests go to the same target
    /// (Kong's behaviour).
    pub(crate) fn cookie_to_set(&self, headers: &http::HeaderMap) -> Option<(&str, &str)> {
        let h = &self.hash;
        if self.algorithm != Algorithm::ConsistentHashing
            || (h.on != HashOn::Cookie && h.fallback != HashOn::Cookie)
        {
            return None;
        }
        let name = h.cookie.as_deref()?;
        cookie_value(headers, name)
            .is_none()
            .then_some((name, h.cookie_path.as_str()))
    }

    /// The hash of the request's `hash_on` value, else its `hash_fallback`
    /// value; None when neither is present (then round-robin is used).
    fn hash_value(&self, input: &HashInput<'_>) -> Option<u64> {
        let h = &self.hash;
        value_of(h.on, h.on_header.as_deref(), h.cookie.as_deref(), input).or_else(|| {
            value_of(
                h.fallback,
                h.fallback_header.as_deref(),
                h.cookie.as_deref(),
                input,
            )
        })
    }

    pub(crate) fn report(&self, peer: &Peer, outcome: Outcome) {
        if !self.hc.enabled {
            return;
        }
        let ev = match outcome {
            Outcome::Response(status) => match self.hc.passive.classify(status) {
                Some(ev) => ev,
                None => return,
            },
            Outcome::TcpFailure => Event::TcpFailure,
            Outcome::Timeout => Event::Timeout,
        };
        self.apply(&peer.guard.0, ev, &self.hc.passive, "passive");
    }

    pub(crate) fn apply(&self, a: &AddrState, ev: Event, limits: &Limits, source: &'static str) {
        if let Some(healthy) = a.health.record(ev, limits) {
            let target = self
                .targets
                .get(a.target)
                .map(|t| t.display())
                .unwrap_or_default();
            let health = if healthy { "HEALTHY" } else { "UNHEALTHY" };
            tracing::warn!(
                upstream = %self.name,
                target = %target,
                address = %a.addr,
                source,
                event = ?ev,
                health,
                "target address health changed"
            );
            let was = self.is_healthy();
            self.recompute_available();
            let now = self.is_healthy();
            if was != now {
                tracing::warn!(
                    upstream = %self.name,
                    health = if now { "HEALTHY" } else { "UNHEALTHY" },
                    "balancer health changed"
                );
            }
        }
    }

    /// Kong's `GET /upstreams/{name}/health` body.
    pub(crate) fn health_report(&self) -> Value {
        let topo = self.topology.load();
        let mut data = Vec::with_capacity(self.targets.len());
        for (ti, t) in self.targets.iter().enumerate() {
            let view = topo.targets.get(ti);
            let addrs = view.map(|v| &topo.addrs[v.addrs.clone()]).unwrap_or(&[]);
            let addresses: Vec<Value> = addrs
                .iter()
                .map(|a| {
                    json!({
                        "ip": a.addr.ip().to_string(),
                        "port": a.addr.port(),
                        "weight": a.weight,
                        "health": self.addr_health(a),
                    })
                })
                .collect();
            // Kong: a target with no address is a DNS error; otherwise it
            // is HEALTHY if any address is, else UNHEALTHY (or
            // HEALTHCHECKS_OFF when health checks are off).
            let health = if addrs.is_empty() {
                "DNS_ERROR"
            } else if !self.hc.enabled {
                "HEALTHCHECKS_OFF"
            } else if addrs.iter().any(|a| a.health.is_healthy()) {
                "HEALTHY"
            } else {
                "UNHEALTHY"
            };
            let dns = match view.map(|v| &v.dns) {
                Some(DnsState::Literal) | Some(DnsState::Ok { v6: false }) => {
                    if t.ip.is_some_and(|ip| ip.is_ipv6()) {
                        "AAAA".to_string()
                    } else {
                        "A".to_string()
                    }
                }
                Some(DnsState::Ok { v6: true }) => "AAAA".to_string(),
                Some(DnsState::Error(m)) => format!("dns server error: {m}"),
                Some(DnsState::Pending) | None => "not resolved yet".to_string(),
            };
            let total: u64 = addrs.iter().map(|a| a.weight as u64).sum();
            let unavailable: u64 = addrs
                .iter()
                .filter(|a| !a.health.is_healthy())
                .map(|a| a.weight as u64)
                .sum();
            let mut entry = json!({
                "target": t.display(),
                "weight": t.weight,
                "health": health,
                "tags": t.tags,
                "data": {
                    "host": &*t.host,
                    "port": t.port,
                    "dns": dns,
                    "nodeWeight": t.weight,
                    "weight": {
                        "total": total,
                        "available": total - unavailable,
                        "unavailable": unavailable,
                    },
                    "addresses": addresses,
                },
            });
            if let (Some(id), Some(obj)) = (&t.id, entry.as_object_mut()) {
                obj.insert("id".into(), json!(id));
            }
            data.push(entry);
        }
        json!({
            "data": data,
            "total": self.targets.len(),
            "next": null,
            "balancer_health": self.balancer_health_of(&topo),
        })
    }

    fn addr_health(&self, a: &AddrState) -> &'static str {
        if !self.hc.enabled {
            "HEALTHCHECKS_OFF"
        } else if a.health.is_healthy() {
            "HEALTHY"
        } else {
            "UNHEALTHY"
        }
    }

    /// Kong's `GET /upstreams/{name}/health?balancer_health=1` `data` value.
    pub(crate) fn balancer_health(&self) -> Value {
        self.balancer_health_of(&self.topology.load())
    }

    fn balancer_health_of(&self, topo: &Topology) -> Value {
        let healthy = self.healthy(topo);
        let total = topo.total_weight;
        let available = if self.hc.enabled {
            self.available.load(Ordering::Relaxed).min(total)
        } else {
            total
        };
        let health = if !self.hc.enabled {
            "HEALTHCHECKS_OFF"
        } else if healthy {
            "HEALTHY"
        } else {
            "UNHEALTHY"
        };
        let mut v = json!({
            "health": health,
            "details": {
                "healthy": healthy,
                "weight": {
                    "total": total,
                    "available": available,
                    "unavailable": total - available,
                },
            },
        });
        if let (Some(id), Some(obj)) = (&self.id, v.as_object_mut()) {
            obj.insert("id".into(), json!(id));
        }
        v
    }
}

fn pick_ring(topo: &Topology, ring: &Ring, h: u64, exclude: &[SocketAddr]) -> Option<usize> {
    let mut fallback = None;
    for i in ring.walk(h) {
        let i = i as usize;
        let a = &topo.addrs[i];
        if !a.health.is_healthy() {
            continue;
        }
        if exclude.contains(&a.addr) {
            fallback.get_or_insert(i);
            continue;
        }
        return Some(i);
    }
    fallback
}

fn value_of(
    on: HashOn,
    header: Option<&str>,
    cookie: Option<&str>,
    input: &HashInput<'_>,
) -> Option<u64> {
    match on {
        HashOn::None => None,
        HashOn::Consumer => input
            .consumer
            .filter(|c| !c.is_empty())
            .map(|c| ring::hash(c.as_bytes())),
        HashOn::Ip => Some(ring::hash(input.client_ip.to_string().as_bytes())),
        HashOn::Header => {
            let name = header?;
            let mut values = input.headers.get_all(name).iter().peekable();
            values.peek()?;
            // Several header lines are joined with "," as Kong does.
            let mut buf = Vec::new();
            for (n, v) in values.enumerate() {
                if n > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(v.as_bytes());
            }
            (!buf.is_empty()).then(|| ring::hash(&buf))
        }
        HashOn::Cookie => {
            let name = cookie?;
            cookie_value(input.headers, name)
                .or(input.new_cookie)
                .map(|v| ring::hash(v.as_bytes()))
        }
    }
}

/// The non-empty value of cookie `name` in the request's `Cookie` headers.
fn cookie_value<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

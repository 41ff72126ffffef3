//! DNS resolution of target hostnames (hickory-resolver).
//!
//! The resolver honours `/etc/hosts` (so `localhost` works) and asks for A
//! records first, AAAA only when there is no A (like Kong's default record
//! order). The balancer keeps each answer until its TTL expires (clamped to
//! [`MIN_TTL`]..[`MAX_TTL`]) and then refreshes it in the background; see
//! `balancer.rs`.

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Shortest time an answer is kept (TTL 0 records are re-queried at most
/// this often).
pub(crate) const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest time an answer is kept (also bounds `/etc/hosts` answers).
pub(crate) const MAX_TTL: Duration = Duration::from_secs(3600);
/// Retry interval after a failed query.
pub(crate) const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);

fn options(mut opts: ResolverOpts) -> ResolverOpts {
    opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
    opts
}

/// The system resolver (`/etc/resolv.conf` + `/etc/hosts`). When the system
/// configuration cannot be read, falls back to `/etc/hosts` only.
pub(crate) fn system_resolver() -> Option<TokioResolver> {
    match TokioResolver::builder_tokio() {
        Ok(mut b) => {
            let opts = options(b.options_mut().clone());
            *b.options_mut() = opts;
            match b.build() {
                Ok(r) => return Some(r),
                Err(e) => tracing::error!(
                    error = %e,
                    "cannot build the system DNS resolver; using /etc/hosts only"
                ),
            }
        }
        Err(e) => tracing::error!(
            error = %e,
            "cannot read the system DNS configuration; using /etc/hosts only"
        ),
    }
    resolver_for(&[]).ok()
}

/// A resolver that asks the given name servers (UDP, then TCP on
/// truncation) and still honours `/etc/hosts`.
pub(crate) fn resolver_for(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut cfg = ResolverConfig::from_name_servers(Vec::new());
    for s in servers {
        let mut udp = ConnectionConfig::udp();
        udp.port = s.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = s.port();
        cfg.add_name_server(NameServerConfig::new(s.ip(), true, vec![udp, tcp]));
    }
    let mut b = TokioResolver::builder_with_config(cfg, TokioRuntimeProvider::default());
    let opts = options(ResolverOpts::default());
    *b.options_mut() = opts;
    b.build().map_err(|e| {
        tracing::error!(error = %e, "cannot build the DNS resolver");
        e.to_string()
    })
}

/// The outcome of resolving one name.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// Addresses (sorted, deduplicated, never empty) and when to re-query.
    Addrs(Vec<IpAddr>, Instant),
    /// The name does not exist or has no address records (authoritative:
    /// stale addresses are dropped).
    NoRecords(String),
    /// Transient failure (timeout, no server reachable, ...): stale
    /// addresses, if any, stay in use.
    Failed(String),
}

/// Resolve `name` to IP addresses.
pub(crate) async fn resolve(resolver: Option<&TokioResolver>, name: &str) -> Answer {
    let Some(resolver) = resolver else {
        return Answer::Failed("no DNS resolver available".into());
    };
    match resolver.lookup_ip(name).await {
        Ok(lookup) => {
            let mut ips: Vec<IpAddr> = lookup.iter().collect();
            ips.sort();
            ips.dedup();
            if ips.is_empty() {
                return Answer::NoRecords("no address records".into());
            }
            let now = Instant::now();
            let ttl = lookup
                .valid_until()
                .saturating_duration_since(now)
                .clamp(MIN_TTL, MAX_TTL);
            Answer::Addrs(ips, now + ttl)
        }
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Answer::NoRecords(e.to_string()),
        Err(e) => Answer::Failed(e.to_string()),
    }
}

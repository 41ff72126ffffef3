//! Upstream selection: load balancers, health checks, DNS.
//!
//! Layout:
//! - `UpstreamManager`: long-lived (survives config reloads); owns active
//!   health-check tasks, the DNS cache and per-target health state, and
//!   builds a `Balancers` set for each new config, reusing the live state of
//!   upstreams whose definition did not change.
//! - `Balancer`: one per `Upstream` entity, plus one implicit balancer per
//!   service whose `host` is a plain hostname/IP (Kong does the same).
//!   `pick` chooses a peer (round-robin / least-connections /
//!   consistent-hashing), `report` feeds passive health checks.

use gateway_config::{Config, ServiceIdx};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Inputs to consistent hashing for one request.
pub struct HashInput<'a> {
    pub client_ip: IpAddr,
    pub headers: &'a http::HeaderMap,
    /// Authenticated consumer id/username, when an auth plugin set one.
    pub consumer: Option<&'a str>,
}

/// A chosen upstream peer. Dropping it ends its "active connection" count
/// (least-connections).
pub struct Peer {
    pub addr: SocketAddr,
    /// The target's configured host (for the `Host` header / TLS SNI).
    pub host: Arc<str>,
    pub port: u16,
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

#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    #[error("no healthy target in upstream {0:?}")]
    NoHealthyTarget(String),
    #[error("DNS resolution of {host:?} failed: {message}")]
    Dns { host: String, message: String },
}

pub struct UpstreamManager {}

impl UpstreamManager {
    pub fn new() -> Arc<Self> {
        todo!()
    }
    /// Build balancers for `config`. Must run inside a tokio runtime.
    pub fn build(self: &Arc<Self>, config: &Config) -> Balancers {
        let _ = config;
        todo!()
    }
}

/// The balancers of one config snapshot.
pub struct Balancers {}

impl Balancers {
    /// The balancer serving service `idx`.
    pub fn for_service(&self, idx: ServiceIdx) -> Option<&Arc<Balancer>> {
        let _ = idx;
        todo!()
    }
    /// The balancer of the upstream named `name`.
    pub fn upstream(&self, name: &str) -> Option<&Arc<Balancer>> {
        let _ = name;
        todo!()
    }
}

pub struct Balancer {}

impl Balancer {
    /// Choose a peer, skipping addresses in `exclude` (already tried by
    /// this request) when any other healthy one exists.
    pub async fn pick(&self, input: &HashInput<'_>, exclude: &[SocketAddr]) -> Result<Peer, BalancerError> {
        let _ = (input, exclude);
        todo!()
    }
    /// Passive health check input.
    pub fn report(&self, peer: &Peer, outcome: Outcome) {
        let _ = (peer, outcome);
        todo!()
    }
    /// Kong's `GET /upstreams/{name}/health` body.
    pub fn health_report(&self) -> serde_json::Value {
        todo!()
    }
}

//! The normalized config model: what a Kong declarative config means once it
//! is parsed, validated, defaulted and its references resolved.
//!
//! Every cross-entity reference is an index into the owning `Config` vector
//! (`ServiceIdx`, `RouteIdx`, ...), so consumers never look anything up by
//! name at request time. Field names and defaults follow Kong 3.x.

use serde::Serialize;
use std::collections::BTreeMap;

/// A string stored inline when it is at most 24 bytes (names, hosts and
/// paths nearly always are), so a table of 10,000 routes does not hold
/// tens of thousands of separate small heap blocks. Reads as a `&str`.
pub use compact_str::CompactString;

/// A route's or plugin's protocols: at most the four [`Protocol`]s, kept
/// inline (no heap block per route).
pub type Protocols = smallvec::SmallVec<[Protocol; 4]>;

pub type ServiceIdx = usize;
pub type RouteIdx = usize;
pub type UpstreamIdx = usize;
pub type ConsumerIdx = usize;
pub type CertificateIdx = usize;
pub type CaCertificateIdx = usize;

/// One complete, validated gateway configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Config {
    /// Always `"3.0"`: inputs written as `"2.1"` are migrated to 3.0
    /// semantics while parsing (regex paths gain their `~` prefix).
    pub format_version: String,
    pub services: Vec<Service>,
    /// All routes, nested ones lifted to the top level, in declaration order
    /// (nested routes of service 0 first, then of service 1, ..., then
    /// top-level routes). Declaration order is the router's final tie-break.
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    pub consumers: Vec<Consumer>,
    /// All plugins, nested ones lifted, with their scope resolved.
    pub plugins: Vec<Plugin>,
    pub certificates: Vec<Certificate>,
    pub ca_certificates: Vec<CaCertificate>,
}

/// Common metadata every entity carries.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Meta {
    /// The `id` given in the config (Kong uses UUIDs), if any.
    pub id: Option<Box<str>>,
    /// Boxed slices, not `Vec`s: every entity has a `Meta`, and these lists
    /// never change once decoded (16 bytes each instead of 24).
    pub tags: Box<[String]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Https,
    Grpc,
    Grpcs,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Grpc => "grpc",
            Protocol::Grpcs => "grpcs",
        }
    }
    /// True for the TLS variants.
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Grpcs)
    }
    pub fn is_grpc(self) -> bool {
        matches!(self, Protocol::Grpc | Protocol::Grpcs)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub meta: Meta,
    pub name: Option<CompactString>,
    pub protocol: Protocol,
    /// A hostname, an IP (IPv6 without brackets), or the name of an
    /// `Upstream` (see `upstream`).
    pub host: CompactString,
    pub port: u16,
    /// Upstream path prefix (`/` when absent in Kong's router logic).
    pub path: Option<CompactString>,
    /// Default 5.
    pub retries: u32,
    /// Milliseconds, default 60000 each.
    pub connect_timeout_ms: u64,
    pub write_timeout_ms: u64,
    pub read_timeout_ms: u64,
    /// Default true.
    pub enabled: bool,
    /// When `host` names an upstream in this config, its index.
    pub upstream: Option<UpstreamIdx>,
    /// `tls_verify` for https/grpcs services (None = node default).
    pub tls_verify: Option<bool>,
    /// `tls_verify_depth` (0..=64; None = node default).
    pub tls_verify_depth: Option<u8>,
    /// `ca_certificates`: CA certificates to verify the upstream with.
    pub ca_certificates: Vec<CaCertificateIdx>,
    /// `client_certificate`: presented to the upstream (mutual TLS).
    pub client_certificate: Option<CertificateIdx>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PathHandling {
    #[serde(rename = "v0")]
    V0,
    #[serde(rename = "v1")]
    V1,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    pub meta: Meta,
    pub name: Option<CompactString>,
    /// None for a route with no service (Kong allows it; proxying answers 503).
    pub service: Option<ServiceIdx>,
    /// Default `[http, https]`.
    pub protocols: Protocols,
    /// Upper-cased. The lists of a route are boxed slices (exact size,
    /// 16 bytes each): they never change once decoded.
    pub methods: Box<[String]>,
    /// Lower-cased; may be `*.example.com`, `example.*`, and may carry `:port`.
    pub hosts: Box<[CompactString]>,
    /// Prefix paths start with `/`; regex paths keep their leading `~`.
    pub paths: Box<[CompactString]>,
    /// Header name (lower-cased) -> accepted values (a value starting with
    /// `~*` is a regex). Never contains `host`.
    pub headers: BTreeMap<String, Vec<String>>,
    pub snis: Box<[String]>,
    /// Default true.
    pub strip_path: bool,
    /// Default false.
    pub preserve_host: bool,
    /// Default 0.
    pub regex_priority: i64,
    /// Default v0.
    pub path_handling: PathHandling,
    /// Default 426.
    pub https_redirect_status_code: u16,
    /// Default true.
    pub request_buffering: bool,
    /// Default true.
    pub response_buffering: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    RoundRobin,
    LeastConnections,
    ConsistentHashing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    None,
    Consumer,
    Ip,
    Header,
    Cookie,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Upstream {
    pub meta: Meta,
    /// Required; services reference it through their `host`.
    pub name: String,
    /// Default round-robin.
    pub algorithm: Algorithm,
    /// Default none.
    pub hash_on: HashOn,
    /// Default none.
    pub hash_fallback: HashOn,
    pub hash_on_header: Option<String>,
    pub hash_fallback_header: Option<String>,
    pub hash_on_cookie: Option<String>,
    /// Default "/".
    pub hash_on_cookie_path: String,
    /// Default 10000.
    pub slots: u32,
    pub host_header: Option<String>,
    pub healthchecks: Healthchecks,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub meta: Meta,
    /// `host:port` (port defaults to 8000 as in Kong) or `host`.
    pub host: String,
    pub port: u16,
    /// 0..=65535, default 100. Weight 0 means disabled.
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Healthchecks {
    pub active: ActiveHealthcheck,
    pub passive: PassiveHealthcheck,
    /// Percentage of healthy weight below which the upstream counts as
    /// unhealthy. Default 0.
    pub threshold: f64,
}

/// Kong's defaults for every health check field (what an upstream without
/// `healthchecks` gets, and what unset fields fall back to).
impl Default for Healthchecks {
    fn default() -> Self {
        Healthchecks {
            active: ActiveHealthcheck {
                kind: HealthcheckType::Http,
                http_path: "/".to_string(),
                timeout_secs: 1.0,
                concurrency: 10,
                https_verify_certificate: true,
                https_sni: None,
                headers: BTreeMap::new(),
                healthy: ActiveHealthy {
                    interval_secs: 0.0,
                    http_statuses: vec![200, 302],
                    successes: 0,
                },
                unhealthy: ActiveUnhealthy {
                    interval_secs: 0.0,
                    http_statuses: vec![429, 404, 500, 501, 502, 503, 504, 505],
                    tcp_failures: 0,
                    timeouts: 0,
                    http_failures: 0,
                },
            },
            passive: PassiveHealthcheck {
                kind: HealthcheckType::Http,
                healthy: PassiveHealthy {
                    http_statuses: vec![
                        200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304,
                        305, 306, 307, 308,
                    ],
                    successes: 0,
                },
                unhealthy: PassiveUnhealthy {
                    http_statuses: vec![429, 500, 503],
                    tcp_failures: 0,
                    timeouts: 0,
                    http_failures: 0,
                },
            },
            threshold: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthcheckType {
    Tcp,
    Http,
    Https,
    Grpc,
    Grpcs,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveHealthcheck {
    /// Default http.
    pub kind: HealthcheckType,
    /// Default "/".
    pub http_path: String,
    /// Seconds, default 1.
    pub timeout_secs: f64,
    /// Default 10.
    pub concurrency: u32,
    pub https_verify_certificate: bool,
    pub https_sni: Option<String>,
    pub headers: BTreeMap<String, Vec<String>>,
    pub healthy: ActiveHealthy,
    pub unhealthy: ActiveUnhealthy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveHealthy {
    /// Seconds; 0 disables active probing of healthy targets. Default 0.
    pub interval_secs: f64,
    /// Default [200, 302].
    pub http_statuses: Vec<u16>,
    /// Default 0.
    pub successes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveUnhealthy {
    /// Seconds; 0 disables active probing of unhealthy targets. Default 0.
    pub interval_secs: f64,
    /// Default [429, 404, 500, 501, 502, 503, 504, 505].
    pub http_statuses: Vec<u16>,
    pub tcp_failures: u32,
    pub timeouts: u32,
    pub http_failures: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassiveHealthcheck {
    pub kind: HealthcheckType,
    pub healthy: PassiveHealthy,
    pub unhealthy: PassiveUnhealthy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassiveHealthy {
    /// Default [200..=208, 226, 300..=308].
    pub http_statuses: Vec<u16>,
    pub successes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassiveUnhealthy {
    /// Default [429, 500, 503].
    pub http_statuses: Vec<u16>,
    pub tcp_failures: u32,
    pub timeouts: u32,
    pub http_failures: u32,
}

/// A consumer and its credentials. Credentials are kept as opaque JSON until
/// the auth plugins land; they are secrets and never printed by `Debug`.
#[derive(Clone, PartialEq, Serialize)]
pub struct Consumer {
    pub meta: Meta,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    /// Collection name (`keyauth_credentials`, `basicauth_credentials`,
    /// `jwt_secrets`, `acls`, `hmacauth_credentials`) -> entries.
    pub credentials: BTreeMap<String, Vec<serde_json::Value>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("meta", &self.meta)
            .field("username", &self.username)
            .field("custom_id", &self.custom_id)
            .field(
                "credentials",
                &self
                    .credentials
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.len()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plugin {
    pub meta: Meta,
    pub name: String,
    pub instance_name: Option<String>,
    /// The plugin's `config` object, with the plugin's own defaults filled
    /// in by its `PluginCatalog` entry.
    pub config: serde_json::Value,
    /// Default true.
    pub enabled: bool,
    /// Default `[grpc, grpcs, http, https]`.
    pub protocols: Protocols,
    pub service: Option<ServiceIdx>,
    pub route: Option<RouteIdx>,
    pub consumer: Option<ConsumerIdx>,
}

/// A TLS certificate and key (PEM). The key is a secret: `Debug` hides it.
#[derive(Clone, PartialEq, Serialize)]
pub struct Certificate {
    pub meta: Meta,
    pub cert: String,
    pub key: String,
    pub cert_alt: Option<String>,
    pub key_alt: Option<String>,
    /// SNI names served by this certificate (nested `snis` on the certificate
    /// plus top-level `snis` entries pointing at it), lower-cased.
    pub snis: Vec<String>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("meta", &self.meta)
            .field("cert_len", &self.cert.len())
            .field("key", &"<redacted>")
            .field("snis", &self.snis)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaCertificate {
    pub meta: Meta,
    pub cert: String,
    pub cert_digest: Option<String>,
}

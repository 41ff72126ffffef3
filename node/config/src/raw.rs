//! Decoded but unresolved entities: model values plus where each came from
//! and the references still to resolve. `decode` fills a `Raw`; `resolve`
//! checks uniqueness and references and turns it into a `Config`.

use crate::diag::At;
use crate::model::*;

/// A reference to another entity by name or id, as written.
#[derive(Debug, Clone)]
pub(crate) struct Ref {
    pub key: String,
    pub at: At,
}

/// How an entity is attached to its parent.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    None,
    /// Nested under the parent with this raw index.
    Nested(usize),
    Ref(Ref),
}

/// Where an entity's `name` and `id` were written (for duplicate messages).
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub at: At,
    pub name_at: Option<At>,
    pub id_at: Option<At>,
}

pub(crate) struct RawService {
    pub service: Service,
    pub origin: Origin,
    pub client_certificate: Option<Ref>,
    pub ca_certificates: Vec<Ref>,
}

pub(crate) struct RawRoute {
    pub route: Route,
    pub origin: Origin,
    pub service: Link,
}

pub(crate) struct RawUpstream {
    pub upstream: Upstream,
    pub origin: Origin,
}

pub(crate) struct RawTarget {
    pub target: Target,
    pub origin: Origin,
    pub upstream: Link,
}

pub(crate) struct RawConsumer {
    pub consumer: Consumer,
    pub origin: Origin,
    pub username_at: Option<At>,
    pub custom_id_at: Option<At>,
}

pub(crate) struct RawCredential {
    /// `keyauth_credentials`, ...
    pub collection: &'static str,
    pub value: serde_json::Value,
    pub origin: Origin,
    /// The field that must be unique across all consumers (`key`, ...) and
    /// where it was written.
    pub unique: Option<(&'static str, String, At)>,
    pub consumer: Link,
}

pub(crate) struct RawPlugin {
    pub plugin: Plugin,
    pub origin: Origin,
    pub service: Link,
    pub route: Link,
    pub consumer: Link,
}

pub(crate) struct RawCertificate {
    pub certificate: Certificate,
    pub origin: Origin,
}

pub(crate) struct RawSni {
    pub name: String,
    pub origin: Origin,
    pub certificate: Link,
}

pub(crate) struct RawCaCertificate {
    pub ca: CaCertificate,
    pub origin: Origin,
}

/// Everything decoded from all files, in file order.
#[derive(Default)]
pub(crate) struct Raw {
    pub services: Vec<RawService>,
    pub routes: Vec<RawRoute>,
    pub upstreams: Vec<RawUpstream>,
    pub targets: Vec<RawTarget>,
    pub consumers: Vec<RawConsumer>,
    pub credentials: Vec<RawCredential>,
    pub plugins: Vec<RawPlugin>,
    pub certificates: Vec<RawCertificate>,
    pub snis: Vec<RawSni>,
    pub ca_certificates: Vec<RawCaCertificate>,
}

//! Semantic diff of two configs: which entities were added, removed or
//! changed, and how, independent of file layout and declaration order.
//!
//! # How it works
//!
//! Each config is flattened into one map per entity kind (services, routes,
//! upstreams, targets, consumers, plugins, certificates, CA certificates),
//! keyed by the entity's identity. Every entity becomes the JSON object that
//! `Config::to_declarative` writes for it (Kong field names, defaults filled
//! in), with nested children split out into their own kind and references
//! rewritten to the referenced entity's identity key instead of an index:
//!
//! - routes: `service`; plugins: `service`, `route`, `consumer`;
//! - targets: `upstream`; services: `ca_certificates`, `client_certificate`.
//!
//! So a route nested under a service and the same route written top-level
//! with `service: name` are the same entity, reordering entities is not a
//! change, and a route moved to another service shows as
//! `service "a" -> "b"`. Matched entities are compared field by field:
//! objects recursively by key (the reported `path` is dotted, e.g.
//! `healthchecks.active.timeout`, `config.minute`), arrays and scalars as
//! whole values (`paths ["/a"] -> ["/a","/b"]`).
//!
//! # Identity keys
//!
//! Entity names only contain alphanumerics, `.`, `-`, `_`, `~` (or
//! non-ASCII), so the other key forms below never collide with a name.
//!
//! | kind | key, first that applies |
//! |---|---|
//! | services | `name`; `id=<id>`; `url=<protocol>://<host>:<port><path>` |
//! | routes | `name`; `id=<id>`; `service=<key> methods=.. hosts=.. paths=..` (its non-empty matchers) |
//! | upstreams | `name` (required) |
//! | targets | `id=<id>`; `<upstream name>/<host>:<port>` |
//! | consumers | `username`; `id=<id>`; `custom_id=<custom_id>` |
//! | plugins | `instance_name`; `id=<id>`; `<plugin name> service=<key> route=<key> consumer=<key>` (the scopes it has), or `<plugin name> (global)` |
//! | certificates | `id=<id>`; `sni=<smallest SNI>`; `sha256=<fingerprint>` |
//! | ca_certificates | `id=<id>`; `sha256=<fingerprint>` |
//!
//! A fingerprint is the first 16 hex digits of the SHA-256 of the trimmed
//! PEM text. Certificates without an id are keyed by SNI rather than
//! fingerprint so that rotating a certificate for a host shows as a changed
//! `cert`/`key` rather than a removal plus an addition. SNIs are a field of
//! their certificate (`snis`), not a kind of their own. An entity whose key
//! changes (a rename, an unnamed route whose paths change) is reported as
//! removed plus added. Should two entities of a kind ever get the same key
//! (only possible for unnamed, id-less entities that are otherwise alike),
//! the later ones get ` #2`, ` #3`, ... in declaration order.
//!
//! # Secrets
//!
//! Values reported for certificate `key`/`key_alt` and for the `key`,
//! `password`, `secret` and `client_secret` fields of consumer credentials
//! are replaced by `"<redacted>"` (the comparison itself uses the real
//! values, so a changed secret is still reported as changed). Plugin
//! `config` values are reported as they are.

use crate::model::*;
use crate::resolve::host_port_text;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

/// Values longer than this (as compact JSON) are shortened by `Display`.
const DISPLAY_MAX: usize = 80;

/// Shown instead of secret values.
const REDACTED: &str = "<redacted>";

/// The difference between two configs, per entity kind. Every list is
/// sorted by identity key (see the module docs for the key forms).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ConfigDiff {
    pub services: KindDiff,
    pub routes: KindDiff,
    pub upstreams: KindDiff,
    pub targets: KindDiff,
    pub consumers: KindDiff,
    pub plugins: KindDiff,
    pub certificates: KindDiff,
    pub ca_certificates: KindDiff,
}

/// The changes to one kind of entity.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct KindDiff {
    /// Keys of entities only in the new config, sorted.
    pub added: Vec<String>,
    /// Keys of entities only in the old config, sorted.
    pub removed: Vec<String>,
    /// Entities in both configs that differ, sorted by key.
    pub changed: Vec<EntityChange>,
}

/// One entity present in both configs, with its changed fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityChange {
    pub key: String,
    /// Never empty; sorted by path.
    pub fields: Vec<FieldChange>,
}

/// One changed field of an entity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// Dotted path relative to the entity, e.g. `port`, `paths`,
    /// `config.minute`, `healthchecks.active.healthy.interval`. A key that
    /// is not made of ASCII alphanumerics, `_` and `-` is written as a
    /// quoted index: `headers["x.y"]`.
    pub path: String,
    /// The old value; absent when the field was not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The new value; absent when the field is no longer set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// Entity counts over all kinds (`changed` counts entities, not fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct DiffCounts {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
}

impl KindDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl ConfigDiff {
    /// Every kind with its name, in a fixed order (the `Display` order).
    pub fn kinds(&self) -> [(&'static str, &KindDiff); 8] {
        [
            ("services", &self.services),
            ("routes", &self.routes),
            ("upstreams", &self.upstreams),
            ("targets", &self.targets),
            ("consumers", &self.consumers),
            ("plugins", &self.plugins),
            ("certificates", &self.certificates),
            ("ca_certificates", &self.ca_certificates),
        ]
    }

    /// True when the configs are semantically equal.
    pub fn is_empty(&self) -> bool {
        self.kinds().iter().all(|(_, k)| k.is_empty())
    }

    pub fn counts(&self) -> DiffCounts {
        let mut c = DiffCounts::default();
        for (_, k) in self.kinds() {
            c.added += k.added.len();
            c.removed += k.removed.len();
            c.changed += k.changed.len();
        }
        c
    }
}

impl fmt::Display for DiffCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} added, {} removed, {} changed",
            self.added, self.removed, self.changed
        )
    }
}

/// A summary, one line per added/removed entity and per changed field,
/// ending with the counts line; `no changes` for an empty diff. Long values
/// are shortened to about 80 characters.
///
/// ```text
/// services:
///   + svc-new
///   - svc-old
///   ~ svc: port 80 -> 8080
/// routes:
///   ~ r1: paths ["/a"] -> ["/a","/b"]
/// 1 added, 1 removed, 2 changed
/// ```
impl fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no changes");
        }
        for (name, k) in self.kinds() {
            if k.is_empty() {
                continue;
            }
            writeln!(f, "{name}:")?;
            for key in &k.added {
                writeln!(f, "  + {key}")?;
            }
            for key in &k.removed {
                writeln!(f, "  - {key}")?;
            }
            for e in &k.changed {
                for c in &e.fields {
                    writeln!(
                        f,
                        "  ~ {}: {} {} -> {}",
                        e.key,
                        c.path,
                        short(c.old.as_ref()),
                        short(c.new.as_ref())
                    )?;
                }
            }
        }
        write!(f, "{}", self.counts())
    }
}

/// Compact JSON, shortened to `DISPLAY_MAX` characters; `(unset)` for absent.
fn short(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "(unset)".to_string();
    };
    let s = v.to_string();
    if s.chars().count() <= DISPLAY_MAX {
        return s;
    }
    let mut out: String = s.chars().take(DISPLAY_MAX - 3).collect();
    out.push_str("...");
    out
}

/// The semantic difference from `old` to `new` (see the module docs).
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let a = Flat::of(old);
    let b = Flat::of(new);
    ConfigDiff {
        services: diff_kind(&a.services, &b.services, no_secrets),
        routes: diff_kind(&a.routes, &b.routes, no_secrets),
        upstreams: diff_kind(&a.upstreams, &b.upstreams, no_secrets),
        targets: diff_kind(&a.targets, &b.targets, no_secrets),
        consumers: diff_kind(&a.consumers, &b.consumers, consumer_secrets),
        plugins: diff_kind(&a.plugins, &b.plugins, no_secrets),
        certificates: diff_kind(&a.certificates, &b.certificates, certificate_secrets),
        ca_certificates: diff_kind(&a.ca_certificates, &b.ca_certificates, no_secrets),
    }
}

type Entities = BTreeMap<String, Value>;

/// One config as per-kind maps: identity key -> entity JSON.
struct Flat {
    services: Entities,
    routes: Entities,
    upstreams: Entities,
    targets: Entities,
    consumers: Entities,
    plugins: Entities,
    certificates: Entities,
    ca_certificates: Entities,
}

impl Flat {
    fn of(c: &Config) -> Flat {
        let service_keys = unique(c.services.iter().map(service_key).collect());
        let upstream_keys = unique(c.upstreams.iter().map(|u| u.name.clone()).collect());
        let consumer_keys = unique(c.consumers.iter().map(consumer_key).collect());
        let cert_keys = unique(c.certificates.iter().map(certificate_key).collect());
        let ca_keys = unique(c.ca_certificates.iter().map(ca_key).collect());
        let route_keys = unique(
            c.routes
                .iter()
                .map(|r| route_key(r, &service_keys))
                .collect(),
        );
        let plugin_keys = unique(
            c.plugins
                .iter()
                .map(|p| plugin_key(p, &service_keys, &route_keys, &consumer_keys))
                .collect(),
        );

        let mut services = Entities::new();
        for (s, key) in c.services.iter().zip(&service_keys) {
            let mut one = s.clone();
            one.ca_certificates.clear();
            one.client_certificate = None;
            let mut o = emit_one(
                Config {
                    services: vec![one],
                    ..Config::default()
                },
                "services",
            );
            if !s.ca_certificates.is_empty() {
                let keys: Vec<Value> = s
                    .ca_certificates
                    .iter()
                    .map(|&i| json!(key_at(&ca_keys, i)))
                    .collect();
                o.insert("ca_certificates".into(), Value::Array(keys));
            }
            if let Some(i) = s.client_certificate {
                o.insert("client_certificate".into(), json!(key_at(&cert_keys, i)));
            }
            services.insert(key.clone(), Value::Object(o));
        }

        let mut routes = Entities::new();
        for (r, key) in c.routes.iter().zip(&route_keys) {
            let mut one = r.clone();
            one.service = None;
            let mut o = emit_one(
                Config {
                    routes: vec![one],
                    ..Config::default()
                },
                "routes",
            );
            if let Some(i) = r.service {
                o.insert("service".into(), json!(key_at(&service_keys, i)));
            }
            routes.insert(key.clone(), Value::Object(o));
        }

        let mut upstreams = Entities::new();
        let mut target_keys = Vec::new();
        let mut target_objs = Vec::new();
        for (u, key) in c.upstreams.iter().zip(&upstream_keys) {
            let mut o = emit_one(
                Config {
                    upstreams: vec![u.clone()],
                    ..Config::default()
                },
                "upstreams",
            );
            // `to_declarative` writes one entry per target, in order.
            let emitted = match o.remove("targets") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            for (t, obj) in u.targets.iter().zip(emitted) {
                target_keys.push(match id_key(&t.meta) {
                    Some(k) => k,
                    None => format!("{key}/{}", host_port_text(&t.host, t.port)),
                });
                let mut obj = match obj {
                    Value::Object(obj) => obj,
                    _ => Map::new(),
                };
                obj.insert("upstream".into(), json!(key));
                target_objs.push(Value::Object(obj));
            }
            upstreams.insert(key.clone(), Value::Object(o));
        }
        let targets: Entities = unique(target_keys).into_iter().zip(target_objs).collect();

        let mut consumers = Entities::new();
        for (x, key) in c.consumers.iter().zip(&consumer_keys) {
            let o = emit_one(
                Config {
                    consumers: vec![x.clone()],
                    ..Config::default()
                },
                "consumers",
            );
            consumers.insert(key.clone(), Value::Object(o));
        }

        let mut plugins = Entities::new();
        for (p, key) in c.plugins.iter().zip(&plugin_keys) {
            let mut one = p.clone();
            one.service = None;
            one.route = None;
            one.consumer = None;
            let mut o = emit_one(
                Config {
                    plugins: vec![one],
                    ..Config::default()
                },
                "plugins",
            );
            if let Some(i) = p.service {
                o.insert("service".into(), json!(key_at(&service_keys, i)));
            }
            if let Some(i) = p.route {
                o.insert("route".into(), json!(key_at(&route_keys, i)));
            }
            if let Some(i) = p.consumer {
                o.insert("consumer".into(), json!(key_at(&consumer_keys, i)));
            }
            plugins.insert(key.clone(), Value::Object(o));
        }

        let mut certificates = Entities::new();
        for (x, key) in c.certificates.iter().zip(&cert_keys) {
            let o = emit_one(
                Config {
                    certificates: vec![x.clone()],
                    ..Config::default()
                },
                "certificates",
            );
            certificates.insert(key.clone(), Value::Object(o));
        }

        let mut ca_certificates = Entities::new();
        for (x, key) in c.ca_certificates.iter().zip(&ca_keys) {
            let o = emit_one(
                Config {
                    ca_certificates: vec![x.clone()],
                    ..Config::default()
                },
                "ca_certificates",
            );
            ca_certificates.insert(key.clone(), Value::Object(o));
        }

        Flat {
            services,
            routes,
            upstreams,
            targets,
            consumers,
            plugins,
            certificates,
            ca_certificates,
        }
    }
}

/// The declarative object of the single entity in `c`'s `list`. Going
/// through `to_declarative` keeps field names and defaults in one place.
fn emit_one(c: Config, list: &str) -> Map<String, Value> {
    let Value::Object(mut doc) = c.to_declarative() else {
        return Map::new();
    };
    match doc.remove(list) {
        Some(Value::Array(items)) => match items.into_iter().next() {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        },
        _ => Map::new(),
    }
}

/// Makes keys unique in order: the second `k` becomes `k #2`, and so on.
fn unique(keys: Vec<String>) -> Vec<String> {
    let mut seen: HashSet<String> = HashSet::with_capacity(keys.len());
    keys.into_iter()
        .map(|k| {
            let mut key = k.clone();
            let mut n = 1;
            while seen.contains(&key) {
                n += 1;
                key = format!("{k} #{n}");
            }
            seen.insert(key.clone());
            key
        })
        .collect()
}

/// The key at index `i`; a placeholder for a dangling index (which `parse`
/// never produces).
fn key_at(keys: &[String], i: usize) -> String {
    keys.get(i)
        .cloned()
        .unwrap_or_else(|| format!("<missing #{i}>"))
}

fn id_key(m: &Meta) -> Option<String> {
    m.id.as_ref().map(|id| format!("id={id}"))
}

fn fingerprint(pem: &str) -> String {
    let digest = Sha256::digest(pem.trim().as_bytes());
    let mut s = hex::encode(digest);
    s.truncate(16);
    format!("sha256={s}")
}

fn service_key(s: &Service) -> String {
    if let Some(n) = &s.name {
        return n.to_string();
    }
    if let Some(k) = id_key(&s.meta) {
        return k;
    }
    format!(
        "url={}://{}{}",
        s.protocol.as_str(),
        host_port_text(&s.host, s.port),
        s.path.as_deref().unwrap_or("")
    )
}

fn route_key(r: &Route, service_keys: &[String]) -> String {
    if let Some(n) = &r.name {
        return n.to_string();
    }
    if let Some(k) = id_key(&r.meta) {
        return k;
    }
    let mut parts = Vec::new();
    if let Some(i) = r.service {
        parts.push(format!("service={}", key_at(service_keys, i)));
    }
    if r.protocols[..] != [Protocol::Http, Protocol::Https] {
        let p: Vec<&str> = r.protocols.iter().map(|p| p.as_str()).collect();
        parts.push(format!("protocols={}", p.join(",")));
    }
    for (name, list) in [
        ("methods", r.methods.join(",")),
        ("hosts", r.hosts.join(",")),
        ("paths", r.paths.join(",")),
        ("snis", r.snis.join(",")),
    ] {
        if !list.is_empty() {
            parts.push(format!("{name}={list}"));
        }
    }
    if !r.headers.is_empty() {
        let h: Vec<String> = r
            .headers
            .iter()
            .map(|(k, v)| format!("{k}:{}", v.join("|")))
            .collect();
        parts.push(format!("headers={}", h.join(",")));
    }
    if parts.is_empty() {
        "(unnamed route)".to_string()
    } else {
        parts.join(" ")
    }
}

fn consumer_key(x: &Consumer) -> String {
    if let Some(n) = &x.username {
        return n.clone();
    }
    if let Some(k) = id_key(&x.meta) {
        return k;
    }
    match &x.custom_id {
        Some(c) => format!("custom_id={c}"),
        None => "(unnamed consumer)".to_string(),
    }
}

fn plugin_key(
    p: &Plugin,
    service_keys: &[String],
    route_keys: &[String],
    consumer_keys: &[String],
) -> String {
    if let Some(n) = &p.instance_name {
        return n.clone();
    }
    if let Some(k) = id_key(&p.meta) {
        return k;
    }
    let mut key = p.name.clone();
    let scopes = [
        ("service", p.service, service_keys),
        ("route", p.route, route_keys),
        ("consumer", p.consumer, consumer_keys),
    ];
    let mut scoped = false;
    for (what, idx, keys) in scopes {
        if let Some(i) = idx {
            key.push_str(&format!(" {what}={}", key_at(keys, i)));
            scoped = true;
        }
    }
    if !scoped {
        key.push_str(" (global)");
    }
    key
}

fn certificate_key(x: &Certificate) -> String {
    if let Some(k) = id_key(&x.meta) {
        return k;
    }
    match x.snis.iter().min() {
        Some(sni) => format!("sni={sni}"),
        None => fingerprint(&x.cert),
    }
}

fn ca_key(x: &CaCertificate) -> String {
    id_key(&x.meta).unwrap_or_else(|| fingerprint(&x.cert))
}

/// Replaces secret parts of a reported value; gets the raw path segments.
type Redact = fn(&[&str], Value) -> Value;

fn no_secrets(_: &[&str], v: Value) -> Value {
    v
}

fn certificate_secrets(path: &[&str], v: Value) -> Value {
    match path.first() {
        Some(&("key" | "key_alt")) => json!(REDACTED),
        _ => v,
    }
}

const CONSUMER_PLAIN_FIELDS: &[&str] = &["username", "custom_id", "id", "tags"];
const CREDENTIAL_SECRETS: &[&str] = &["key", "password", "secret", "client_secret"];

fn consumer_secrets(path: &[&str], v: Value) -> Value {
    match path.first() {
        Some(field) if !CONSUMER_PLAIN_FIELDS.contains(field) => {
            // A credential collection (compared as a whole array), or a
            // part of one should the shape ever change.
            if path.len() > 1 && path.iter().skip(1).any(|s| CREDENTIAL_SECRETS.contains(s)) {
                return json!(REDACTED);
            }
            redact_credentials(v)
        }
        _ => v,
    }
}

fn redact_credentials(v: Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(redact_credentials).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| {
                    if CREDENTIAL_SECRETS.contains(&k.as_str()) {
                        (k, json!(REDACTED))
                    } else {
                        (k, v)
                    }
                })
                .collect(),
        ),
        other => other,
    }
}

fn diff_kind(old: &Entities, new: &Entities, redact: Redact) -> KindDiff {
    let mut d = KindDiff::default();
    for (key, a) in old {
        match new.get(key) {
            None => d.removed.push(key.clone()),
            Some(b) => {
                let mut fields = Vec::new();
                diff_values(&mut Vec::new(), Some(a), Some(b), redact, &mut fields);
                if !fields.is_empty() {
                    d.changed.push(EntityChange {
                        key: key.clone(),
                        fields,
                    });
                }
            }
        }
    }
    d.added = new
        .keys()
        .filter(|k| !old.contains_key(*k))
        .cloned()
        .collect();
    d
}

/// Objects are compared key by key (in sorted key order), everything else
/// as a whole value.
fn diff_values<'a>(
    path: &mut Vec<&'a str>,
    old: Option<&'a Value>,
    new: Option<&'a Value>,
    redact: Redact,
    out: &mut Vec<FieldChange>,
) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                path.push(k);
                diff_values(path, a.get(k), b.get(k), redact, out);
                path.pop();
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(FieldChange {
            path: render_path(path),
            old: a.map(|v| redact(path, v.clone())),
            new: b.map(|v| redact(path, v.clone())),
        }),
    }
}

fn render_path(path: &[&str]) -> String {
    let mut s = String::new();
    for seg in path {
        let plain = !seg.is_empty()
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if plain {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(seg);
        } else {
            s.push('[');
            s.push_str(&Value::String((*seg).to_string()).to_string());
            s.push(']');
        }
    }
    s
}

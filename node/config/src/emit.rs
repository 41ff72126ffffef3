//! `Config` -> Kong declarative JSON, and the canonical hash.
//!
//! The document nests routes and plugins under services, targets under
//! upstreams, credentials and plugins under consumers, SNIs under
//! certificates, and writes every field explicitly, so `parse` reads it back
//! to an equal `Config`. Route order is preserved: routes stay nested while
//! their services come in non-decreasing order (which is how `parse` orders
//! nested routes); the rest are written as top-level routes referencing
//! their service by name or id.

use crate::model::*;
use crate::resolve::host_port_text;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Where a plugin is written.
enum PluginPlace {
    TopLevel,
    Service(usize),
    Route(usize),
    Consumer(usize),
}

pub(crate) fn to_declarative(c: &Config) -> Value {
    let mut doc = Map::new();
    doc.insert("_format_version".into(), json!("3.0"));

    // Route placement.
    let mut nested_routes: Vec<Vec<usize>> = vec![Vec::new(); c.services.len()];
    let mut top_routes: Vec<usize> = Vec::new();
    let mut current = 0usize;
    let mut in_prefix = true;
    for (i, r) in c.routes.iter().enumerate() {
        match r.service {
            Some(s) if s < c.services.len() && in_prefix && s >= current => {
                nested_routes[s].push(i);
                current = s;
            }
            Some(s) if s < c.services.len() && service_ref(c, s).is_none() => {
                // No name or id to refer to: nesting is the only way (this
                // can change the route's position).
                nested_routes[s].push(i);
            }
            _ => {
                in_prefix = false;
                top_routes.push(i);
            }
        }
    }

    // Plugin placement.
    let mut places = Vec::with_capacity(c.plugins.len());
    for p in &c.plugins {
        let scopes = [
            p.service
                .map(|s| (PluginPlace::Service(s), service_ref(c, s))),
            p.route.map(|r| (PluginPlace::Route(r), route_ref(c, r))),
            p.consumer
                .map(|x| (PluginPlace::Consumer(x), consumer_ref(c, x))),
        ];
        let set: Vec<(PluginPlace, Option<String>)> = scopes.into_iter().flatten().collect();
        let place = if set.len() == 1 {
            set.into_iter()
                .next()
                .map_or(PluginPlace::TopLevel, |(p, _)| p)
        } else {
            set.into_iter()
                .find(|(_, r)| r.is_none())
                .map_or(PluginPlace::TopLevel, |(p, _)| p)
        };
        places.push(place);
    }
    // Group plugin objects by where they go (one pass, not one per entity).
    let mut by_service: Vec<Vec<Value>> = vec![Vec::new(); c.services.len()];
    let mut by_route: Vec<Vec<Value>> = vec![Vec::new(); c.routes.len()];
    let mut by_consumer: Vec<Vec<Value>> = vec![Vec::new(); c.consumers.len()];
    let mut top_plugins: Vec<Value> = Vec::new();
    for (p, place) in c.plugins.iter().zip(&places) {
        let obj = plugin_obj(c, p, place);
        let slot = match place {
            PluginPlace::Service(i) => by_service.get_mut(*i),
            PluginPlace::Route(i) => by_route.get_mut(*i),
            PluginPlace::Consumer(i) => by_consumer.get_mut(*i),
            PluginPlace::TopLevel => None,
        };
        match slot {
            Some(list) => list.push(obj),
            None => top_plugins.push(obj),
        }
    }

    let route_obj_full = |ri: usize| -> Value {
        let mut o = route_obj(&c.routes[ri]);
        if let Some(plugins) = by_route.get(ri).filter(|l| !l.is_empty()) {
            o.insert("plugins".into(), Value::Array(plugins.clone()));
        }
        Value::Object(o)
    };

    let services: Vec<Value> = c
        .services
        .iter()
        .enumerate()
        .map(|(si, s)| {
            let mut o = service_obj(c, s);
            let routes: Vec<Value> = nested_routes[si]
                .iter()
                .map(|&ri| route_obj_full(ri))
                .collect();
            if !routes.is_empty() {
                o.insert("routes".into(), Value::Array(routes));
            }
            if let Some(plugins) = by_service.get(si).filter(|l| !l.is_empty()) {
                o.insert("plugins".into(), Value::Array(plugins.clone()));
            }
            Value::Object(o)
        })
        .collect();
    insert_list(&mut doc, "services", services);

    let routes: Vec<Value> = top_routes
        .iter()
        .map(|&ri| {
            let mut v = route_obj_full(ri);
            if let (Some(s), Value::Object(o)) = (c.routes[ri].service, &mut v) {
                if let Some(r) = service_ref(c, s) {
                    o.insert("service".into(), json!(r));
                }
            }
            v
        })
        .collect();
    insert_list(&mut doc, "routes", routes);

    let upstreams: Vec<Value> = c.upstreams.iter().map(upstream_obj).collect();
    insert_list(&mut doc, "upstreams", upstreams);

    let consumers: Vec<Value> = c
        .consumers
        .iter()
        .enumerate()
        .map(|(ci, x)| {
            let mut o = Map::new();
            opt(&mut o, "username", x.username.as_deref());
            opt(&mut o, "custom_id", x.custom_id.as_deref());
            meta(&mut o, &x.meta);
            for (collection, items) in &x.credentials {
                if !items.is_empty() {
                    o.insert(collection.clone(), Value::Array(items.clone()));
                }
            }
            if let Some(plugins) = by_consumer.get(ci).filter(|l| !l.is_empty()) {
                o.insert("plugins".into(), Value::Array(plugins.clone()));
            }
            Value::Object(o)
        })
        .collect();
    insert_list(&mut doc, "consumers", consumers);

    insert_list(&mut doc, "plugins", top_plugins);

    let certificates: Vec<Value> = c
        .certificates
        .iter()
        .map(|x| {
            let mut o = Map::new();
            o.insert("cert".into(), json!(x.cert));
            o.insert("key".into(), json!(x.key));
            opt(&mut o, "cert_alt", x.cert_alt.as_deref());
            opt(&mut o, "key_alt", x.key_alt.as_deref());
            meta(&mut o, &x.meta);
            if !x.snis.is_empty() {
                o.insert("snis".into(), json!(x.snis));
            }
            Value::Object(o)
        })
        .collect();
    insert_list(&mut doc, "certificates", certificates);

    let cas: Vec<Value> = c
        .ca_certificates
        .iter()
        .map(|x| {
            let mut o = Map::new();
            o.insert("cert".into(), json!(x.cert));
            opt(&mut o, "cert_digest", x.cert_digest.as_deref());
            meta(&mut o, &x.meta);
            Value::Object(o)
        })
        .collect();
    insert_list(&mut doc, "ca_certificates", cas);

    Value::Object(doc)
}

fn insert_list(doc: &mut Map<String, Value>, key: &str, items: Vec<Value>) {
    if !items.is_empty() {
        doc.insert(key.into(), Value::Array(items));
    }
}

fn opt(o: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    if let Some(v) = v {
        o.insert(key.into(), json!(v));
    }
}

fn meta(o: &mut Map<String, Value>, m: &Meta) {
    opt(o, "id", m.id.as_deref());
    if !m.tags.is_empty() {
        o.insert("tags".into(), json!(m.tags));
    }
}

fn enum_str<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn service_ref(c: &Config, i: usize) -> Option<String> {
    let s = c.services.get(i)?;
    s.name
        .as_deref()
        .or(s.meta.id.as_deref())
        .map(str::to_string)
}

fn route_ref(c: &Config, i: usize) -> Option<String> {
    let r = c.routes.get(i)?;
    r.name
        .as_deref()
        .or(r.meta.id.as_deref())
        .map(str::to_string)
}

fn consumer_ref(c: &Config, i: usize) -> Option<String> {
    let x = c.consumers.get(i)?;
    x.username
        .clone()
        .or_else(|| x.meta.id.as_deref().map(str::to_string))
}

fn service_obj(c: &Config, s: &Service) -> Map<String, Value> {
    let mut o = Map::new();
    opt(&mut o, "name", s.name.as_deref());
    meta(&mut o, &s.meta);
    o.insert("protocol".into(), enum_str(s.protocol));
    o.insert("host".into(), json!(s.host));
    o.insert("port".into(), json!(s.port));
    opt(&mut o, "path", s.path.as_deref());
    o.insert("retries".into(), json!(s.retries));
    o.insert("connect_timeout".into(), json!(s.connect_timeout_ms));
    o.insert("write_timeout".into(), json!(s.write_timeout_ms));
    o.insert("read_timeout".into(), json!(s.read_timeout_ms));
    o.insert("enabled".into(), json!(s.enabled));
    if let Some(v) = s.tls_verify {
        o.insert("tls_verify".into(), json!(v));
    }
    if let Some(v) = s.tls_verify_depth {
        o.insert("tls_verify_depth".into(), json!(v));
    }
    if !s.ca_certificates.is_empty() {
        let ids: Vec<Value> = s
            .ca_certificates
            .iter()
            .map(|&i| json!(c.ca_certificates.get(i).and_then(|x| x.meta.id.clone())))
            .collect();
        o.insert("ca_certificates".into(), Value::Array(ids));
    }
    if let Some(i) = s.client_certificate {
        let id = c.certificates.get(i).and_then(|x| x.meta.id.clone());
        o.insert("client_certificate".into(), json!({ "id": id }));
    }
    o
}

fn route_obj(r: &Route) -> Map<String, Value> {
    let mut o = Map::new();
    opt(&mut o, "name", r.name.as_deref());
    meta(&mut o, &r.meta);
    o.insert(
        "protocols".into(),
        Value::Array(r.protocols.iter().map(|p| enum_str(*p)).collect()),
    );
    fn list<T: serde::Serialize>(o: &mut Map<String, Value>, key: &str, list: &[T]) {
        if !list.is_empty() {
            o.insert(key.into(), json!(list));
        }
    }
    list(&mut o, "methods", &r.methods);
    list(&mut o, "hosts", &r.hosts);
    list(&mut o, "paths", &r.paths);
    list(&mut o, "snis", &r.snis);
    if !r.headers.is_empty() {
        o.insert("headers".into(), json!(r.headers));
    }
    o.insert("strip_path".into(), json!(r.strip_path));
    o.insert("preserve_host".into(), json!(r.preserve_host));
    o.insert("regex_priority".into(), json!(r.regex_priority));
    o.insert("path_handling".into(), enum_str(r.path_handling));
    o.insert(
        "https_redirect_status_code".into(),
        json!(r.https_redirect_status_code),
    );
    o.insert("request_buffering".into(), json!(r.request_buffering));
    o.insert("response_buffering".into(), json!(r.response_buffering));
    o
}

fn upstream_obj(u: &Upstream) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(u.name));
    meta(&mut o, &u.meta);
    o.insert("algorithm".into(), enum_str(u.algorithm));
    o.insert("hash_on".into(), enum_str(u.hash_on));
    o.insert("hash_fallback".into(), enum_str(u.hash_fallback));
    opt(&mut o, "hash_on_header", u.hash_on_header.as_deref());
    opt(
        &mut o,
        "hash_fallback_header",
        u.hash_fallback_header.as_deref(),
    );
    opt(&mut o, "hash_on_cookie", u.hash_on_cookie.as_deref());
    o.insert("hash_on_cookie_path".into(), json!(u.hash_on_cookie_path));
    o.insert("slots".into(), json!(u.slots));
    opt(&mut o, "host_header", u.host_header.as_deref());
    o.insert("healthchecks".into(), healthchecks_obj(&u.healthchecks));
    let targets: Vec<Value> = u
        .targets
        .iter()
        .map(|t| {
            let mut to = Map::new();
            to.insert("target".into(), json!(host_port_text(&t.host, t.port)));
            to.insert("weight".into(), json!(t.weight));
            meta(&mut to, &t.meta);
            Value::Object(to)
        })
        .collect();
    if !targets.is_empty() {
        o.insert("targets".into(), Value::Array(targets));
    }
    Value::Object(o)
}

pub(crate) fn healthchecks_obj(h: &Healthchecks) -> Value {
    let a = &h.active;
    let p = &h.passive;
    let mut active = json!({
        "type": enum_str(a.kind),
        "timeout": a.timeout_secs,
        "concurrency": a.concurrency,
        "http_path": a.http_path,
        "https_verify_certificate": a.https_verify_certificate,
        "healthy": {
            "interval": a.healthy.interval_secs,
            "http_statuses": a.healthy.http_statuses,
            "successes": a.healthy.successes,
        },
        "unhealthy": {
            "interval": a.unhealthy.interval_secs,
            "http_statuses": a.unhealthy.http_statuses,
            "tcp_failures": a.unhealthy.tcp_failures,
            "timeouts": a.unhealthy.timeouts,
            "http_failures": a.unhealthy.http_failures,
        },
    });
    if let Value::Object(o) = &mut active {
        if let Some(sni) = &a.https_sni {
            o.insert("https_sni".into(), json!(sni));
        }
        if !a.headers.is_empty() {
            o.insert("headers".into(), json!(a.headers));
        }
    }
    json!({
        "active": active,
        "passive": {
            "type": enum_str(p.kind),
            "healthy": {
                "http_statuses": p.healthy.http_statuses,
                "successes": p.healthy.successes,
            },
            "unhealthy": {
                "http_statuses": p.unhealthy.http_statuses,
                "tcp_failures": p.unhealthy.tcp_failures,
                "timeouts": p.unhealthy.timeouts,
                "http_failures": p.unhealthy.http_failures,
            },
        },
        "threshold": h.threshold,
    })
}

fn plugin_obj(c: &Config, p: &Plugin, place: &PluginPlace) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(p.name));
    opt(&mut o, "instance_name", p.instance_name.as_deref());
    meta(&mut o, &p.meta);
    o.insert("config".into(), p.config.clone());
    o.insert("enabled".into(), json!(p.enabled));
    o.insert(
        "protocols".into(),
        Value::Array(p.protocols.iter().map(|x| enum_str(*x)).collect()),
    );
    if let Some(s) = p.service {
        if !matches!(place, PluginPlace::Service(_)) {
            o.insert("service".into(), json!(service_ref(c, s)));
        }
    }
    if let Some(r) = p.route {
        if !matches!(place, PluginPlace::Route(_)) {
            o.insert("route".into(), json!(route_ref(c, r)));
        }
    }
    if let Some(x) = p.consumer {
        if !matches!(place, PluginPlace::Consumer(_)) {
            o.insert("consumer".into(), json!(consumer_ref(c, x)));
        }
    }
    Value::Object(o)
}

/// sha256 over the config serialized as JSON, first 32 hex chars. The
/// serialization is streamed into the hasher (no intermediate value) and is
/// canonical: struct fields come in declaration order, lists in config
/// order, and maps (`BTreeMap`, and `serde_json::Map`, which is sorted while
/// serde_json's `preserve_order` feature is off; a test checks it) in key
/// order. `Config` must hold no `HashMap`.
pub(crate) fn hash(c: &Config) -> String {
    struct Hasher(Sha256);
    impl std::io::Write for Hasher {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, Hasher(Sha256::new()));
    if let Err(e) = serde_json::to_writer(&mut w, c) {
        // Not reachable for `Config` (no non-string map keys); hash the
        // error rather than panic.
        let _ = std::io::Write::write_all(&mut w, e.to_string().as_bytes());
    }
    // Writes into the hasher cannot fail, so neither can the flush.
    let _ = std::io::Write::flush(&mut w);
    let digest = w.into_parts().0 .0.finalize();
    let mut s = hex::encode(digest);
    s.truncate(32);
    s
}

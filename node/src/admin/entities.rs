//! Read-only entity endpoints, rendered in Kong's Admin API shapes
//! (`{"data": [...], "next": null}` for collections).
//!
//! Entities declared without an `id` get a stable derived one (a UUID-shaped
//! hash of the entity kind and its name, or its position when unnamed), so
//! the same config always shows the same ids on every node.

use crate::snapshot::CompiledConfig;
use gateway_config::{Config, Meta};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const COLLECTIONS: &[&str] = &[
    "services",
    "routes",
    "upstreams",
    "consumers",
    "plugins",
    "targets",
];

pub fn is_collection(s: &str) -> bool {
    COLLECTIONS.contains(&s)
}

/// Derived, stable id of an entity without one.
pub fn entity_id(kind: &str, meta: &Meta, name: Option<&str>, index: usize) -> String {
    if let Some(id) = &meta.id {
        return id.to_string();
    }
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update(b":");
    match name {
        Some(n) => h.update(n.as_bytes()),
        None => h.update(format!("#{index}").as_bytes()),
    }
    let d = h.finalize();
    let x: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

fn service_id(c: &Config, i: usize) -> String {
    let s = &c.services[i];
    entity_id("service", &s.meta, s.name.as_deref(), i)
}
fn route_id(c: &Config, i: usize) -> String {
    let r = &c.routes[i];
    entity_id("route", &r.meta, r.name.as_deref(), i)
}
fn upstream_id(c: &Config, i: usize) -> String {
    let u = &c.upstreams[i];
    entity_id("upstream", &u.meta, Some(&u.name), i)
}
fn consumer_id(c: &Config, i: usize) -> String {
    let u = &c.consumers[i];
    entity_id(
        "consumer",
        &u.meta,
        u.username.as_deref().or(u.custom_id.as_deref()),
        i,
    )
}
fn plugin_id(c: &Config, i: usize) -> String {
    entity_id("plugin", &c.plugins[i].meta, None, i)
}
fn fk(id: Option<String>) -> Value {
    id.map_or(Value::Null, |id| json!({ "id": id }))
}

fn service(c: &Config, i: usize) -> Value {
    let s = &c.services[i];
    json!({
        "id": service_id(c, i),
        "name": s.name,
        "protocol": s.protocol.as_str(),
        "host": s.host,
        "port": s.port,
        "path": s.path,
        "retries": s.retries,
        "connect_timeout": s.connect_timeout_ms,
        "write_timeout": s.write_timeout_ms,
        "read_timeout": s.read_timeout_ms,
        "enabled": s.enabled,
        "tls_verify": s.tls_verify,
        "tags": s.meta.tags,
    })
}

fn route(c: &Config, i: usize) -> Value {
    let r = &c.routes[i];
    json!({
        "id": route_id(c, i),
        "name": r.name,
        "protocols": r.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "methods": r.methods,
        "hosts": r.hosts,
        "paths": r.paths,
        "headers": r.headers,
        "snis": r.snis,
        "strip_path": r.strip_path,
        "preserve_host": r.preserve_host,
        "regex_priority": r.regex_priority,
        "path_handling": r.path_handling,
        "https_redirect_status_code": r.https_redirect_status_code,
        "request_buffering": r.request_buffering,
        "response_buffering": r.response_buffering,
        "service": fk(r.service.map(|s| service_id(c, s))),
        "tags": r.meta.tags,
    })
}

fn upstream(c: &Config, i: usize) -> Value {
    let u = &c.upstreams[i];
    let healthchecks = u.healthchecks.to_declarative();
    json!({
        "id": upstream_id(c, i),
        "name": u.name,
        "algorithm": u.algorithm,
        "hash_on": u.hash_on,
        "hash_fallback": u.hash_fallback,
        "hash_on_header": u.hash_on_header,
        "hash_fallback_header": u.hash_fallback_header,
        "hash_on_cookie": u.hash_on_cookie,
        "hash_on_cookie_path": u.hash_on_cookie_path,
        "slots": u.slots,
        "host_header": u.host_header,
        "healthchecks": healthchecks,
        "tags": u.meta.tags,
    })
}

/// Give each target of a `/health` report the `id` and `upstream` that
/// `/targets` shows for it (the balancer knows only ids the config set),
/// matched by position and target.
fn with_target_ids(mut report: Value, targets: &[Value]) -> Value {
    if let Some(data) = report.get_mut("data").and_then(Value::as_array_mut) {
        for (entry, t) in data.iter_mut().zip(targets) {
            if entry.get("target") == t.get("target") {
                entry["id"] = t["id"].clone();
                entry["upstream"] = t["upstream"].clone();
            }
        }
    }
    report
}

fn targets(c: &Config, i: usize) -> Vec<Value> {
    let u = &c.upstreams[i];
    let uid = upstream_id(c, i);
    u.targets
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            let target = if t.host.contains(':') {
                format!("[{}]:{}", t.host, t.port)
            } else {
                format!("{}:{}", t.host, t.port)
            };
            json!({
                "id": entity_id("target", &t.meta, Some(&format!("{}/{target}", u.name)), ti),
                "target": target,
                "weight": t.weight,
                "upstream": { "id": uid },
                "tags": t.meta.tags,
            })
        })
        .collect()
}

fn consumer(c: &Config, i: usize) -> Value {
    let u = &c.consumers[i];
    json!({
        "id": consumer_id(c, i),
        "username": u.username,
        "custom_id": u.custom_id,
        "tags": u.meta.tags,
    })
}

fn plugin(c: &Config, i: usize) -> Value {
    let p = &c.plugins[i];
    json!({
        "id": plugin_id(c, i),
        "name": p.name,
        "instance_name": p.instance_name,
        "config": p.config,
        "enabled": p.enabled,
        "protocols": p.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "service": fk(p.service.map(|s| service_id(c, s))),
        "route": fk(p.route.map(|r| route_id(c, r))),
        "consumer": fk(p.consumer.map(|r| consumer_id(c, r))),
        "tags": p.meta.tags,
    })
}

/// A collection page, `{"data": [...], "next": null}`, serialized one entity
/// at a time: a listing of 10,000 routes never holds all their JSON values
/// at once (it did, about 100 MB of them), only the text.
fn page(data: impl IntoIterator<Item = Value>) -> String {
    let mut out = String::from("{\"data\":[");
    for (n, v) in data.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&v.to_string());
    }
    out.push_str("],\"next\":null}");
    out
}

/// One entity's JSON text.
fn one(v: Value) -> String {
    v.to_string()
}

/// Find an entity index by id or name.
fn find(
    n: usize,
    key: &str,
    id: impl Fn(usize) -> String,
    name: impl Fn(usize) -> Option<String>,
) -> Option<usize> {
    (0..n).find(|&i| id(i) == key || name(i).as_deref() == Some(key))
}

/// Answer `GET /{kind}/{rest...}`; `None` = 404.
/// The answer is JSON text.
pub fn get(snap: &CompiledConfig, c: &Config, kind: &str, rest: &[&str]) -> Option<String> {
    match (kind, rest) {
        ("services", []) => Some(page((0..c.services.len()).map(|i| service(c, i)))),
        ("services", [key, tail @ ..]) => {
            let i = find(
                c.services.len(),
                key,
                |i| service_id(c, i),
                |i| c.services[i].name.as_deref().map(str::to_string),
            )?;
            match tail {
                [] => Some(one(service(c, i))),
                ["routes"] => Some(page(
                    (0..c.routes.len())
                        .filter(|&r| c.routes[r].service == Some(i))
                        .map(|r| route(c, r)),
                )),
                ["plugins"] => Some(page(
                    (0..c.plugins.len())
                        .filter(|&p| c.plugins[p].service == Some(i))
                        .map(|p| plugin(c, p)),
                )),
                _ => None,
            }
        }
        ("routes", []) => Some(page((0..c.routes.len()).map(|i| route(c, i)))),
        ("routes", [key, tail @ ..]) => {
            let i = find(
                c.routes.len(),
                key,
                |i| route_id(c, i),
                |i| c.routes[i].name.as_deref().map(str::to_string),
            )?;
            match tail {
                [] => Some(one(route(c, i))),
                ["plugins"] => Some(page(
                    (0..c.plugins.len())
                        .filter(|&p| c.plugins[p].route == Some(i))
                        .map(|p| plugin(c, p)),
                )),
                ["service"] => c.routes[i].service.map(|s| one(service(c, s))),
                _ => None,
            }
        }
        ("upstreams", []) => Some(page((0..c.upstreams.len()).map(|i| upstream(c, i)))),
        ("upstreams", [key, tail @ ..]) => {
            let i = find(
                c.upstreams.len(),
                key,
                |i| upstream_id(c, i),
                |i| Some(c.upstreams[i].name.clone()),
            )?;
            match tail {
                [] => Some(one(upstream(c, i))),
                ["targets"] => Some(page(targets(c, i))),
                ["health"] => snap
                    .balancers
                    .upstream(&c.upstreams[i].name)
                    .map(|b| one(with_target_ids(b.health_report(), &targets(c, i)))),
                _ => None,
            }
        }
        ("targets", []) => Some(page((0..c.upstreams.len()).flat_map(|i| targets(c, i)))),
        ("consumers", []) => Some(page((0..c.consumers.len()).map(|i| consumer(c, i)))),
        ("consumers", [key]) => {
            let i = find(
                c.consumers.len(),
                key,
                |i| consumer_id(c, i),
                |i| {
                    c.consumers[i]
                        .username
                        .clone()
                        .or_else(|| c.consumers[i].custom_id.clone())
                },
            )?;
            Some(one(consumer(c, i)))
        }
        ("plugins", []) => Some(page((0..c.plugins.len()).map(|i| plugin(c, i)))),
        ("plugins", [key]) => {
            let i = find(
                c.plugins.len(),
                key,
                |i| plugin_id(c, i),
                |i| c.plugins[i].instance_name.clone(),
            )?;
            Some(one(plugin(c, i)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_written_entity_by_entity_is_kongs_page_shape() {
        let a = json!({"name": "a", "paths": ["/a"], "n": 1});
        let b = json!({"name": "b\"quoted\"", "tags": null});
        let text = page([a.clone(), b.clone()]);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, json!({ "data": [a, b], "next": null }));
        let empty: Value = serde_json::from_str(&page(Vec::new())).unwrap();
        assert_eq!(empty, json!({ "data": [], "next": null }));
    }

    #[test]
    fn derived_ids_are_stable_and_uuid_shaped() {
        let m = Meta::default();
        let a = entity_id("service", &m, Some("foo"), 0);
        assert_eq!(
            a,
            entity_id("service", &m, Some("foo"), 7),
            "name wins over position"
        );
        assert_ne!(a, entity_id("route", &m, Some("foo"), 0));
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        let given = Meta {
            id: Some("abc".into()),
            tags: Default::default(),
        };
        assert_eq!(entity_id("service", &given, Some("foo"), 0), "abc");
    }
}

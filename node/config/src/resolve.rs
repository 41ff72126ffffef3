//! Cross-entity checks and assembly: uniqueness of names and ids (across
//! all files), reference resolution to indices, plugin scope duplicates,
//! duplicate targets, and the final `Config` in its documented order.

use crate::decode::FORMAT_VERSIONS;
use crate::diag::{At, Diag};
use crate::model::*;
use crate::raw::{Link, Origin, Raw, Ref};
use std::collections::{BTreeMap, HashMap};

/// A plugin's name and scope (service, route, consumer).
type ScopeKey = (String, Option<usize>, Option<usize>, Option<usize>);

/// Keys of one entity type: id -> index and name -> index.
#[derive(Default)]
struct Index {
    ids: HashMap<String, usize>,
    names: HashMap<String, usize>,
    /// Names compare case-insensitively (upstreams: they are hostnames).
    fold_case: bool,
}

impl Index {
    fn lookup(&self, key: &str) -> Option<usize> {
        self.ids.get(key).copied().or_else(|| {
            if self.fold_case {
                self.names.get(&key.to_ascii_lowercase()).copied()
            } else {
                self.names.get(key).copied()
            }
        })
    }
}

struct Resolver<'d> {
    d: &'d mut Diag,
}

impl Resolver<'_> {
    /// Report every value seen twice, at the second place, naming the first.
    fn unique<'a>(&mut self, what: &str, items: impl IntoIterator<Item = (String, &'a At)>) {
        let mut seen: HashMap<String, &At> = HashMap::new();
        for (key, at) in items {
            match seen.get(&key) {
                Some(first) => {
                    let loc = self.d.loc(first);
                    self.d.err(
                        at,
                        format!("duplicate {what} '{key}' (first defined at {loc})"),
                    );
                }
                None => {
                    seen.insert(key, at);
                }
            }
        }
    }

    /// Uniqueness of `id` and `name`, and an index for references. Each
    /// entry is `(index, (id, where), (name, where))`.
    fn index<'a>(
        &mut self,
        what: &str,
        entries: impl Iterator<Item = (usize, Option<(&'a str, &'a At)>, Option<(&'a str, &'a At)>)>,
        fold_case: bool,
    ) -> Index {
        let mut ix = Index {
            fold_case,
            ..Index::default()
        };
        let mut ids = Vec::new();
        let mut names = Vec::new();
        for (i, id, name) in entries {
            if let Some((id, at)) = id {
                ids.push((id.to_string(), at));
                ix.ids.entry(id.to_string()).or_insert(i);
            }
            if let Some((name, at)) = name {
                let key = if fold_case {
                    name.to_ascii_lowercase()
                } else {
                    name.to_string()
                };
                names.push((key.clone(), at));
                ix.names.entry(key).or_insert(i);
            }
        }
        self.unique(&format!("{what} id"), ids);
        self.unique(&format!("{what} name"), names);
        ix
    }

    fn find(&mut self, ix: &Index, what: &str, r: &Ref, how: &str) -> Option<usize> {
        let found = ix.lookup(&r.key);
        if found.is_none() {
            self.d.err(
                &r.at,
                format!("unknown {what} '{}': no {what} has this {how}", r.key),
            );
        }
        found
    }
}

/// Check and assemble. Errors go to `d`; the returned config is only
/// meaningful when `d` holds no errors.
pub(crate) fn resolve(d: &mut Diag, raw: Raw) -> Config {
    let mut r = Resolver { d };

    let services_ix = r.index(
        "service",
        raw.services.iter().enumerate().map(|(i, s)| {
            (
                i,
                id_of(&s.service.meta, &s.origin),
                named(s.service.name.as_deref(), &s.origin),
            )
        }),
        false,
    );
    let upstreams_ix = r.index(
        "upstream",
        raw.upstreams.iter().enumerate().map(|(i, u)| {
            let name = (!u.upstream.name.is_empty()).then_some(u.upstream.name.as_str());
            (
                i,
                id_of(&u.upstream.meta, &u.origin),
                named(name, &u.origin),
            )
        }),
        true,
    );
    let consumers_ix = r.index(
        "consumer",
        raw.consumers.iter().enumerate().map(|(i, c)| {
            let name = c.consumer.username.as_deref().zip(c.username_at.as_ref());
            (i, id_of(&c.consumer.meta, &c.origin), name)
        }),
        false,
    );
    r.unique(
        "consumer custom_id",
        raw.consumers
            .iter()
            .filter_map(|c| Some((c.consumer.custom_id.clone()?, c.custom_id_at.as_ref()?))),
    );
    let certs_ix = r.index(
        "certificate",
        raw.certificates
            .iter()
            .enumerate()
            .map(|(i, c)| (i, id_of(&c.certificate.meta, &c.origin), None)),
        false,
    );
    let cas_ix = r.index(
        "CA certificate",
        raw.ca_certificates
            .iter()
            .enumerate()
            .map(|(i, c)| (i, id_of(&c.ca.meta, &c.origin), None)),
        false,
    );
    let mut seen_cas: HashMap<&str, &At> = HashMap::new();
    for c in raw.ca_certificates.iter().filter(|c| !c.ca.cert.is_empty()) {
        let at = c.origin.name_at.as_ref().unwrap_or(&c.origin.at);
        if let Some(first) = seen_cas.get(c.ca.cert.as_str()) {
            let loc = r.d.loc(first);
            r.d.err(
                at,
                format!("duplicate CA certificate (the same cert is at {loc})"),
            );
        } else {
            seen_cas.insert(&c.ca.cert, at);
        }
    }

    // Routes: nested ones in service order, then top-level ones.
    let mut order: Vec<usize> = (0..raw.routes.len()).collect();
    order.sort_by_key(|&i| match raw.routes[i].service {
        Link::Nested(s) => (0, s),
        _ => (1, 0),
    });
    let mut route_final = vec![0usize; raw.routes.len()];
    for (fin, &rawi) in order.iter().enumerate() {
        route_final[rawi] = fin;
    }
    let routes_ix = r.index(
        "route",
        order.iter().enumerate().map(|(fin, &i)| {
            let rt = &raw.routes[i];
            (
                fin,
                id_of(&rt.route.meta, &rt.origin),
                named(rt.route.name.as_deref(), &rt.origin),
            )
        }),
        false,
    );
    let mut routes: Vec<Option<Route>> = vec![None; raw.routes.len()];
    let mut raw_routes: Vec<Option<crate::raw::RawRoute>> =
        raw.routes.into_iter().map(Some).collect();
    for &i in &order {
        let Some(rr) = raw_routes[i].take() else {
            continue;
        };
        let mut route = rr.route;
        route.service = match &rr.service {
            Link::Nested(s) => Some(*s),
            Link::Ref(rf) => r.find(&services_ix, "service", rf, "name or id"),
            Link::None => None,
        };
        routes[route_final[i]] = Some(route);
    }
    // Exact capacity: collecting from `flatten` grows by doubling, and
    // this vector is kept while the config is served (10,000 routes left
    // 1.5 MB spare).
    let mut kept: Vec<Route> = Vec::with_capacity(routes.iter().flatten().count());
    kept.extend(routes.into_iter().flatten());
    let routes = kept;

    // Services: TLS references and the upstream their host names.
    let mut services = Vec::with_capacity(raw.services.len());
    for rs in raw.services {
        let mut s = rs.service;
        if let Some(rf) = &rs.client_certificate {
            s.client_certificate = r.find(&certs_ix, "certificate", rf, "id");
        }
        for rf in &rs.ca_certificates {
            if let Some(i) = r.find(&cas_ix, "CA certificate", rf, "id") {
                s.ca_certificates.push(i);
            }
        }
        s.ca_certificates.shrink_to_fit();
        s.upstream = upstreams_ix
            .names
            .get(s.host.to_ascii_lowercase().as_str())
            .copied();
        services.push(s);
    }

    // Upstreams and their targets (nested first, then top-level).
    let mut upstreams: Vec<Upstream> = raw.upstreams.into_iter().map(|u| u.upstream).collect();
    r.unique(
        "target id",
        raw.targets.iter().filter_map(|t| {
            Some((
                t.target.meta.id.as_deref()?.to_string(),
                t.origin.id_at.as_ref()?,
            ))
        }),
    );
    let mut target_slots: Vec<(usize, u8, usize)> = Vec::new(); // (upstream, nested?, raw)
    for (i, t) in raw.targets.iter().enumerate() {
        let u = match &t.upstream {
            Link::Nested(u) => Some((*u, 0u8)),
            Link::Ref(rf) => r
                .find(&upstreams_ix, "upstream", rf, "name or id")
                .map(|u| (u, 1u8)),
            Link::None => None,
        };
        if let Some((u, k)) = u {
            target_slots.push((u, k, i));
        }
    }
    target_slots.sort_by_key(|&(u, k, _)| (u, k));
    let mut seen_targets: HashMap<(usize, String, u16), At> = HashMap::new();
    for (u, _, i) in target_slots {
        let t = &raw.targets[i];
        if !t.target.host.is_empty() {
            let key = (u, t.target.host.clone(), t.target.port);
            let at = t.origin.name_at.as_ref().unwrap_or(&t.origin.at);
            if let Some(first) = seen_targets.get(&key) {
                let loc = r.d.loc(first);
                let hp = host_port_text(&t.target.host, t.target.port);
                let name = upstreams.get(u).map_or("", |x| x.name.as_str()).to_string();
                r.d.err(
                    at,
                    format!(
                        "duplicate target '{hp}' in upstream '{name}' (first defined at {loc})"
                    ),
                );
                continue;
            }
            seen_targets.insert(key, at.clone());
        }
        if let Some(up) = upstreams.get_mut(u) {
            up.targets.push(t.target.clone());
        }
    }

    // Consumers and credentials.
    let mut consumers: Vec<Consumer> = raw.consumers.into_iter().map(|c| c.consumer).collect();
    let mut cred_ids: BTreeMap<&str, Vec<(String, &At)>> = BTreeMap::new();
    let mut cred_unique: BTreeMap<(&str, &str), Vec<(String, &At)>> = BTreeMap::new();
    let mut cred_slots: Vec<(usize, u8, usize)> = Vec::new();
    for (i, c) in raw.credentials.iter().enumerate() {
        if let Some(at) = &c.origin.id_at {
            if let Some(id) = c.value.get("id").and_then(|v| v.as_str()) {
                cred_ids
                    .entry(c.collection)
                    .or_default()
                    .push((id.to_string(), at));
            }
        }
        if let Some((field, value, at)) = &c.unique {
            cred_unique
                .entry((c.collection, field))
                .or_default()
                .push((value.clone(), at));
        }
        let slot = match &c.consumer {
            Link::Nested(ci) => Some((*ci, 0u8)),
            Link::Ref(rf) => r
                .find(&consumers_ix, "consumer", rf, "username or id")
                .map(|ci| (ci, 1u8)),
            Link::None => None,
        };
        if let Some((ci, k)) = slot {
            cred_slots.push((ci, k, i));
        }
    }
    for (collection, ids) in cred_ids {
        r.unique(&format!("{collection} id"), ids);
    }
    for ((collection, field), values) in cred_unique {
        // Values may be secrets: report the place, never the value.
        let mut seen: HashMap<String, &At> = HashMap::new();
        for (v, at) in values {
            if let Some(first) = seen.get(&v) {
                let loc = r.d.loc(first);
                r.d.err(
                    at,
                    format!("duplicate {collection} {field} (the same value is at {loc})"),
                );
            } else {
                seen.insert(v, at);
            }
        }
    }
    cred_slots.sort_by_key(|&(c, k, _)| (c, k));
    for (ci, _, i) in cred_slots {
        let c = &raw.credentials[i];
        if let Some(consumer) = consumers.get_mut(ci) {
            consumer
                .credentials
                .entry(c.collection.to_string())
                .or_default()
                .push(c.value.clone());
        }
    }

    // Certificates and SNIs.
    let mut certificates: Vec<Certificate> = raw
        .certificates
        .into_iter()
        .map(|c| c.certificate)
        .collect();
    r.unique(
        "SNI name",
        raw.snis.iter().map(|s| {
            (
                s.name.clone(),
                s.origin.name_at.as_ref().unwrap_or(&s.origin.at),
            )
        }),
    );
    let mut sni_slots: Vec<(usize, u8, usize)> = Vec::new();
    for (i, s) in raw.snis.iter().enumerate() {
        let slot = match &s.certificate {
            Link::Nested(c) => Some((*c, 0u8)),
            Link::Ref(rf) => r.find(&certs_ix, "certificate", rf, "id").map(|c| (c, 1u8)),
            Link::None => None,
        };
        if let Some((c, k)) = slot {
            sni_slots.push((c, k, i));
        }
    }
    sni_slots.sort_by_key(|&(c, k, _)| (c, k));
    for (c, _, i) in sni_slots {
        if let Some(cert) = certificates.get_mut(c) {
            cert.snis.push(raw.snis[i].name.clone());
        }
    }
    let ca_certificates: Vec<CaCertificate> =
        raw.ca_certificates.into_iter().map(|c| c.ca).collect();

    // Plugins: resolve scopes, reject duplicates per scope, canonical order.
    r.unique(
        "plugin id",
        raw.plugins.iter().filter_map(|p| {
            Some((
                p.plugin.meta.id.as_deref()?.to_string(),
                p.origin.id_at.as_ref()?,
            ))
        }),
    );
    r.unique(
        "plugin instance_name",
        raw.plugins.iter().filter_map(|p| {
            Some((
                p.plugin.instance_name.clone()?,
                p.origin.name_at.as_ref().unwrap_or(&p.origin.at),
            ))
        }),
    );
    let mut plugins: Vec<(Plugin, At)> = Vec::new();
    let mut scopes: HashMap<ScopeKey, At> = HashMap::new();
    for rp in raw.plugins {
        let mut p = rp.plugin;
        p.service = match &rp.service {
            Link::Nested(s) => Some(*s),
            Link::Ref(rf) => r.find(&services_ix, "service", rf, "name or id"),
            Link::None => None,
        };
        p.route = match &rp.route {
            Link::Nested(raw_idx) => route_final.get(*raw_idx).copied(),
            Link::Ref(rf) => r.find(&routes_ix, "route", rf, "name or id"),
            Link::None => None,
        };
        p.consumer = match &rp.consumer {
            Link::Nested(c) => Some(*c),
            Link::Ref(rf) => r.find(&consumers_ix, "consumer", rf, "username or id"),
            Link::None => None,
        };
        let at = rp.origin.name_at.clone().unwrap_or(rp.origin.at.clone());
        if !p.name.is_empty() {
            let key = (p.name.clone(), p.service, p.route, p.consumer);
            if let Some(first) = scopes.get(&key) {
                let loc = r.d.loc(first);
                r.d.err(
                    &at,
                    format!(
                        "plugin '{}' is configured twice for the same service, route and consumer (first at {loc})",
                        p.name
                    ),
                );
            } else {
                scopes.insert(key, at.clone());
            }
        }
        plugins.push((p, at));
    }
    let mut plugins: Vec<Plugin> = plugins.into_iter().map(|(p, _)| p).collect();
    plugins.sort_by(|a, b| plugin_key(a).cmp(&plugin_key(b)));

    Config {
        format_version: FORMAT_VERSIONS[0].to_string(),
        services,
        routes,
        upstreams,
        consumers,
        plugins,
        certificates,
        ca_certificates,
    }
}

fn id_of<'a>(meta: &'a Meta, origin: &'a Origin) -> Option<(&'a str, &'a At)> {
    meta.id.as_deref().zip(origin.id_at.as_ref())
}

fn named<'a>(name: Option<&'a str>, origin: &'a Origin) -> Option<(&'a str, &'a At)> {
    name.map(|n| (n, origin.name_at.as_ref().unwrap_or(&origin.at)))
}

/// Canonical plugin order: by scope (global first), then name.
fn plugin_key(
    p: &Plugin,
) -> (
    Option<usize>,
    Option<usize>,
    Option<usize>,
    &str,
    Option<&str>,
) {
    (
        p.service,
        p.route,
        p.consumer,
        p.name.as_str(),
        p.instance_name.as_deref(),
    )
}

/// `host:port`, bracketing IPv6 addresses.
pub(crate) fn host_port_text(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

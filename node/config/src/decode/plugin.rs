//! Plugins: scope (nesting or references), fields, and the `config` check
//! through the node's `PluginCatalog`. An unknown plugin is an error, never
//! skipped: dropping an auth plugin would silently open a route.

use super::Dec;
use crate::diag::{join_key, At};
use crate::fields::Field;
use crate::model::{Plugin, Protocol};
use crate::raw::{Link, RawPlugin};
use crate::yaml::{Node, Value};

/// Where a plugin entry was written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Parent {
    TopLevel,
    Service(usize),
    Route(usize),
    Consumer(usize),
}

/// Kong's default plugin protocols.
pub(crate) const DEFAULT_PROTOCOLS: [Protocol; 4] = [
    Protocol::Grpc,
    Protocol::Grpcs,
    Protocol::Http,
    Protocol::Https,
];

impl Dec<'_> {
    pub(super) fn plugin(&mut self, f: Field<'_>, parent: Parent) {
        let Some(mut o) = f.obj(&mut self.d) else {
            return;
        };
        let (meta, id_at) = self.meta(&mut o);
        let nested =
            |want: fn(Parent) -> Option<usize>| want(parent).map_or(Link::None, Link::Nested);
        let service = self.link(
            &mut o,
            "service",
            nested(|p| match p {
                Parent::Service(i) => Some(i),
                _ => None,
            }),
            true,
        );
        let route = self.link(
            &mut o,
            "route",
            nested(|p| match p {
                Parent::Route(i) => Some(i),
                _ => None,
            }),
            true,
        );
        let consumer = self.link(
            &mut o,
            "consumer",
            nested(|p| match p {
                Parent::Consumer(i) => Some(i),
                _ => None,
            }),
            true,
        );
        let name_f = o.require(&mut self.d, "name");
        let name = name_f.as_ref().and_then(|f| f.nonempty_str(&mut self.d));
        let (instance_name, _) = self.utf8_name(&mut o, "instance_name");
        let enabled = o
            .get("enabled")
            .and_then(|f| f.bool(&mut self.d))
            .unwrap_or(true);
        let protocols = match o.get("protocols") {
            Some(f) => self
                .protocols(&f)
                .unwrap_or_else(|| DEFAULT_PROTOCOLS.to_vec()),
            None => DEFAULT_PROTOCOLS.to_vec(),
        };
        o.unsupported(&mut self.d, &["consumer_group", "ordering"]);

        let config_f = o.get("config");
        let config_json = match &config_f {
            Some(cf) if matches!(cf.node.value, Value::Map(_)) => cf.to_json(&mut self.d),
            Some(cf) => {
                self.d.err(
                    &cf.at(),
                    format!("expected mapping, found {}", cf.node.describe()),
                );
                None
            }
            None => Some(serde_json::Value::Object(serde_json::Map::new())),
        };
        let mut config = serde_json::Value::Object(serde_json::Map::new());
        if let (Some(name), Some(name_f), Some(json)) = (&name, &name_f, config_json) {
            match self.catalog.check(name, &json) {
                None => self.d.err(
                    &name_f.at(),
                    format!("plugin '{name}' is not supported by this version"),
                ),
                Some(Ok(v)) => config = v,
                Some(Err(errors)) => {
                    let base = join_key(o.path(), "config");
                    for (sub, msg) in errors {
                        let at = match &config_f {
                            Some(cf) => locate(cf, &sub),
                            None => At {
                                path: base.clone(),
                                ..o.at()
                            },
                        };
                        let at = At {
                            path: sub_path(&base, &sub),
                            ..at
                        };
                        self.d.err(&at, msg);
                    }
                }
            }
        }

        let origin = Self::origin(&o, name_f.as_ref().map(Field::at), id_at);
        o.finish(&mut self.d);
        self.raw.plugins.push(RawPlugin {
            plugin: Plugin {
                meta,
                name: name.unwrap_or_default(),
                instance_name,
                config,
                enabled,
                protocols: crate::model::Protocols::from_slice(&protocols),
                service: None,
                route: None,
                consumer: None,
            },
            origin,
            service,
            route,
            consumer,
        });
    }
}

/// `base.sub` for `minute`, `base.a[0].b` for `a[0].b`, `base[1]` for `[1]`.
fn sub_path(base: &str, sub: &str) -> String {
    if sub.is_empty() {
        base.to_string()
    } else if sub.starts_with('[') {
        format!("{base}{sub}")
    } else {
        format!("{base}.{sub}")
    }
}

/// The position of `sub` (e.g. `limits[0].minute`) inside the config node:
/// the deepest node that exists along the path.
fn locate(config: &Field<'_>, sub: &str) -> At {
    let mut node: &Node = config.node;
    for seg in segments(sub) {
        let next = match (&node.value, seg) {
            (Value::Map(m), Seg::Key(k)) => m.iter().find(|(key, _)| key.text == k).map(|(_, v)| v),
            (Value::Seq(items), Seg::Index(i)) => items.get(i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    At {
        file: config.file,
        pos: node.pos,
        path: config.path.clone(),
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(sub: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in sub.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            if let Ok(i) = r[..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = &r[end + 1..];
        }
    }
    out
}

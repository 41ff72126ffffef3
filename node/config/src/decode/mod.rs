//! Entity decoding: one file's tree -> entries in `Raw`, every problem
//! reported with its location. One submodule per entity family; this module
//! holds the document level (`_format_version`, entity lists) and helpers
//! shared by all entities (metadata, references, protocol lists).

mod certificate;
mod consumer;
mod plugin;
mod route;
mod service;
mod upstream;

use crate::check;
use crate::diag::{At, Diag};
use crate::fields::{Field, Obj};
use crate::model::{Meta, Protocol};
use crate::raw::{Link, Origin, Raw, Ref};
use crate::yaml::Value;
use crate::PluginCatalog;

/// Format versions accepted in `_format_version`.
pub(crate) const FORMAT_VERSIONS: &[&str] = &["3.0", "2.1"];

/// Top-level keys that are metadata, not entities (ignored).
const METADATA_KEYS: &[&str] = &[
    "_format_version",
    "_comment",
    "_transform",
    "_workspace",
    "_info",
    "_konnect",
];

/// Entity lists this version reads.
const ENTITY_KEYS: &[&str] = &[
    "services",
    "routes",
    "upstreams",
    "targets",
    "consumers",
    "plugins",
    "certificates",
    "ca_certificates",
    "snis",
    "keyauth_credentials",
    "basicauth_credentials",
    "jwt_secrets",
    "acls",
    "hmacauth_credentials",
];

/// Kong entity types (core and bundled plugins) this version does not read.
pub(crate) const UNSUPPORTED_ENTITIES: &[&str] = &[
    "vaults",
    "keys",
    "key_sets",
    "consumer_groups",
    "consumer_group_consumers",
    "consumer_group_plugins",
    "filter_chains",
    "partials",
    "custom_plugins",
    "parameters",
    "workspaces",
    "licenses",
    "oauth2_credentials",
    "oauth2_authorization_codes",
    "oauth2_tokens",
    "mtls_auth_credentials",
    "degraphql_routes",
    "graphql_ratelimiting_advanced_cost_decoration",
    "jwt_signer_jwks",
    "session_metadatas",
    "sessions",
    "ratelimiting_metrics",
    "response_ratelimiting_metrics",
    "acme_storage",
];

/// `v` without spare capacity. Decoded lists are built by pushing and
/// then kept for as long as their config is served.
pub(crate) fn exact<T>(mut v: Vec<T>) -> Vec<T> {
    v.shrink_to_fit();
    v
}

/// Decoded strings as [`CompactString`]s (inline up to 24 bytes) in a
/// boxed slice (exact size).
pub(crate) fn compact(v: Vec<String>) -> Box<[crate::model::CompactString]> {
    v.into_iter().map(Into::into).collect()
}

/// The decoder: collects entities into `raw` and errors into `d`.
pub(crate) struct Dec<'a> {
    pub d: Diag,
    pub catalog: &'a dyn PluginCatalog,
    pub raw: Raw,
    /// The current file uses `_format_version: "2.1"`: regex paths written
    /// without the `~` prefix are migrated as Kong 3 does.
    pub legacy_paths: bool,
}

impl<'a> Dec<'a> {
    pub fn new(d: Diag, catalog: &'a dyn PluginCatalog) -> Dec<'a> {
        Dec {
            d,
            catalog,
            raw: Raw::default(),
            legacy_paths: false,
        }
    }

    /// Decode one file's document. Returns the `_format_version` written
    /// (with its location) when it is valid.
    pub fn document(&mut self, root: Field<'_>) -> Option<(String, At)> {
        if !matches!(root.node.value, Value::Map(_)) {
            self.d.err(
                &root.at(),
                format!(
                    "expected a mapping at the top level, found {}",
                    root.node.describe()
                ),
            );
            return None;
        }
        let entries = root.entries(&mut self.d)?;
        let version = self.format_version(&root);
        self.legacy_paths = version.as_ref().is_some_and(|(v, _)| v == "2.1");
        for (key, f) in entries {
            let name = key.text.as_str();
            if METADATA_KEYS.contains(&name) {
                continue;
            }
            let key_at = At {
                file: f.file,
                pos: key.pos,
                path: f.path.clone(),
            };
            if UNSUPPORTED_ENTITIES.contains(&name) {
                self.d.err(
                    &key_at,
                    format!("entity type '{name}' is not supported by this version"),
                );
                continue;
            }
            if !ENTITY_KEYS.contains(&name) {
                let mut known: Vec<&str> = ENTITY_KEYS.to_vec();
                known.extend_from_slice(METADATA_KEYS);
                let msg = match crate::fields::suggest(name, &known) {
                    Some(s) => format!("unknown entity type '{name}' (did you mean '{s}'?)"),
                    None => format!("unknown entity type '{name}'"),
                };
                self.d.err(&key_at, msg);
                continue;
            }
            if f.is_null() {
                continue;
            }
            let Some(items) = f.seq(&mut self.d) else {
                continue;
            };
            for item in items {
                match name {
                    "services" => self.service(item),
                    "routes" => self.route(item, Link::None),
                    "upstreams" => self.upstream(item),
                    "targets" => self.target(item, Link::None),
                    "consumers" => self.consumer(item),
                    "plugins" => self.plugin(item, plugin::Parent::TopLevel),
                    "certificates" => self.certificate(item),
                    "ca_certificates" => self.ca_certificate(item),
                    "snis" => self.sni(item, Link::None),
                    collection => {
                        if let Some(spec) = consumer::credential_spec(collection) {
                            self.credential(item, spec, Link::None);
                        }
                    }
                }
            }
        }
        version
    }

    fn format_version(&mut self, root: &Field<'_>) -> Option<(String, At)> {
        let Some(f) = root
            .node
            .get("_format_version")
            .map(|node| Field {
                file: root.file,
                node,
                path: "_format_version".to_string(),
            })
            .filter(|f| !f.is_null())
        else {
            self.d
                .err(&root.at(), "missing required field '_format_version'");
            return None;
        };
        if let Value::Float(x) = f.node.value {
            self.d.err(
                &f.at(),
                format!("expected string, found number {x} (write it quoted: \"{x:.1}\")"),
            );
            return None;
        }
        let v = f.str(&mut self.d)?;
        if !FORMAT_VERSIONS.contains(&v.as_str()) {
            self.d.err(
                &f.at(),
                format!("unsupported _format_version '{v}': expected '3.0' or '2.1'"),
            );
            return None;
        }
        Some((v, f.at()))
    }

    /// `id`, `tags` and the timestamps every entity may carry.
    fn meta(&mut self, o: &mut Obj<'_>) -> (Meta, Option<At>) {
        let mut meta = Meta::default();
        let mut tags: Vec<String> = Vec::new();
        let mut id_at = None;
        if let Some(f) = o.get("id") {
            if let Some(s) = f.str(&mut self.d) {
                match check::uuid(&s) {
                    Ok(()) => {
                        meta.id = Some(s.into());
                        id_at = Some(f.at());
                    }
                    Err(e) => self.d.err(&f.at(), e),
                }
            }
        }
        if let Some(f) = o.get("tags") {
            if let Some(items) = f.str_list(&mut self.d) {
                for (t, tf) in items {
                    match check::tag(&t) {
                        Ok(()) if tags.contains(&t) => {}
                        Ok(()) => tags.push(t),
                        Err(e) => self.d.err(&tf.at(), e),
                    }
                }
            }
        }
        o.ignore(&["created_at", "updated_at"]);
        meta.tags = tags.into();
        (meta, id_at)
    }

    /// An optional `name` validated as Kong's `utf8_name`.
    fn utf8_name(&mut self, o: &mut Obj<'_>, field: &'static str) -> (Option<String>, Option<At>) {
        let Some(f) = o.get(field) else {
            return (None, None);
        };
        let Some(s) = f.str(&mut self.d) else {
            return (None, None);
        };
        match check::utf8_name(&s) {
            Ok(()) => (Some(s), Some(f.at())),
            Err(e) => {
                self.d.err(&f.at(), e);
                (None, None)
            }
        }
    }

    fn origin(o: &Obj<'_>, name_at: Option<At>, id_at: Option<At>) -> Origin {
        Origin {
            at: o.at(),
            name_at,
            id_at,
        }
    }

    /// A foreign reference: `NAME_OR_ID`, `{name: ..}` or `{id: ..}`.
    /// `by_name` is false for entities referenced by id only.
    fn reference(&mut self, f: &Field<'_>, by_name: bool) -> Option<Ref> {
        if let Value::Map(_) = f.node.value {
            let mut o = f.obj(&mut self.d)?;
            let id = o.get("id");
            let name = if by_name { o.get("name") } else { None };
            o.finish(&mut self.d);
            let chosen = id.or(name);
            let Some(c) = chosen else {
                let want = if by_name { "'id' or 'name'" } else { "'id'" };
                self.d.err(&f.at(), format!("a reference must set {want}"));
                return None;
            };
            let key = c.nonempty_str(&mut self.d)?;
            return Some(Ref { key, at: c.at() });
        }
        let key = match &f.node.value {
            Value::Str(s) if !s.is_empty() => s.clone(),
            _ => {
                let want = if by_name { "a name or id" } else { "an id" };
                self.d.err(
                    &f.at(),
                    format!("expected {want}, found {}", f.node.describe()),
                );
                return None;
            }
        };
        Some(Ref { key, at: f.at() })
    }

    /// A reference field on an entity: read from the field when top-level;
    /// when nested, the parent already sets it and the field must be unset.
    fn link(&mut self, o: &mut Obj<'_>, field: &'static str, parent: Link, by_name: bool) -> Link {
        let f = o.get(field);
        match (parent, f) {
            (Link::None, Some(f)) => self.reference(&f, by_name).map_or(Link::None, Link::Ref),
            (Link::None, None) => Link::None,
            (nested, Some(f)) => {
                self.d.err(
                    &f.at(),
                    format!("cannot set '{field}' here: the entity is nested under a {field}"),
                );
                nested
            }
            (nested, None) => nested,
        }
    }

    /// A protocol list (routes, plugins); unsupported Kong protocols get a
    /// clear message. Duplicates are dropped.
    fn protocols(&mut self, f: &Field<'_>) -> Option<Vec<Protocol>> {
        let items = f.seq(&mut self.d)?;
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match protocol(&mut self.d, &item) {
                Some(p) if out.contains(&p) => {}
                Some(p) => out.push(p),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        if out.is_empty() {
            self.d.err(&f.at(), "length must be at least 1");
            return None;
        }
        Some(out)
    }
}

pub(crate) const PROTOCOLS: &[(&str, Protocol)] = &[
    ("http", Protocol::Http),
    ("https", Protocol::Https),
    ("grpc", Protocol::Grpc),
    ("grpcs", Protocol::Grpcs),
];

/// Kong protocols this version does not proxy.
pub(crate) const UNSUPPORTED_PROTOCOLS: &[&str] =
    &["tcp", "tls", "udp", "tls_passthrough", "ws", "wss"];

pub(crate) fn protocol(d: &mut Diag, f: &Field<'_>) -> Option<Protocol> {
    f.one_of(d, "protocol", PROTOCOLS, UNSUPPORTED_PROTOCOLS)
}

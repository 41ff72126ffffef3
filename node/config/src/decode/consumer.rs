//! Consumers and their credential collections (kept as JSON objects after
//! shape checks: known fields, required fields, types).

use super::plugin::Parent;
use super::Dec;
use crate::fields::Field;
use crate::model::Consumer;
use crate::raw::{Link, RawConsumer, RawCredential};
use std::collections::BTreeMap;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    /// A non-negative integer.
    Uint,
}

/// The shape of one credential collection.
pub(crate) struct CredentialSpec {
    pub collection: &'static str,
    /// Fields besides `id`, `tags`, `created_at` and `consumer`.
    fields: &'static [(&'static str, Kind, bool)],
    /// The field whose value must be unique across all consumers.
    pub unique: Option<&'static str>,
}

pub(crate) const CREDENTIALS: &[CredentialSpec] = &[
    CredentialSpec {
        collection: "keyauth_credentials",
        fields: &[("key", Kind::Str, true), ("ttl", Kind::Uint, false)],
        unique: Some("key"),
    },
    CredentialSpec {
        collection: "basicauth_credentials",
        fields: &[("username", Kind::Str, true), ("password", Kind::Str, true)],
        unique: Some("username"),
    },
    CredentialSpec {
        collection: "jwt_secrets",
        fields: &[
            ("key", Kind::Str, true),
            ("secret", Kind::Str, false),
            ("algorithm", Kind::Str, false),
            ("rsa_public_key", Kind::Str, false),
        ],
        unique: Some("key"),
    },
    CredentialSpec {
        collection: "acls",
        fields: &[("group", Kind::Str, true)],
        unique: None,
    },
    CredentialSpec {
        collection: "hmacauth_credentials",
        fields: &[("username", Kind::Str, true), ("secret", Kind::Str, true)],
        unique: Some("username"),
    },
];

const JWT_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256",
    "PS384", "PS512", "EdDSA",
];

pub(crate) fn credential_spec(collection: &str) -> Option<&'static CredentialSpec> {
    CREDENTIALS.iter().find(|s| s.collection == collection)
}

impl Dec<'_> {
    pub(super) fn consumer(&mut self, f: Field<'_>) {
        let Some(mut o) = f.obj(&mut self.d) else {
            return;
        };
        let idx = self.raw.consumers.len();
        let (meta, id_at) = self.meta(&mut o);
        let text = |dec: &mut Self, o: &mut crate::fields::Obj<'_>, name: &'static str| {
            let f = o.get(name)?;
            let s = f.nonempty_str(&mut dec.d)?;
            Some((s, f.at()))
        };
        let username = text(self, &mut o, "username");
        let custom_id = text(self, &mut o, "custom_id");
        if username.is_none() && custom_id.is_none() {
            self.d.err(
                &o.at(),
                "at least one of these fields must be non-empty: 'custom_id', 'username'",
            );
        }
        for spec in CREDENTIALS {
            if let Some(list) = o.get(spec.collection) {
                for item in list.seq(&mut self.d).unwrap_or_default() {
                    self.credential(item, spec, Link::Nested(idx));
                }
            }
        }
        for name in ["oauth2_credentials", "mtls_auth_credentials"] {
            o.unsupported(&mut self.d, &[name]);
        }
        if let Some(plugins) = o.get("plugins") {
            for item in plugins.seq(&mut self.d).unwrap_or_default() {
                self.plugin(item, Parent::Consumer(idx));
            }
        }
        let origin = Self::origin(&o, None, id_at);
        o.finish(&mut self.d);
        self.raw.consumers.push(RawConsumer {
            consumer: Consumer {
                meta,
                username: username.as_ref().map(|(s, _)| s.clone()),
                custom_id: custom_id.as_ref().map(|(s, _)| s.clone()),
                credentials: BTreeMap::new(),
            },
            origin,
            username_at: username.map(|(_, at)| at),
            custom_id_at: custom_id.map(|(_, at)| at),
        });
    }

    pub(super) fn credential(&mut self, f: Field<'_>, spec: &'static CredentialSpec, parent: Link) {
        let Some(mut o) = f.obj(&mut self.d) else {
            return;
        };
        let (meta, id_at) = self.meta(&mut o);
        let consumer = self.link(&mut o, "consumer", parent, true);
        if matches!(consumer, Link::None) {
            self.d.err(&o.at(), "missing required field 'consumer'");
        }
        let mut value = serde_json::Map::new();
        if let Some(id) = &meta.id {
            value.insert("id".into(), id.to_string().into());
        }
        if !meta.tags.is_empty() {
            value.insert("tags".into(), meta.tags.to_vec().into());
        }
        let mut unique = None;
        for &(name, kind, required) in spec.fields {
            let f = if required {
                o.require(&mut self.d, name)
            } else {
                o.get(name)
            };
            let Some(f) = f else { continue };
            match kind {
                Kind::Str => {
                    if let Some(s) = f.nonempty_str(&mut self.d) {
                        if spec.unique == Some(name) {
                            unique = Some((name, s.clone(), f.at()));
                        }
                        value.insert(name.into(), s.into());
                    }
                }
                Kind::Uint => {
                    if let Some(v) = f.int(&mut self.d, 0, i64::from(u32::MAX)) {
                        value.insert(name.into(), v.into());
                    }
                }
            }
        }
        if spec.collection == "jwt_secrets" {
            let alg = value
                .get("algorithm")
                .and_then(|v| v.as_str())
                .unwrap_or("HS256")
                .to_string();
            if !JWT_ALGORITHMS.contains(&alg.as_str()) {
                if let Some(f) = o.get("algorithm") {
                    self.d.err(
                        &f.at(),
                        format!(
                            "expected one of: {}, found \"{alg}\"",
                            JWT_ALGORITHMS.join(", ")
                        ),
                    );
                }
            } else if !alg.starts_with("HS") && !value.contains_key("rsa_public_key") {
                self.d.err(
                    &o.at(),
                    format!("'rsa_public_key' is required when 'algorithm' is '{alg}'"),
                );
            }
            value.insert("algorithm".into(), alg.into());
        }
        let origin = Self::origin(&o, None, id_at);
        o.finish(&mut self.d);
        self.raw.credentials.push(RawCredential {
            collection: spec.collection,
            value: serde_json::Value::Object(value),
            origin,
            unique,
            consumer,
        });
    }
}

//! Routes: match criteria, Kong's per-protocol entity checks, nested
//! plugins.

use super::compact;
use super::plugin::Parent;
use super::{exact, Dec};
use crate::check;
use crate::fields::Field;
use crate::model::{CompactString, PathHandling, Protocol, Protocols, Route};
use crate::raw::{Link, RawRoute};
use crate::yaml::Value;
use std::collections::BTreeMap;

const REDIRECT_CODES: &[i64] = &[426, 301, 302, 307, 308];

/// A 2.x path that Kong 3 treats as a regex when migrating (anything beyond
/// the plain path characters), so it gains the `~` prefix.
fn legacy_regex(p: &str) -> bool {
    !p.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"./-_~%".contains(&b))
}

/// A field counts as set when it holds a non-empty list or mapping (even if
/// some items were invalid: those are reported on their own).
fn is_set(f: &Option<Field<'_>>) -> bool {
    f.as_ref().is_some_and(|f| match &f.node.value {
        Value::Seq(v) => !v.is_empty(),
        Value::Map(m) => !m.is_empty(),
        Value::Null => false,
        _ => true,
    })
}

impl Dec<'_> {
    pub(super) fn route(&mut self, f: Field<'_>, parent: Link) {
        let Some(mut o) = f.obj(&mut self.d) else {
            return;
        };
        let idx = self.raw.routes.len();
        let (meta, id_at) = self.meta(&mut o);
        let (name, name_at) = self.utf8_name(&mut o, "name");
        let service = self.link(&mut o, "service", parent, true);

        let protocols_f = o.get("protocols");
        let protocols = protocols_f
            .as_ref()
            .and_then(|f| self.protocols(f))
            .unwrap_or_else(|| vec![Protocol::Http, Protocol::Https]);
        let has_http = protocols.iter().any(|p| !p.is_grpc());
        let has_grpc = protocols.iter().any(|p| p.is_grpc());
        if has_http && has_grpc {
            if let Some(f) = &protocols_f {
                self.d.err(
                    &f.at(),
                    "these sets are mutually exclusive: ('http', 'https'), ('grpc', 'grpcs')",
                );
            }
        }
        let grpc = has_grpc && !has_http;

        let methods_f = o.get("methods");
        let mut methods: Vec<String> = Vec::new();
        if let Some(f) = &methods_f {
            for (s, item) in f.str_list(&mut self.d).unwrap_or_default() {
                let m = s.to_ascii_uppercase();
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    self.d.err(
                        &item.at(),
                        format!("invalid method '{s}': must contain only letters"),
                    );
                } else if !methods.contains(&m) {
                    methods.push(m);
                }
            }
        }

        let hosts_f = o.get("hosts");
        let mut hosts: Vec<String> = Vec::new();
        if let Some(f) = &hosts_f {
            for (s, item) in f.str_list(&mut self.d).unwrap_or_default() {
                match check::route_host(&s) {
                    Ok(()) => {
                        let h = s.to_ascii_lowercase();
                        if !hosts.contains(&h) {
                            hosts.push(h);
                        }
                    }
                    Err(e) => self.d.err(&item.at(), e),
                }
            }
        }

        let paths_f = o.get("paths");
        let mut paths: Vec<String> = Vec::new();
        if let Some(f) = &paths_f {
            for (s, item) in f.str_list(&mut self.d).unwrap_or_default() {
                let p = if self.legacy_paths && !s.starts_with('~') && legacy_regex(&s) {
                    format!("~{s}")
                } else {
                    s
                };
                match check::router_path(&p) {
                    Ok(()) => paths.push(p),
                    Err(e) => self.d.err(&item.at(), e),
                }
            }
        }

        let headers_f = o.get("headers");
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(f) = &headers_f {
            for (key, vf) in f.entries(&mut self.d).unwrap_or_default() {
                let kat = crate::diag::At {
                    file: vf.file,
                    pos: key.pos,
                    path: vf.path.clone(),
                };
                let name = key.text.to_ascii_lowercase();
                if let Err(e) = check::header_name(&key.text) {
                    self.d.err(&kat, e);
                    continue;
                }
                if name == "host" {
                    self.d.err(
                        &kat,
                        "cannot contain 'host' header, which must be specified in the 'hosts' attribute",
                    );
                    continue;
                }
                if headers.contains_key(&name) {
                    self.d.err(
                        &kat,
                        format!(
                            "header '{name}' is listed twice (header names are case-insensitive)"
                        ),
                    );
                    continue;
                }
                let Some(values) = vf.str_list(&mut self.d) else {
                    continue;
                };
                if values.is_empty() {
                    self.d.err(&vf.at(), "must have at least one value");
                    continue;
                }
                let mut out = Vec::new();
                for (v, item) in values {
                    if let Some(re) = v.strip_prefix("~*") {
                        if let Err(e) = check::regex(re) {
                            self.d
                                .err(&item.at(), format!("invalid regex: '{re}' ({e})"));
                            continue;
                        }
                    }
                    out.push(v);
                }
                headers.insert(name, exact(out));
            }
        }

        let snis_f = o.get("snis");
        let mut snis: Vec<String> = Vec::new();
        if let Some(f) = &snis_f {
            for (s, item) in f.str_list(&mut self.d).unwrap_or_default() {
                match check::sni(&s) {
                    Ok(()) => {
                        let n = s.to_ascii_lowercase();
                        if !snis.contains(&n) {
                            snis.push(n);
                        }
                    }
                    Err(e) => self.d.err(&item.at(), e),
                }
            }
        }

        let strip_path = match o.get("strip_path") {
            Some(f) => {
                let v = f.bool(&mut self.d);
                if grpc && v == Some(true) {
                    self.d.err(
                        &f.at(),
                        "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'",
                    );
                }
                v.unwrap_or(!grpc)
            }
            None => !grpc,
        };
        let mut flag = |o: &mut crate::fields::Obj<'_>, name: &'static str, default: bool| {
            o.get(name)
                .and_then(|f| f.bool(&mut self.d))
                .unwrap_or(default)
        };
        let preserve_host = flag(&mut o, "preserve_host", false);
        let request_buffering = flag(&mut o, "request_buffering", true);
        let response_buffering = flag(&mut o, "response_buffering", true);
        let regex_priority = o
            .get("regex_priority")
            .and_then(|f| f.int(&mut self.d, i64::MIN, i64::MAX))
            .unwrap_or(0);
        let path_handling = o
            .get("path_handling")
            .and_then(|f| {
                f.one_of(
                    &mut self.d,
                    "path_handling",
                    &[("v0", PathHandling::V0), ("v1", PathHandling::V1)],
                    &[],
                )
            })
            .unwrap_or(PathHandling::V0);
        let https_redirect_status_code = match o.get("https_redirect_status_code") {
            Some(f) => match f.int(&mut self.d, 0, 999) {
                Some(c) if REDIRECT_CODES.contains(&c) => c as u16,
                Some(c) => {
                    self.d.err(
                        &f.at(),
                        format!("expected one of: 426, 301, 302, 307, 308, found integer {c}"),
                    );
                    426
                }
                None => 426,
            },
            None => 426,
        };
        o.unsupported(
            &mut self.d,
            &["expression", "priority", "sources", "destinations"],
        );

        if let Some(plugins) = o.get("plugins") {
            for item in plugins.seq(&mut self.d).unwrap_or_default() {
                self.plugin(item, Parent::Route(idx));
            }
        }

        // Kong's entity checks (routes.lua and routes_subschemas.lua).
        if grpc && is_set(&methods_f) {
            if let Some(f) = &methods_f {
                self.d.err(
                    &f.at(),
                    "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'",
                );
            }
        }
        if is_set(&snis_f) && !protocols.iter().any(|p| p.is_tls()) {
            if let Some(f) = &snis_f {
                self.d.err(
                    &f.at(),
                    "'snis' can only be set when 'protocols' is 'grpcs' or 'https'",
                );
            }
        }
        let tls = protocols.iter().any(|p| p.is_tls());
        let (fields, proto): (&[(&str, bool)], &str) = match (grpc, tls) {
            (false, true) => (
                &[
                    ("methods", is_set(&methods_f)),
                    ("hosts", is_set(&hosts_f)),
                    ("headers", is_set(&headers_f)),
                    ("paths", is_set(&paths_f)),
                    ("snis", is_set(&snis_f)),
                ],
                "https",
            ),
            (false, false) => (
                &[
                    ("methods", is_set(&methods_f)),
                    ("hosts", is_set(&hosts_f)),
                    ("headers", is_set(&headers_f)),
                    ("paths", is_set(&paths_f)),
                ],
                "http",
            ),
            (true, true) => (
                &[
                    ("hosts", is_set(&hosts_f)),
                    ("headers", is_set(&headers_f)),
                    ("paths", is_set(&paths_f)),
                    ("snis", is_set(&snis_f)),
                ],
                "grpcs",
            ),
            (true, false) => (
                &[
                    ("hosts", is_set(&hosts_f)),
                    ("headers", is_set(&headers_f)),
                    ("paths", is_set(&paths_f)),
                ],
                "grpc",
            ),
        };
        if !fields.iter().any(|(_, set)| *set) {
            let names: Vec<String> = fields.iter().map(|(n, _)| format!("'{n}'")).collect();
            self.d.err(
                &o.at(),
                format!(
                    "must set one of {} when 'protocols' is '{proto}'",
                    names.join(", ")
                ),
            );
        }

        let origin = Self::origin(&o, name_at, id_at);
        o.finish(&mut self.d);
        self.raw.routes.push(RawRoute {
            // Lists are built by pushing; the config lives as long as it is
            // served, so they are kept as boxed slices without spare
            // capacity (10,000 routes kept about 0.7 MB of it in `paths`
            // alone), short strings inline and protocols in the route
            // itself (`from_slice`: `from_vec` would keep the heap buffer).
            route: Route {
                meta,
                name: name.map(CompactString::from),
                service: None,
                protocols: Protocols::from_slice(&protocols),
                methods: methods.into(),
                hosts: compact(hosts),
                paths: compact(paths),
                headers,
                snis: snis.into(),
                strip_path,
                preserve_host,
                regex_priority,
                path_handling,
                https_redirect_status_code,
                request_buffering,
                response_buffering,
            },
            origin,
            service,
        });
    }
}

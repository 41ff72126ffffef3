//! Services, including the `url` shorthand and nested routes and plugins.

use super::plugin::Parent;
use super::{protocol, Dec};
use crate::check;
use crate::diag::At;
use crate::fields::Field;
use crate::model::{Protocol, Service};
use crate::raw::{Link, RawService};

/// Kong's `nonzero_timeout`: 1 ..= 2^31 - 2 milliseconds.
pub(crate) const TIMEOUT_MAX: i64 = 2_147_483_646;

/// What a service `url` expands to.
struct UrlParts {
    protocol: Protocol,
    host: String,
    port: u16,
    path: Option<String>,
}

impl Dec<'_> {
    pub(super) fn service(&mut self, f: Field<'_>) {
        let Some(mut o) = f.obj(&mut self.d) else {
            return;
        };
        let idx = self.raw.services.len();
        let (meta, id_at) = self.meta(&mut o);
        let (name, name_at) = self.utf8_name(&mut o, "name");

        let url = o.get("url").and_then(|u| {
            let s = u.str(&mut self.d)?;
            match parse_url(&s) {
                Ok(parts) => Some(parts),
                Err(e) => {
                    self.d.err(&u.at(), e);
                    None
                }
            }
        });
        let has_url = o.get("url").is_some();
        let mut protocol_f = o.get("protocol");
        let mut host_f = o.get("host");
        let mut port_f = o.get("port");
        let mut path_f = o.get("path");
        if has_url {
            for (name, f) in [
                ("protocol", protocol_f.take()),
                ("host", host_f.take()),
                ("port", port_f.take()),
                ("path", path_f.take()),
            ] {
                if let Some(f) = f {
                    self.d
                        .err(&f.at(), format!("cannot set '{name}' together with 'url'"));
                }
            }
        }

        let mut proto = protocol_f
            .and_then(|f| protocol(&mut self.d, &f))
            .unwrap_or(Protocol::Http);
        let mut host = String::new();
        if let Some(f) = &host_f {
            if let Some(s) = f.str(&mut self.d) {
                match check::host(&s) {
                    Ok(hp) => host = hp.host,
                    Err(e) => self.d.err(&f.at(), e),
                }
            }
        } else if !has_url {
            self.d.err(&o.at(), "missing required field 'host'");
        }
        let mut port = port_f
            .and_then(|f| f.int(&mut self.d, 0, 65535))
            .map_or(80, |p| p as u16);
        let mut path_at: Option<At> = None;
        let mut path = path_f.and_then(|f| {
            let s = f.str(&mut self.d)?;
            match check::path(&s) {
                Ok(()) => {
                    path_at = Some(f.at());
                    Some(s)
                }
                Err(e) => {
                    self.d.err(&f.at(), e);
                    None
                }
            }
        });
        if let Some(u) = url {
            proto = u.protocol;
            host = u.host;
            port = u.port;
            path = u.path;
        }
        if proto.is_grpc() && path.is_some() {
            let at = path_at.unwrap_or_else(|| o.at());
            self.d.err(
                &at,
                format!("cannot set 'path' when 'protocol' is '{}'", proto.as_str()),
            );
        }

        let retries = o
            .get("retries")
            .and_then(|f| f.int(&mut self.d, 0, 32767))
            .map_or(5, |v| v as u32);
        let mut timeout = |o: &mut crate::fields::Obj<'_>, name: &'static str| {
            o.get(name)
                .and_then(|f| f.int(&mut self.d, 1, TIMEOUT_MAX))
                .map_or(60000, |v| v as u64)
        };
        let connect_timeout_ms = timeout(&mut o, "connect_timeout");
        let write_timeout_ms = timeout(&mut o, "write_timeout");
        let read_timeout_ms = timeout(&mut o, "read_timeout");
        let enabled = o
            .get("enabled")
            .and_then(|f| f.bool(&mut self.d))
            .unwrap_or(true);

        // TLS-to-upstream settings: only meaningful for https/grpcs.
        let tls_only = |dec: &mut Self, f: &Field<'_>, name: &str| {
            if !proto.is_tls() {
                dec.d.err(
                    &f.at(),
                    format!(
                        "cannot set '{name}' when 'protocol' is '{}'",
                        proto.as_str()
                    ),
                );
            }
        };
        let mut tls_verify = None;
        if let Some(f) = o.get("tls_verify") {
            tls_verify = f.bool(&mut self.d);
            tls_only(self, &f, "tls_verify");
        }
        let mut tls_verify_depth = None;
        if let Some(f) = o.get("tls_verify_depth") {
            tls_verify_depth = f.int(&mut self.d, 0, 64).map(|v| v as u8);
            tls_only(self, &f, "tls_verify_depth");
        }
        let mut ca_certificates = Vec::new();
        if let Some(f) = o.get("ca_certificates") {
            tls_only(self, &f, "ca_certificates");
            for (s, item) in f.str_list(&mut self.d).unwrap_or_default() {
                match check::uuid(&s) {
                    Ok(()) => ca_certificates.push(crate::raw::Ref {
                        key: s,
                        at: item.at(),
                    }),
                    Err(e) => self.d.err(&item.at(), e),
                }
            }
        }
        let mut client_certificate = None;
        if let Some(f) = o.get("client_certificate") {
            tls_only(self, &f, "client_certificate");
            client_certificate = self.reference(&f, false);
        }

        if let Some(routes) = o.get("routes") {
            for item in routes.seq(&mut self.d).unwrap_or_default() {
                self.route(item, Link::Nested(idx));
            }
        }
        if let Some(plugins) = o.get("plugins") {
            for item in plugins.seq(&mut self.d).unwrap_or_default() {
                self.plugin(item, Parent::Service(idx));
            }
        }
        let origin = Self::origin(&o, name_at, id_at);
        o.finish(&mut self.d);

        self.raw.services.push(RawService {
            service: Service {
                meta,
                name: name.map(Into::into),
                protocol: proto,
                host: host.into(),
                port,
                path: path.map(Into::into),
                retries,
                connect_timeout_ms,
                write_timeout_ms,
                read_timeout_ms,
                enabled,
                upstream: None,
                tls_verify,
                tls_verify_depth,
                ca_certificates: Vec::new(),
                client_certificate: None,
            },
            origin,
            client_certificate,
            ca_certificates,
        });
    }
}

/// `scheme://host[:port][/path]`. Without a port: 443 for https and grpcs,
/// 80 for http and grpc (Kong uses 80 for grpcs too, which cannot work).
fn parse_url(s: &str) -> Result<UrlParts, String> {
    let invalid = |why: &str| format!("invalid url '{s}': {why}");
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| invalid("missing scheme (expected e.g. http://host)"))?;
    let protocol = match scheme.to_ascii_lowercase().as_str() {
        "http" => Protocol::Http,
        "https" => Protocol::Https,
        "grpc" => Protocol::Grpc,
        "grpcs" => Protocol::Grpcs,
        other if super::UNSUPPORTED_PROTOCOLS.contains(&other) => {
            return Err(format!(
                "protocol '{other}' is not supported by this version"
            ))
        }
        _ => return Err(invalid(&format!("unknown scheme '{scheme}'"))),
    };
    if rest.contains(['?', '#']) {
        return Err(invalid("a query string or fragment is not allowed"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    if authority.contains('@') {
        return Err(invalid("credentials in the url are not allowed"));
    }
    if authority.is_empty() {
        return Err(invalid("missing host"));
    }
    let hp = check::host_port(authority).map_err(|e| invalid(&e))?;
    let port = hp.port.unwrap_or(match protocol {
        Protocol::Https | Protocol::Grpcs => 443,
        Protocol::Http | Protocol::Grpc => 80,
    });
    let host = hp.host;
    let path = match path {
        None => None,
        Some(p) => {
            check::path(p).map_err(|e| invalid(&e))?;
            Some(p.to_string())
        }
    };
    Ok(UrlParts {
        protocol,
        host,
        port,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("https://example.com/api").expect("url");
        assert_eq!(
            (u.protocol, u.host.as_str(), u.port, u.path.as_deref()),
            (Protocol::Https, "example.com", 443, Some("/api"))
        );
        let u = parse_url("http://10.0.0.1:8080").expect("url");
        assert_eq!((u.host.as_str(), u.port, u.path), ("10.0.0.1", 8080, None));
        assert_eq!(
            parse_url("tcp://a:1").err(),
            Some("protocol 'tcp' is not supported by this version".to_string())
        );
        assert_eq!(
            parse_url("example.com").err(),
            Some("invalid url 'example.com': missing scheme (expected e.g. http://host)".into())
        );
    }
}

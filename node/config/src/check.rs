//! Value validators shared by the entity decoders: names, tags, UUIDs,
//! hosts, paths, regexes, header and cookie names, PEM blocks. Each returns
//! `Err(message)`; messages follow Kong's wording where Kong has one.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Kong's `typedefs.uuid`.
pub fn uuid(s: &str) -> Result<(), String> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!("expected a valid UUID, found '{s}'"))
    }
}

/// Kong's `typedefs.utf8_name` (service and route names, instance names).
pub fn utf8_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~') || !c.is_ascii()
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid value '{s}': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
        ))
    }
}

/// Kong's `typedefs.tag`.
pub fn tag(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| !c.is_ascii() || (c == ' ' || (c.is_ascii_graphic() && c != ',' && c != '/')));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tag '{s}': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Name,
    Ipv4,
    Ipv6,
}

/// A host with an optional port, as Kong's `normalize_ip` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Without brackets for IPv6.
    pub host: String,
    pub kind: HostKind,
    pub port: Option<u16>,
}

/// `name`, `name:port`, `1.2.3.4`, `1.2.3.4:port`, `::1`, `[::1]`, `[::1]:port`.
pub fn host_port(s: &str) -> Result<HostPort, String> {
    let invalid = || format!("invalid value: {s}");
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(invalid)?;
        inside.parse::<Ipv6Addr>().map_err(|_| invalid())?;
        let port = match after {
            "" => None,
            p => Some(port(p.strip_prefix(':').ok_or_else(invalid)?)?),
        };
        return Ok(HostPort {
            host: inside.to_string(),
            kind: HostKind::Ipv6,
            port,
        });
    }
    if s.matches(':').count() > 1 {
        s.parse::<Ipv6Addr>().map_err(|_| invalid())?;
        return Ok(HostPort {
            host: s.to_string(),
            kind: HostKind::Ipv6,
            port: None,
        });
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(port(p)?)),
        None => (s, None),
    };
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(HostPort {
            host: host.to_string(),
            kind: HostKind::Ipv4,
            port,
        });
    }
    if !hostname(host) {
        return Err(invalid());
    }
    Ok(HostPort {
        host: host.to_string(),
        kind: HostKind::Name,
        port,
    })
}

fn port(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid port number".to_string());
    }
    p.parse::<u16>()
        .map_err(|_| "invalid port number".to_string())
}

/// Labels of letters, digits, `-` and `_`, 1-63 chars each, 253 in all.
pub fn hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Kong's `typedefs.host`: a hostname or IP without a port.
pub fn host(s: &str) -> Result<HostPort, String> {
    let hp = host_port(s)?;
    if hp.port.is_some() {
        return Err("must not have a port".to_string());
    }
    Ok(hp)
}

/// Kong's route `hosts` elements: at most one `*`, as the whole leftmost or
/// rightmost label, and an optional port.
pub fn route_host(s: &str) -> Result<(), String> {
    let stars = s.matches('*').count();
    if stars > 1 {
        return Err("invalid wildcard: must have at most one wildcard".to_string());
    }
    if stars == 1 {
        let hostpart = s.rsplit_once(':').map_or(s, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                s
            }
        });
        if !(hostpart.starts_with("*.") || hostpart.ends_with(".*")) {
            return Err(
                "invalid wildcard: must be placed at leftmost or rightmost label".to_string(),
            );
        }
    }
    host_port(&s.replace('*', "wildcard")).map(|_| ())
}

/// Kong's `typedefs.sni` (route `snis`, `https_sni`): a name, no IP, no port.
pub fn sni(s: &str) -> Result<(), String> {
    let hp = host_port(s)?;
    if hp.kind != HostKind::Name {
        return Err("must not be an IP".to_string());
    }
    if hp.port.is_some() {
        return Err("must not have a port".to_string());
    }
    Ok(())
}

/// Kong's `typedefs.wildcard_host` (SNI entity names): like `sni`, plus one
/// `*` as the first or last character.
pub fn wildcard_sni(s: &str) -> Result<(), String> {
    let stars = s.matches('*').count();
    if stars > 1 {
        return Err("only one wildcard must be specified".to_string());
    }
    if stars == 1 && !(s.starts_with('*') || s.ends_with('*')) {
        return Err("wildcard must be leftmost or rightmost character".to_string());
    }
    sni(&s.replace('*', "wildcard")).map_err(|e| {
        if e.starts_with("invalid value") {
            format!("invalid value: {s}")
        } else {
            e
        }
    })
}

/// Kong's `validate_header_name`.
pub fn header_name(s: &str) -> Result<(), String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(format!(
            "bad header name '{s}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
        ))
    }
}

/// Kong's `validate_cookie_name` (an RFC 7230 token).
pub fn cookie_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid cookie name '{s}': control characters, space, tab and ()<>@,;:\\\"/?={{}}[] are not allowed"
        ))
    }
}

/// Kong's `typedefs.path` (service `path`, health check `http_path`,
/// `hash_on_cookie_path`).
pub fn path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err("should start with: /".to_string());
    }
    if s.contains("//") {
        return Err("must not have empty segments".to_string());
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._~/%:@!$&'()*+,;=-".contains(&b));
    if !ok {
        return Err(format!(
            "invalid path: '{s}' (characters outside of the reserved list of RFC 3986 found)"
        ));
    }
    percent(s)
}

/// Every `%` starts a `%XX` escape.
fn percent(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                let end = (i + 3).min(b.len());
                let bad = String::from_utf8_lossy(&b[i..end]);
                return Err(format!("invalid url-encoded value: '{bad}'"));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Kong's `typedefs.router_path`: `/prefix` or `~/regex`. Prefix paths must
/// be normalized; regex paths must compile (anchored at the start, as the
/// router uses them).
pub fn router_path(s: &str) -> Result<(), String> {
    if !(s.starts_with('/') || s.starts_with("~/")) {
        return Err("should start with: / (fixed path) or ~/ (regex path)".to_string());
    }
    if s.contains("//") {
        return Err("must not have empty segments".to_string());
    }
    percent(s)?;
    match s.strip_prefix('~') {
        Some(re) => regex(re).map_err(|e| format!("invalid regex: '{re}' ({e})")),
        None => {
            // Without escapes or dot segments a path is already normalized.
            if !s.contains('%') && !s.contains("/.") {
                return Ok(());
            }
            let n = normalize_path(s);
            if n != s {
                return Err(format!("non-normalized path, consider use '{n}' instead"));
            }
            Ok(())
        }
    }
}

/// Decode `%XX` escapes of unreserved characters, upper-case the others,
/// and remove `.` and `..` segments (RFC 3986 section 6.2.2).
pub fn normalize_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut dec = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = &s[i + 1..i + 3];
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                let c = v as char;
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~') {
                    dec.push(c);
                } else {
                    dec.push('%');
                    dec.push_str(&hex.to_ascii_uppercase());
                }
                i += 3;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        dec.push(ch);
        i += ch.len_utf8().max(1);
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = dec.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing = false;
    for (idx, seg) in segments.iter().enumerate().skip(1) {
        match *seg {
            "." => trailing = idx == last,
            ".." => {
                out.pop();
                trailing = idx == last;
            }
            other => {
                out.push(other);
                trailing = false;
            }
        }
    }
    let mut r = String::from("/");
    r.push_str(&out.join("/"));
    if trailing && !r.ends_with('/') {
        r.push('/');
    }
    r
}

/// Check a regex the way the router will compile it: anchored `^(?:...)`.
/// Errors are one line (the regex crate's own messages span several).
pub fn regex(re: &str) -> Result<(), String> {
    if let Err(e) = regex_syntax::Parser::new().parse(re) {
        let (kind, span) = match &e {
            regex_syntax::Error::Parse(e) => (e.kind().to_string(), Some(*e.span())),
            regex_syntax::Error::Translate(e) => (e.kind().to_string(), Some(*e.span())),
            _ => (e.to_string().replace('\n', " "), None),
        };
        return Err(match span {
            Some(span) => format!("{kind} at column {}", span.start.column),
            None => kind,
        });
    }
    let anchored = format!("^(?:{re})");
    match regex::Regex::new(&anchored) {
        Ok(_) => Ok(()),
        Err(regex::Error::CompiledTooBig(limit)) => Err(format!(
            "compiled regex exceeds the size limit of {limit} bytes"
        )),
        Err(e) => Err(e.to_string().replace('\n', " ")),
    }
}

/// Check that `text` holds a PEM block whose label is one of `labels`.
/// `what` names the field for messages ("certificate", "key").
pub fn pem(text: &str, what: &str, labels: &[&str]) -> Result<(), String> {
    let Some(start) = text.find("-----BEGIN ") else {
        return Err(format!(
            "invalid {what}: no PEM block found (expected '-----BEGIN {}-----')",
            labels.first().copied().unwrap_or("")
        ));
    };
    let rest = &text[start + 11..];
    let Some(end_label) = rest.find("-----") else {
        return Err(format!("invalid {what}: malformed PEM header"));
    };
    let label = &rest[..end_label];
    if label == "ENCRYPTED PRIVATE KEY" {
        return Err(format!(
            "invalid {what}: encrypted private keys are not supported"
        ));
    }
    if !labels.contains(&label) {
        return Err(format!(
            "invalid {what}: found a PEM block of type '{label}', expected {}",
            labels
                .iter()
                .map(|l| format!("'{l}'"))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    let body_start = &rest[end_label + 5..];
    let footer = format!("-----END {label}-----");
    let Some(body_end) = body_start.find(&footer) else {
        return Err(format!("invalid {what}: missing '{footer}'"));
    };
    let body = &body_start[..body_end];
    if body.contains(':') {
        return Err(format!(
            "invalid {what}: PEM headers (encrypted keys) are not supported"
        ));
    }
    let b64: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let data_len = b64.iter().position(|&b| b == b'=').unwrap_or(b64.len());
    let ok = !b64.is_empty()
        && b64.len() & 3 == 0
        && b64.len() - data_len <= 2
        && b64[data_len..].iter().all(|&b| b == b'=')
        && b64[..data_len]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !ok {
        return Err(format!("invalid {what}: PEM body is not valid base64"));
    }
    // DER always starts with a SEQUENCE tag (0x30): base64 "M" + one of A-P.
    let first = b64_val(b64[0]) << 2 | b64_val(b64[1]) >> 4;
    if first != 0x30 {
        return Err(format!("invalid {what}: PEM body is not DER data"));
    }
    Ok(())
}

fn b64_val(b: u8) -> u8 {
    match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => 0,
    }
}

/// How many PEM blocks of `label` `text` holds.
pub fn pem_count(text: &str, label: &str) -> usize {
    text.matches(&format!("-----BEGIN {label}-----")).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        assert!(uuid("0b5a4c1e-3c5d-4f5e-9a8b-1c2d3e4f5a6b").is_ok());
        assert_eq!(
            uuid("abc"),
            Err("expected a valid UUID, found 'abc'".to_string())
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(
            host_port("[::1]:8080"),
            Ok(HostPort {
                host: "::1".into(),
                kind: HostKind::Ipv6,
                port: Some(8080)
            })
        );
        assert_eq!(host_port("a.b:99").map(|h| h.port), Ok(Some(99)));
        assert_eq!(host_port("10.0.0.1").map(|h| h.kind), Ok(HostKind::Ipv4));
        assert_eq!(host_port("a b"), Err("invalid value: a b".into()));
        assert_eq!(host_port("a:99999"), Err("invalid port number".into()));
        assert_eq!(host("a:1"), Err("must not have a port".into()));
        assert!(route_host("*.example.com").is_ok());
        assert!(route_host("example.*").is_ok());
        assert!(route_host("*.example.com:8443").is_ok());
        assert_eq!(
            route_host("a.*.com"),
            Err("invalid wildcard: must be placed at leftmost or rightmost label".into())
        );
        assert_eq!(
            route_host("*.a.*"),
            Err("invalid wildcard: must have at most one wildcard".into())
        );
        assert_eq!(sni("1.2.3.4"), Err("must not be an IP".into()));
        assert!(wildcard_sni("*.example.com").is_ok());
    }

    #[test]
    fn paths() {
        assert!(path("/a/b").is_ok());
        assert_eq!(path("a"), Err("should start with: /".into()));
        assert_eq!(path("/a//b"), Err("must not have empty segments".into()));
        assert_eq!(
            path("/a%zz"),
            Err("invalid url-encoded value: '%zz'".into())
        );
        assert!(router_path("/a/b").is_ok());
        assert!(router_path(r"~/users/(?<id>\d+)$").is_ok());
        assert_eq!(
            router_path("/a/./b"),
            Err("non-normalized path, consider use '/a/b' instead".into())
        );
        assert_eq!(
            router_path("/a/%7Ex"),
            Err("non-normalized path, consider use '/a/~x' instead".into())
        );
        assert!(router_path("/a/%2F").is_ok());
        assert_eq!(
            router_path("~/a(b"),
            Err("invalid regex: '/a(b' (unclosed group at column 3)".into())
        );
        assert_eq!(normalize_path("/a/b/../c/."), "/a/c/");
    }

    #[test]
    fn pem_blocks() {
        let cert = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
        assert!(pem(cert, "certificate", &["CERTIFICATE"]).is_ok());
        assert_eq!(
            pem(cert, "key", &["PRIVATE KEY"]),
            Err(
                "invalid key: found a PEM block of type 'CERTIFICATE', expected 'PRIVATE KEY'"
                    .into()
            )
        );
        assert_eq!(
            pem("hello", "certificate", &["CERTIFICATE"]),
            Err(
                "invalid certificate: no PEM block found (expected '-----BEGIN CERTIFICATE-----')"
                    .into()
            )
        );
    }
}

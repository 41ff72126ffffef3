//! Upstreams (load-balancing settings and the health check tree) and their
//! targets.

use super::Dec;
use crate::check::{self, HostKind};
use crate::fields::{Field, Obj};
use crate::model::*;
use crate::raw::{Link, RawTarget, RawUpstream};

const HASH_ON: &[(&str, HashOn)] = &[
    ("none", HashOn::None),
    ("consumer", HashOn::Consumer),
    ("ip", HashOn::Ip),
    ("header", HashOn::Header),
    ("cookie", HashOn::Cookie),
];
const HASH_ON_UNSUPPORTED: &[&str] = &["path", "query_arg", "uri_capture"];

const CHECK_TYPES: &[(&str, HealthcheckType)] = &[
    ("tcp", HealthcheckType::Tcp),
    ("http", HealthcheckType::Http),
    ("https", HealthcheckType::Https),
    ("grpc", HealthcheckType::Grpc),
    ("grpcs", HealthcheckType::Grpcs),
];

/// Kong's health check counters (`successes`, `*_failures`, `timeouts`).
const COUNTER_MAX: i64 = 255;
/// Kong's `seconds` type for intervals and timeouts.
const SECONDS_MAX: f64 = 65535.0;
/// Target weights.
pub(crate) const WEIGHT_MAX: i64 = 65535;
/// Port used for targets written without one.
pub(crate) const DEFAULT_TARGET_PORT: u16 = 8000;

impl Dec<'_> {
    pub(super) fn upstream(&mut self, f: Field<'_>) {
        let Some(mut o) = f.obj(&mut self.d) else {
            return;
        };
        let idx = self.raw.upstreams.len();
        let (meta, id_at) = self.meta(&mut o);
        let mut name = String::new();
        let mut name_at = None;
        if let Some(nf) = o.require(&mut self.d, "name") {
            if let Some(s) = nf.str(&mut self.d) {
                match check::host_port(&s) {
                    Err(_) => self
                        .d
                        .err(&nf.at(), "Invalid name; must be a valid hostname"),
                    Ok(hp) if hp.kind != HostKind::Name => self
                        .d
                        .err(&nf.at(), "Invalid name; no ip addresses allowed"),
                    Ok(hp) if hp.port.is_some() => {
                        self.d.err(&nf.at(), "Invalid name; no port allowed")
                    }
                    Ok(_) => {
                        name = s;
                        name_at = Some(nf.at());
                    }
                }
            }
        }
        let algorithm = o
            .get("algorithm")
            .and_then(|f| {
                f.one_of(
                    &mut self.d,
                    "algorithm",
                    &[
                        ("round-robin", Algorithm::RoundRobin),
                        ("least-connections", Algorithm::LeastConnections),
                        ("consistent-hashing", Algorithm::ConsistentHashing),
                    ],
                    &["latency", "sticky-sessions"],
                )
            })
            .unwrap_or(Algorithm::RoundRobin);
        let hash_on_f = o.get("hash_on");
        let hash_on = hash_on_f
            .as_ref()
            .and_then(|f| f.one_of(&mut self.d, "hash_on", HASH_ON, HASH_ON_UNSUPPORTED))
            .unwrap_or(HashOn::None);
        let hash_fallback_f = o.get("hash_fallback");
        let hash_fallback = hash_fallback_f
            .as_ref()
            .and_then(|f| f.one_of(&mut self.d, "hash_fallback", HASH_ON, HASH_ON_UNSUPPORTED))
            .unwrap_or(HashOn::None);
        let header = |dec: &mut Self, o: &mut Obj<'_>, field: &'static str| {
            let f = o.get(field)?;
            let s = f.str(&mut dec.d)?;
            match check::header_name(&s) {
                Ok(()) => Some((s, f.at())),
                Err(e) => {
                    dec.d.err(&f.at(), e);
                    None
                }
            }
        };
        let hash_on_header = header(self, &mut o, "hash_on_header");
        let hash_fallback_header = header(self, &mut o, "hash_fallback_header");
        let hash_on_cookie = o.get("hash_on_cookie").and_then(|f| {
            let s = f.str(&mut self.d)?;
            match check::cookie_name(&s) {
                Ok(()) => Some(s),
                Err(e) => {
                    self.d.err(&f.at(), e);
                    None
                }
            }
        });
        let hash_on_cookie_path = o
            .get("hash_on_cookie_path")
            .and_then(|f| {
                let s = f.str(&mut self.d)?;
                match check::path(&s) {
                    Ok(()) => Some(s),
                    Err(e) => {
                        self.d.err(&f.at(), e);
                        None
                    }
                }
            })
            .unwrap_or_else(|| "/".to_string());
        let slots = o
            .get("slots")
            .and_then(|f| f.int(&mut self.d, 10, 65536))
            .map_or(10000, |v| v as u32);
        let host_header = o.get("host_header").and_then(|f| {
            let s = f.str(&mut self.d)?;
            match check::host(&s) {
                Ok(_) => Some(s),
                Err(e) => {
                    self.d.err(&f.at(), e);
                    None
                }
            }
        });
        let healthchecks = match o.get("healthchecks") {
            Some(f) => self.healthchecks(&f),
            None => Healthchecks::default(),
        };
        if let Some(f) = o.get("use_srv_name") {
            if f.bool(&mut self.d) == Some(true) {
                self.d.err(
                    &f.at(),
                    "field 'use_srv_name' is not supported by this version",
                );
            }
        }
        o.unsupported(
            &mut self.d,
            &[
                "client_certificate",
                "hash_on_query_arg",
                "hash_fallback_query_arg",
                "hash_on_uri_capture",
                "hash_fallback_uri_capture",
                "sticky_sessions_cookie",
                "sticky_sessions_cookie_path",
            ],
        );

        // Kong's entity checks (upstreams.lua).
        let at = o.at();
        let hash_on_at = hash_on_f.as_ref().map_or_else(|| at.clone(), |f| f.at());
        let fallback_at = hash_fallback_f
            .as_ref()
            .map_or_else(|| at.clone(), |f| f.at());
        if hash_on == HashOn::Header && hash_on_header.is_none() {
            self.d.err(
                &hash_on_at,
                "'hash_on_header' is required when 'hash_on' is 'header'",
            );
        }
        if hash_fallback == HashOn::Header && hash_fallback_header.is_none() {
            self.d.err(
                &fallback_at,
                "'hash_fallback_header' is required when 'hash_fallback' is 'header'",
            );
        }
        if hash_on == HashOn::Cookie && hash_on_cookie.is_none() {
            self.d.err(
                &hash_on_at,
                "'hash_on_cookie' is required when 'hash_on' is 'cookie'",
            );
        }
        if hash_fallback == HashOn::Cookie && hash_on_cookie.is_none() {
            self.d.err(
                &fallback_at,
                "'hash_on_cookie' is required when 'hash_fallback' is 'cookie'",
            );
        }
        if hash_fallback != HashOn::None {
            let allowed = match hash_on {
                HashOn::None => false,
                HashOn::Cookie => false,
                HashOn::Consumer => hash_fallback != HashOn::Consumer,
                HashOn::Ip => hash_fallback != HashOn::Ip,
                HashOn::Header => true,
            };
            if !allowed {
                let on = hash_on_name(hash_on);
                let why = match hash_on {
                    HashOn::None | HashOn::Cookie => {
                        format!("'hash_fallback' must be 'none' when 'hash_on' is '{on}'")
                    }
                    _ => format!("'hash_fallback' must differ from 'hash_on' ('{on}')"),
                };
                self.d.err(&fallback_at, why);
            }
        }
        if let (Some((a, _)), Some((b, bf))) = (&hash_on_header, &hash_fallback_header) {
            if a.eq_ignore_ascii_case(b) {
                self.d.err(
                    bf,
                    "'hash_on_header' and 'hash_fallback_header' must be different",
                );
            }
        }

        if let Some(targets) = o.get("targets") {
            for item in targets.seq(&mut self.d).unwrap_or_default() {
                self.target(item, Link::Nested(idx));
            }
        }
        let origin = Self::origin(&o, name_at, id_at);
        o.finish(&mut self.d);
        self.raw.upstreams.push(RawUpstream {
            upstream: Upstream {
                meta,
                name,
                algorithm,
                hash_on,
                hash_fallback,
                hash_on_header: hash_on_header.map(|(s, _)| s),
                hash_fallback_header: hash_fallback_header.map(|(s, _)| s),
                hash_on_cookie,
                hash_on_cookie_path,
                slots,
                host_header,
                healthchecks,
                targets: Vec::new(),
            },
            origin,
        });
    }

    fn healthchecks(&mut self, f: &Field<'_>) -> Healthchecks {
        let mut hc = Healthchecks::default();
        let Some(mut o) = f.obj(&mut self.d) else {
            return hc;
        };
        if let Some(af) = o.get("active") {
            self.active(&af, &mut hc.active);
        }
        if let Some(pf) = o.get("passive") {
            self.passive(&pf, &mut hc.passive);
        }
        if let Some(t) = o
            .get("threshold")
            .and_then(|f| f.num(&mut self.d, 0.0, 100.0))
        {
            hc.threshold = t;
        }
        o.finish(&mut self.d);
        hc
    }

    fn active(&mut self, f: &Field<'_>, a: &mut ActiveHealthcheck) {
        let Some(mut o) = f.obj(&mut self.d) else {
            return;
        };
        if let Some(v) = self.check_type(&mut o) {
            a.kind = v;
        }
        if let Some(v) = o
            .get("timeout")
            .and_then(|f| f.num(&mut self.d, 0.0, SECONDS_MAX))
        {
            a.timeout_secs = v;
        }
        if let Some(v) = o
            .get("concurrency")
            .and_then(|f| f.int(&mut self.d, 1, 2_147_483_648))
        {
            a.concurrency = v as u32;
        }
        if let Some(f) = o.get("http_path") {
            if let Some(s) = f.str(&mut self.d) {
                match check::path(&s) {
                    Ok(()) => a.http_path = s,
                    Err(e) => self.d.err(&f.at(), e),
                }
            }
        }
        if let Some(v) = o
            .get("https_verify_certificate")
            .and_then(|f| f.bool(&mut self.d))
        {
            a.https_verify_certificate = v;
        }
        if let Some(f) = o.get("https_sni") {
            if let Some(s) = f.str(&mut self.d) {
                match check::sni(&s) {
                    Ok(()) => a.https_sni = Some(s),
                    Err(e) => self.d.err(&f.at(), e),
                }
            }
        }
        if let Some(f) = o.get("headers") {
            for (key, vf) in f.entries(&mut self.d).unwrap_or_default() {
                if let Some(values) = vf.str_list(&mut self.d) {
                    a.headers.insert(
                        key.text.clone(),
                        values.into_iter().map(|(s, _)| s).collect(),
                    );
                }
            }
        }
        if let Some(hf) = o.get("healthy") {
            if let Some(mut h) = hf.obj(&mut self.d) {
                if let Some(v) = self.interval(&mut h) {
                    a.healthy.interval_secs = v;
                }
                if let Some(v) = self.statuses(&mut h) {
                    a.healthy.http_statuses = v;
                }
                if let Some(v) = self.counter(&mut h, "successes") {
                    a.healthy.successes = v;
                }
                h.finish(&mut self.d);
            }
        }
        if let Some(uf) = o.get("unhealthy") {
            if let Some(mut u) = uf.obj(&mut self.d) {
                if let Some(v) = self.interval(&mut u) {
                    a.unhealthy.interval_secs = v;
                }
                if let Some(v) = self.statuses(&mut u) {
                    a.unhealthy.http_statuses = v;
                }
                if let Some(v) = self.counter(&mut u, "tcp_failures") {
                    a.unhealthy.tcp_failures = v;
                }
                if let Some(v) = self.counter(&mut u, "timeouts") {
                    a.unhealthy.timeouts = v;
                }
                if let Some(v) = self.counter(&mut u, "http_failures") {
                    a.unhealthy.http_failures = v;
                }
                u.finish(&mut self.d);
            }
        }
        o.finish(&mut self.d);
    }

    fn passive(&mut self, f: &Field<'_>, p: &mut PassiveHealthcheck) {
        let Some(mut o) = f.obj(&mut self.d) else {
            return;
        };
        if let Some(v) = self.check_type(&mut o) {
            p.kind = v;
        }
        if let Some(hf) = o.get("healthy") {
            if let Some(mut h) = hf.obj(&mut self.d) {
                if let Some(v) = self.statuses(&mut h) {
                    p.healthy.http_statuses = v;
                }
                if let Some(v) = self.counter(&mut h, "successes") {
                    p.healthy.successes = v;
                }
                h.finish(&mut self.d);
            }
        }
        if let Some(uf) = o.get("unhealthy") {
            if let Some(mut u) = uf.obj(&mut self.d) {
                if let Some(v) = self.statuses(&mut u) {
                    p.unhealthy.http_statuses = v;
                }
                if let Some(v) = self.counter(&mut u, "tcp_failures") {
                    p.unhealthy.tcp_failures = v;
                }
                if let Some(v) = self.counter(&mut u, "timeouts") {
                    p.unhealthy.timeouts = v;
                }
                if let Some(v) = self.counter(&mut u, "http_failures") {
                    p.unhealthy.http_failures = v;
                }
                u.finish(&mut self.d);
            }
        }
        o.finish(&mut self.d);
    }

    fn check_type(&mut self, o: &mut Obj<'_>) -> Option<HealthcheckType> {
        o.get("type")
            .and_then(|f| f.one_of(&mut self.d, "health check type", CHECK_TYPES, &[]))
    }

    fn interval(&mut self, o: &mut Obj<'_>) -> Option<f64> {
        o.get("interval")
            .and_then(|f| f.num(&mut self.d, 0.0, SECONDS_MAX))
    }

    fn counter(&mut self, o: &mut Obj<'_>, name: &'static str) -> Option<u32> {
        o.get(name)
            .and_then(|f| f.int(&mut self.d, 0, COUNTER_MAX))
            .map(|v| v as u32)
    }

    fn statuses(&mut self, o: &mut Obj<'_>) -> Option<Vec<u16>> {
        let f = o.get("http_statuses")?;
        let items = f.seq(&mut self.d)?;
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match item.int(&mut self.d, 100, 999) {
                Some(v) => out.push(v as u16),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn target(&mut self, f: Field<'_>, parent: Link) {
        let Some(mut o) = f.obj(&mut self.d) else {
            return;
        };
        let (meta, id_at) = self.meta(&mut o);
        let upstream = self.link(&mut o, "upstream", parent, true);
        if matches!(upstream, Link::None) {
            self.d.err(&o.at(), "missing required field 'upstream'");
        }
        let mut host = String::new();
        let mut port = DEFAULT_TARGET_PORT;
        let mut name_at = None;
        if let Some(tf) = o.require(&mut self.d, "target") {
            if let Some(s) = tf.str(&mut self.d) {
                match check::host_port(&s) {
                    Ok(hp) => {
                        host = hp.host.to_ascii_lowercase();
                        port = hp.port.unwrap_or(DEFAULT_TARGET_PORT);
                        name_at = Some(tf.at());
                    }
                    Err(_) => self.d.err(
                        &tf.at(),
                        format!("Invalid target ('{s}'); not a valid hostname or ip address"),
                    ),
                }
            }
        }
        let weight = o
            .get("weight")
            .and_then(|f| f.int(&mut self.d, 0, WEIGHT_MAX))
            .map_or(100, |v| v as u32);
        let origin = Self::origin(&o, name_at, id_at);
        o.finish(&mut self.d);
        self.raw.targets.push(RawTarget {
            target: Target {
                meta,
                host,
                port,
                weight,
            },
            origin,
            upstream,
        });
    }
}

pub(crate) fn hash_on_name(h: HashOn) -> &'static str {
    HASH_ON
        .iter()
        .find(|(_, v)| *v == h)
        .map_or("none", |(n, _)| n)
}

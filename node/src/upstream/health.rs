//! Per-address health state and Kong's (lua-resty-healthcheck's) counter
//! rules, shared by active probes and passive reports.
//!
//! Rules, per address:
//! - a report whose threshold ("limit") is 0 is ignored entirely;
//! - a success on a fully healthy address, or a failure on a fully
//!   unhealthy one, changes nothing;
//! - otherwise a success bumps the success counter and clears the failure
//!   counters; a failure bumps its own counter (http / tcp / timeout) and
//!   clears the success counter;
//! - reaching the limit flips the state and clears every counter.
//!
//! Active and passive checks share the counters but use their own limits.

use gateway_config::{HealthcheckType, Healthchecks};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A set of HTTP status codes (0..1024) as a bitset.
#[derive(Clone, Debug, Default)]
pub(crate) struct StatusSet([u64; 16]);

impl StatusSet {
    pub(crate) fn new(statuses: &[u16]) -> Self {
        let mut s = StatusSet::default();
        for &st in statuses {
            if (st as usize) < 1024 {
                s.0[st as usize / 64] |= 1 << (st % 64);
            }
        }
        s
    }
    /// Every status.
    pub(crate) fn all() -> Self {
        StatusSet([u64::MAX; 16])
    }
    pub(crate) fn contains(&self, st: u16) -> bool {
        (st as usize) < 1024 && self.0[st as usize / 64] & (1 << (st % 64)) != 0
    }
}

/// What one observation says about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Success,
    HttpFailure,
    TcpFailure,
    Timeout,
}

/// Limits for one source of observations (active or passive).
#[derive(Debug, Clone, Default)]
pub(crate) struct Limits {
    pub successes: u32,
    pub http_failures: u32,
    pub tcp_failures: u32,
    pub timeouts: u32,
    pub healthy_statuses: StatusSet,
    pub unhealthy_statuses: StatusSet,
}

impl Limits {
    /// Classify an HTTP status (healthy list first, as Kong does); `None`
    /// when the status is in neither list.
    pub(crate) fn classify(&self, status: u16) -> Option<Event> {
        if self.healthy_statuses.contains(status) {
            Some(Event::Success)
        } else if self.unhealthy_statuses.contains(status) {
            Some(Event::HttpFailure)
        } else {
            None
        }
    }
    fn limit(&self, ev: Event) -> u32 {
        match ev {
            Event::Success => self.successes,
            Event::HttpFailure => self.http_failures,
            Event::TcpFailure => self.tcp_failures,
            Event::Timeout => self.timeouts,
        }
    }
}

/// Which kind of active probe to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    Tcp,
    Http,
    /// HTTP over TLS (`type: https`): a failed handshake counts as a TCP
    /// failure, as in Kong.
    Https,
    /// The gRPC health-checking protocol (`grpc.health.v1.Health/Check`)
    /// over h2c (`type: grpc`) or TLS with ALPN h2 (`type: grpcs`).
    Grpc,
    Grpcs,
}

/// Converts a config number of seconds into a Duration; 0, negative,
/// NaN or absurd values mean "off" (None).
pub(crate) fn secs(v: f64) -> Option<Duration> {
    if v.is_nan() || v <= 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(v).ok()
}

/// The health-check settings of one balancer, precomputed from the config.
#[derive(Debug, Clone)]
pub(crate) struct HealthConfig {
    /// Kong's `is_upstream_using_healthcheck`: false means every address is
    /// reported `HEALTHCHECKS_OFF` and reports are ignored.
    pub enabled: bool,
    pub threshold: f64,
    pub active: Limits,
    pub passive: Limits,
    pub healthy_interval: Option<Duration>,
    pub unhealthy_interval: Option<Duration>,
    pub probe: ProbeKind,
    pub timeout: Duration,
    pub concurrency: usize,
    pub http_path: String,
    pub headers: Vec<(String, String)>,
    /// `https` probes: the client configuration (Mozilla roots plus the
    /// `ca_certificates` of the services using this upstream, or no
    /// verification with `https_verify_certificate: false`).
    pub tls: Option<std::sync::Arc<crate::proxy::tls::UpstreamTls>>,
    /// `https_sni`: the name sent and verified (default: the probe's host).
    pub https_sni: Option<String>,
}

impl HealthConfig {
    /// No health checks (implicit service balancers, or none configured).
    pub(crate) fn off() -> Self {
        HealthConfig {
            enabled: false,
            threshold: 0.0,
            active: Limits::default(),
            passive: Limits::default(),
            healthy_interval: None,
            unhealthy_interval: None,
            probe: ProbeKind::Tcp,
            timeout: Duration::from_secs(1),
            concurrency: 1,
            http_path: "/".into(),
            headers: Vec::new(),
            tls: None,
            https_sni: None,
        }
    }

    /// `ca_pems`: CA certificates trusted by `https` probes besides the
    /// Mozilla roots.
    pub(crate) fn from_config(upstream: &str, hc: &Healthchecks, ca_pems: &[String]) -> Self {
        let a = &hc.active;
        let p = &hc.passive;
        let healthy_interval = secs(a.healthy.interval_secs);
        let unhealthy_interval = secs(a.unhealthy.interval_secs);
        // https and grpcs probe over TLS (grpcs with ALPN h2), with the
        // same certificate settings.
        let (mut probe, tls_h2) = match a.kind {
            HealthcheckType::Tcp => (ProbeKind::Tcp, None),
            HealthcheckType::Http => (ProbeKind::Http, None),
            HealthcheckType::Https => (ProbeKind::Https, Some(false)),
            HealthcheckType::Grpc => (ProbeKind::Grpc, None),
            HealthcheckType::Grpcs => (ProbeKind::Grpcs, Some(true)),
        };
        let mut tls = None;
        if let Some(h2) = tls_h2 {
            let pems: Vec<&str> = ca_pems.iter().map(String::as_str).collect();
            match crate::proxy::tls::upstream_tls(a.https_verify_certificate, &pems, h2) {
                Ok(t) => tls = Some(std::sync::Arc::new(t)),
                Err(e) => {
                    tracing::error!(upstream, kind = ?a.kind, error = %e, "TLS health checks: bad CA certificates; probing TCP connectivity only");
                    probe = ProbeKind::Tcp;
                }
            }
        }
        let enabled = healthy_interval.is_some()
            || unhealthy_interval.is_some()
            || p.unhealthy.tcp_failures != 0
            || p.unhealthy.timeouts != 0
            || p.unhealthy.http_failures != 0;
        let threshold = if hc.threshold.is_finite() {
            hc.threshold.clamp(0.0, 100.0)
        } else {
            0.0
        };
        let mut path = a.http_path.clone();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        // Strip characters that would break the request line.
        path.retain(|c| !c.is_whitespace() && !c.is_control());
        let headers = a
            .headers
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
            .filter(|(k, v)| {
                !k.is_empty()
                    && k.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                    && !v.bytes().any(|b| b == b'\r' || b == b'\n')
            })
            .collect();
        // Kong's `passive.type: tcp` does not interpret HTTP statuses: any
        // response means the connection worked, a success. (`http`,
        // `https` and the gRPC types use the status lists.)
        let (healthy_statuses, unhealthy_statuses) = if p.kind == HealthcheckType::Tcp {
            (StatusSet::all(), StatusSet::default())
        } else {
            (
                StatusSet::new(&p.healthy.http_statuses),
                StatusSet::new(&p.unhealthy.http_statuses),
            )
        };
        HealthConfig {
            enabled,
            threshold,
            active: Limits {
                successes: a.healthy.successes,
                http_failures: a.unhealthy.http_failures,
                tcp_failures: a.unhealthy.tcp_failures,
                timeouts: a.unhealthy.timeouts,
                healthy_statuses: StatusSet::new(&a.healthy.http_statuses),
                unhealthy_statuses: StatusSet::new(&a.unhealthy.http_statuses),
            },
            passive: Limits {
                successes: p.healthy.successes,
                http_failures: p.unhealthy.http_failures,
                tcp_failures: p.unhealthy.tcp_failures,
                timeouts: p.unhealthy.timeouts,
                healthy_statuses,
                unhealthy_statuses,
            },
            healthy_interval,
            unhealthy_interval,
            probe,
            timeout: secs(a.timeout_secs).unwrap_or(Duration::from_secs(1)),
            concurrency: a.concurrency.clamp(1, 1024) as usize,
            http_path: path,
            headers,
            tls,
            https_sni: a.https_sni.clone(),
        }
    }

    pub(crate) fn has_active(&self) -> bool {
        self.healthy_interval.is_some() || self.unhealthy_interval.is_some()
    }
}

#[derive(Debug, Default)]
struct Counters {
    success: u32,
    http: u32,
    tcp: u32,
    timeout: u32,
}

/// Health of one address.
#[derive(Debug)]
pub(crate) struct AddrHealth {
    healthy: AtomicBool,
    /// True while any counter is non-zero (lets the common "success on a
    /// healthy address" case skip the lock).
    dirty: AtomicBool,
    counters: Mutex<Counters>,
}

impl Default for AddrHealth {
    fn default() -> Self {
        AddrHealth {
            healthy: AtomicBool::new(true),
            dirty: AtomicBool::new(false),
            counters: Mutex::new(Counters::default()),
        }
    }
}

impl AddrHealth {
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Apply one observation. Returns `Some(new_state)` when it flipped.
    pub(crate) fn record(&self, ev: Event, limits: &Limits) -> Option<bool> {
        let limit = limits.limit(ev);
        if limit == 0 {
            return None;
        }
        let success = ev == Event::Success;
        // Fast path: nothing to count.
        if success == self.is_healthy() && !self.dirty.load(Ordering::Relaxed) {
            return None;
        }
        let mut c = self.counters.lock();
        let healthy = self.healthy.load(Ordering::Relaxed);
        if success == healthy {
            // Kong: a success on a healthy target (or failure on an
            // unhealthy one) is not counted. A success on a healthy target
            // still clears partial failure counts ("mostly healthy").
            if success {
                c.http = 0;
                c.tcp = 0;
                c.timeout = 0;
                self.dirty.store(c.success != 0, Ordering::Relaxed);
            } else {
                c.success = 0;
                self.dirty.store(
                    c.http != 0 || c.tcp != 0 || c.timeout != 0,
                    Ordering::Relaxed,
                );
            }
            return None;
        }
        let n = match ev {
            Event::Success => {
                c.http = 0;
                c.tcp = 0;
                c.timeout = 0;
                c.success += 1;
                c.success
            }
            Event::HttpFailure => {
                c.success = 0;
                c.http += 1;
                c.http
            }
            Event::TcpFailure => {
                c.success = 0;
                c.tcp += 1;
                c.tcp
            }
            Event::Timeout => {
                c.success = 0;
                c.timeout += 1;
                c.timeout
            }
        };
        if n >= limit {
            *c = Counters::default();
            self.dirty.store(false, Ordering::Relaxed);
            self.healthy.store(success, Ordering::Relaxed);
            Some(success)
        } else {
            self.dirty.store(true, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            successes: 2,
            http_failures: 3,
            tcp_failures: 1,
            timeouts: 0,
            healthy_statuses: StatusSet::new(&[200]),
            unhealthy_statuses: StatusSet::new(&[500]),
        }
    }

    #[test]
    fn a_tcp_passive_check_counts_any_response_as_a_success() {
        let mut hc = Healthchecks::default();
        hc.passive.unhealthy.http_failures = 1;
        let http = HealthConfig::from_config("u", &hc, &[]);
        assert_eq!(http.passive.classify(500), Some(Event::HttpFailure));
        assert_eq!(http.passive.classify(200), Some(Event::Success));
        assert_eq!(http.passive.classify(404), None);
        hc.passive.kind = HealthcheckType::Tcp;
        let tcp = HealthConfig::from_config("u", &hc, &[]);
        for status in [200, 404, 500, 503, 101, 999] {
            assert_eq!(
                tcp.passive.classify(status),
                Some(Event::Success),
                "{status}"
            );
        }
        // Active checks keep their own lists.
        assert_eq!(tcp.active.classify(500), Some(Event::HttpFailure));
    }

    #[test]
    fn counters_follow_kong_rules() {
        let h = AddrHealth::default();
        let l = limits();
        assert_eq!(h.record(Event::HttpFailure, &l), None);
        assert_eq!(h.record(Event::HttpFailure, &l), None);
        // A success clears the failure counters.
        assert_eq!(h.record(Event::Success, &l), None);
        assert_eq!(h.record(Event::HttpFailure, &l), None);
        assert_eq!(h.record(Event::HttpFailure, &l), None);
        assert_eq!(h.record(Event::HttpFailure, &l), Some(false));
        assert!(!h.is_healthy());
        // Timeouts have limit 0: ignored.
        assert_eq!(h.record(Event::Timeout, &l), None);
        assert_eq!(h.record(Event::Success, &l), None);
        // A failure resets the success counter.
        assert_eq!(h.record(Event::HttpFailure, &l), None);
        assert_eq!(h.record(Event::Success, &l), None);
        assert_eq!(h.record(Event::Success, &l), Some(true));
        assert_eq!(h.record(Event::TcpFailure, &l), Some(false));
    }

    #[test]
    fn status_set_and_classify() {
        let l = limits();
        assert_eq!(l.classify(200), Some(Event::Success));
        assert_eq!(l.classify(500), Some(Event::HttpFailure));
        assert_eq!(l.classify(404), None);
        assert!(!StatusSet::new(&[2000]).contains(2000));
    }

    #[test]
    fn secs_rejects_bad_values() {
        assert_eq!(secs(0.0), None);
        assert_eq!(secs(-1.0), None);
        assert_eq!(secs(f64::NAN), None);
        assert_eq!(secs(1e300), None);
        assert_eq!(secs(0.5), Some(Duration::from_millis(500)));
    }
}

//! Balancer tests against real servers on loopback (HTTP backends and a
//! small authoritative DNS server). State changes are awaited with bounded
//! polling loops; nothing sleeps in place of synchronization.

use super::*;
use gateway_config::{
    Algorithm, HashOn, HealthcheckType, Healthchecks, Meta, Protocol, Service, Target,
};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use std::collections::HashMap as Map;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize};
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;

// ---------- config builders ----------

/// Kong's defaults (the config crate's `Default`): all checks off.
fn healthchecks() -> Healthchecks {
    Healthchecks::default()
}

fn upstream(name: &str, targets: &[(&str, u16, u32)]) -> Upstream {
    Upstream {
        meta: Meta::default(),
        name: name.into(),
        algorithm: Algorithm::RoundRobin,
        hash_on: HashOn::None,
        hash_fallback: HashOn::None,
        hash_on_header: None,
        hash_fallback_header: None,
        hash_on_cookie: None,
        hash_on_cookie_path: "/".into(),
        slots: 10000,
        host_header: None,
        healthchecks: healthchecks(),
        targets: targets
            .iter()
            .map(|&(host, port, weight)| Target {
                meta: Meta::default(),
                host: host.into(),
                port,
                weight,
            })
            .collect(),
    }
}

fn service(host: &str, port: u16, upstream: Option<usize>) -> Service {
    Service {
        meta: Meta::default(),
        name: None,
        protocol: Protocol::Http,
        host: host.into(),
        port,
        path: None,
        retries: 5,
        connect_timeout_ms: 60000,
        write_timeout_ms: 60000,
        read_timeout_ms: 60000,
        enabled: true,
        upstream,
        tls_verify: None,
        tls_verify_depth: None,
        ca_certificates: Vec::new(),
        client_certificate: None,
    }
}

fn config(upstreams: Vec<Upstream>, services: Vec<Service>) -> Config {
    Config {
        format_version: "3.0".into(),
        upstreams,
        services,
        ..Config::default()
    }
}

/// Build one upstream and return its balancer (and the balancer set,
/// which must stay alive for the checker to run).
fn one(mgr: &Arc<UpstreamManager>, u: Upstream) -> (Balancers, Arc<Balancer>) {
    let name = u.name.clone();
    let bs = mgr.build(&config(vec![u], vec![]));
    let b = bs.upstream(&name).expect("balancer").clone();
    (bs, b)
}

static NO_HEADERS: std::sync::LazyLock<HeaderMap> = std::sync::LazyLock::new(HeaderMap::new);

fn input() -> HashInput<'static> {
    HashInput {
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        headers: &NO_HEADERS,
        consumer: None,
        new_cookie: None,
    }
}

fn with_headers(h: &HeaderMap) -> HashInput<'_> {
    HashInput {
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        headers: h,
        consumer: None,
        new_cookie: None,
    }
}

/// Poll `f` every 10 ms until it holds or `secs` elapse.
async fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn target_health(b: &Balancer, i: usize) -> String {
    b.health_report()["data"][i]["health"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

// ---------- HTTP test backend ----------

/// A hyper HTTP/1 server on 127.0.0.1:0. `GET /slow` waits for `release`;
/// every other path answers `status`.
struct Backend {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    /// Requests seen, by path.
    hits: Arc<parking_lot::Mutex<Map<String, usize>>>,
    /// Last value of the `x-probe` header seen.
    probe_header: Arc<parking_lot::Mutex<Option<String>>>,
    in_flight_slow: Arc<AtomicUsize>,
    release: Arc<Notify>,
}

impl Backend {
    async fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let b = Backend {
            addr,
            status: Arc::new(AtomicU16::new(200)),
            hits: Arc::default(),
            probe_header: Arc::default(),
            in_flight_slow: Arc::default(),
            release: Arc::new(Notify::new()),
        };
        let (status, hits, probe_header, in_flight, release) = (
            b.status.clone(),
            b.hits.clone(),
            b.probe_header.clone(),
            b.in_flight_slow.clone(),
            b.release.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (status, hits, probe_header, in_flight, release) = (
                    status.clone(),
                    hits.clone(),
                    probe_header.clone(),
                    in_flight.clone(),
                    release.clone(),
                );
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let (status, hits, probe_header, in_flight, release) = (
                            status.clone(),
                            hits.clone(),
                            probe_header.clone(),
                            in_flight.clone(),
                            release.clone(),
                        );
                        async move {
                            let path = req.uri().path().to_string();
                            *hits.lock().entry(path.clone()).or_default() += 1;
                            if let Some(v) = req.headers().get("x-probe") {
                                *probe_header.lock() = v.to_str().ok().map(String::from);
                            }
                            if path == "/slow" {
                                in_flight.fetch_add(1, Ordering::SeqCst);
                                release.notified().await;
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                            }
                            let st = status.load(Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(st)
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        b
    }
    fn hits(&self, path: &str) -> usize {
        self.hits.lock().get(path).copied().unwrap_or(0)
    }
}

/// One HTTP/1 GET to `addr`; returns the status.
async fn http_get(addr: SocketAddr, path: &str) -> u16 {
    let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(sock))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

// ---------- round-robin ----------

#[tokio::test]
async fn round_robin_weighted_exact_counts() {
    let (a, b, c) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let mgr = UpstreamManager::new();
    let u = upstream(
        "rr",
        &[
            ("127.0.0.1", a.addr.port(), 300),
            ("127.0.0.1", b.addr.port(), 200),
            ("127.0.0.1", c.addr.port(), 100),
        ],
    );
    let (_bs, bal) = one(&mgr, u);
    let mut seq = Vec::new();
    for _ in 0..600 {
        seq.push(bal.pick(&input(), &[]).await.unwrap().addr);
    }
    let count = |s: &[SocketAddr], x: SocketAddr| s.iter().filter(|&&y| y == x).count();
    assert_eq!(
        (
            count(&seq, a.addr),
            count(&seq, b.addr),
            count(&seq, c.addr)
        ),
        (300, 200, 100)
    );
    // Smooth: every window of one wheel turn (6 picks) holds exactly 3/2/1.
    for w in seq.windows(6) {
        assert_eq!(
            (count(w, a.addr), count(w, b.addr), count(w, c.addr)),
            (3, 2, 1),
            "{w:?}"
        );
    }
    // The peers really serve.
    let p = bal.pick(&input(), &[]).await.unwrap();
    assert_eq!(http_get(p.addr, "/").await, 200);
    assert_eq!(&*p.host, "127.0.0.1");
}

#[tokio::test]
async fn weight_zero_target_is_never_picked() {
    let (a, b) = (Backend::start().await, Backend::start().await);
    let mgr = UpstreamManager::new();
    let (_bs, bal) = one(
        &mgr,
        upstream(
            "w0",
            &[
                ("127.0.0.1", a.addr.port(), 100),
                ("127.0.0.1", b.addr.port(), 0),
            ],
        ),
    );
    for _ in 0..50 {
        assert_eq!(bal.pick(&input(), &[]).await.unwrap().addr, a.addr);
    }
    // All weights 0: nothing to pick.
    let (_bs2, bal) = one(&mgr, upstream("w00", &[("127.0.0.1", a.addr.port(), 0)]));
    assert!(matches!(
        bal.pick(&input(), &[]).await,
        Err(BalancerError::NoHealthyTarget(_))
    ));
}

#[tokio::test]
async fn exclude_skips_tried_peers() {
    let (a, b, c) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let mgr = UpstreamManager::new();
    let targets = [
        ("127.0.0.1", a.addr.port(), 100),
        ("127.0.0.1", b.addr.port(), 100),
        ("127.0.0.1", c.addr.port(), 100),
    ];
    for alg in [
        Algorithm::RoundRobin,
        Algorithm::LeastConnections,
        Algorithm::ConsistentHashing,
    ] {
        let mut u = upstream("ex", &targets);
        u.algorithm = alg;
        u.hash_on = HashOn::Ip;
        let (_bs, bal) = one(&mgr, u);
        for _ in 0..20 {
            let first = bal.pick(&input(), &[]).await.unwrap().addr;
            let second = bal.pick(&input(), &[first]).await.unwrap().addr;
            assert_ne!(first, second, "{alg:?}");
            let third = bal.pick(&input(), &[first, second]).await.unwrap().addr;
            assert!(third != first && third != second, "{alg:?}");
            // Everything tried: a tried healthy peer is still returned.
            let again = bal
                .pick(&input(), &[a.addr, b.addr, c.addr])
                .await
                .unwrap()
                .addr;
            assert!([a.addr, b.addr, c.addr].contains(&again));
        }
    }
}

// ---------- least-connections ----------

#[tokio::test]
async fn least_connections_prefers_idle_peer() {
    let (a, b) = (Backend::start().await, Backend::start().await);
    let mgr = UpstreamManager::new();
    let mut u = upstream(
        "lc",
        &[
            ("127.0.0.1", a.addr.port(), 100),
            ("127.0.0.1", b.addr.port(), 100),
        ],
    );
    u.algorithm = Algorithm::LeastConnections;
    let (_bs, bal) = one(&mgr, u);

    // Two long requests in flight; each pick goes to the idle peer, so they
    // land on different backends.
    let mut long = Vec::new();
    for _ in 0..2 {
        let peer = bal.pick(&input(), &[]).await.unwrap();
        long.push(tokio::spawn(async move {
            let st = http_get(peer.addr, "/slow").await;
            drop(peer);
            st
        }));
    }
    wait_until(5, "long requests in flight", || {
        a.in_flight_slow.load(Ordering::SeqCst) == 1 && b.in_flight_slow.load(Ordering::SeqCst) == 1
    })
    .await;
    // A third long request goes somewhere; from then on that backend holds
    // two and every short request goes to the other one.
    let third = bal.pick(&input(), &[]).await.unwrap();
    let busy = third.addr;
    let (busy_be, idle_be) = if busy == a.addr { (&a, &b) } else { (&b, &a) };
    long.push(tokio::spawn(async move {
        let st = http_get(third.addr, "/slow").await;
        drop(third);
        st
    }));
    wait_until(5, "third long request", || {
        busy_be.in_flight_slow.load(Ordering::SeqCst) == 2
    })
    .await;
    for _ in 0..10 {
        let p = bal.pick(&input(), &[]).await.unwrap();
        assert_eq!(p.addr, idle_be.addr);
        assert_eq!(http_get(p.addr, "/short").await, 200);
    }
    assert_eq!(idle_be.hits("/short"), 10);
    assert_eq!(busy_be.hits("/short"), 0);

    // Release the long requests; once their peers are dropped the counts
    // are back to zero and picks alternate again.
    wait_until(5, "long requests released", || {
        a.release.notify_waiters();
        b.release.notify_waiters();
        a.in_flight_slow.load(Ordering::SeqCst) + b.in_flight_slow.load(Ordering::SeqCst) == 0
    })
    .await;
    for h in long {
        assert_eq!(h.await.unwrap(), 200);
    }
    let p1 = bal.pick(&input(), &[]).await.unwrap();
    let p2 = bal.pick(&input(), &[]).await.unwrap();
    assert_ne!(p1.addr, p2.addr, "both idle -> one request each");
}

// ---------- consistent hashing ----------

#[tokio::test]
async fn hashing_by_header_is_stable_and_spreads() {
    let bes = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let mgr = UpstreamManager::new();
    let targets: Vec<(&str, u16, u32)> = bes
        .iter()
        .map(|b| ("127.0.0.1", b.addr.port(), 100))
        .collect();
    let mut u = upstream("hash", &targets);
    u.algorithm = Algorithm::ConsistentHashing;
    u.hash_on = HashOn::Header;
    u.hash_on_header = Some("x-user".into());
    let (_bs, bal) = one(&mgr, u.clone());
    let mut per_backend: Map<SocketAddr, usize> = Map::new();
    let mut first: Map<String, SocketAddr> = Map::new();
    for i in 0..300 {
        let mut h = HeaderMap::new();
        h.insert(
            "x-user",
            HeaderValue::from_str(&format!("user-{i}")).unwrap(),
        );
        let p1 = bal.pick(&with_headers(&h), &[]).await.unwrap().addr;
        let p2 = bal.pick(&with_headers(&h), &[]).await.unwrap().addr;
        assert_eq!(p1, p2);
        *per_backend.entry(p1).or_default() += 1;
        first.insert(format!("user-{i}"), p1);
    }
    assert_eq!(per_backend.len(), 3, "{per_backend:?}");
    assert!(per_backend.values().all(|&n| n >= 50), "{per_backend:?}");

    // A rebuilt balancer (another node, or after a reload) maps the same.
    let mgr2 = UpstreamManager::new();
    let (_bs2, bal2) = one(&mgr2, u);
    for (user, addr) in &first {
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_str(user).unwrap());
        assert_eq!(bal2.pick(&with_headers(&h), &[]).await.unwrap().addr, *addr);
    }

    // Excluding the owner walks on to one fixed next peer.
    let mut h = HeaderMap::new();
    h.insert("x-user", HeaderValue::from_static("user-7"));
    let owner = first["user-7"];
    let next = bal.pick(&with_headers(&h), &[owner]).await.unwrap().addr;
    assert_ne!(next, owner);
    for _ in 0..5 {
        assert_eq!(
            bal.pick(&with_headers(&h), &[owner]).await.unwrap().addr,
            next
        );
    }
}

#[tokio::test]
async fn hashing_falls_back_when_value_missing() {
    let bes = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let mgr = UpstreamManager::new();
    let targets: Vec<(&str, u16, u32)> = bes
        .iter()
        .map(|b| ("127.0.0.1", b.addr.port(), 100))
        .collect();
    let mut u = upstream("hashfb", &targets);
    u.algorithm = Algorithm::ConsistentHashing;
    u.hash_on = HashOn::Header;
    u.hash_on_header = Some("x-user".into());
    u.hash_fallback = HashOn::Ip;
    let (_bs, bal) = one(&mgr, u.clone());
    // No header: hashed by client IP, stable per IP, spread over IPs.
    let mut seen = std::collections::HashSet::new();
    for i in 0..60u8 {
        let inp = HashInput {
            client_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)),
            headers: &NO_HEADERS,
            consumer: None,
            new_cookie: None,
        };
        let p = bal.pick(&inp, &[]).await.unwrap().addr;
        assert_eq!(bal.pick(&inp, &[]).await.unwrap().addr, p);
        seen.insert(p);
    }
    assert_eq!(seen.len(), 3);

    // Fallback to consumer; missing consumer too -> round-robin.
    u.name = "hashfb2".into();
    u.hash_fallback = HashOn::Consumer;
    let (_bs2, bal) = one(&mgr, u.clone());
    let c = HashInput {
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        headers: &NO_HEADERS,
        consumer: Some("alice"),
        new_cookie: None,
    };
    let pa = bal.pick(&c, &[]).await.unwrap().addr;
    for _ in 0..5 {
        assert_eq!(bal.pick(&c, &[]).await.unwrap().addr, pa);
    }
    let mut rr = std::collections::HashSet::new();
    for _ in 0..3 {
        rr.insert(bal.pick(&input(), &[]).await.unwrap().addr);
    }
    assert_eq!(rr.len(), 3, "no hash value -> round-robin");

    // Cookie.
    u.name = "hashcookie".into();
    u.hash_on = HashOn::Cookie;
    u.hash_on_cookie = Some("sess".into());
    u.hash_fallback = HashOn::None;
    let (_bs3, bal) = one(&mgr, u);
    let mut by_cookie = std::collections::HashSet::new();
    for i in 0..30 {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            HeaderValue::from_str(&format!("a=1; sess=s{i}; b=2")).unwrap(),
        );
        let p = bal.pick(&with_headers(&h), &[]).await.unwrap().addr;
        assert_eq!(bal.pick(&with_headers(&h), &[]).await.unwrap().addr, p);
        by_cookie.insert(p);
    }
    assert_eq!(by_cookie.len(), 3);
}

// ---------- passive health checks ----------

#[tokio::test]
async fn passive_marks_unhealthy_after_n_failures() {
    let (a, b) = (Backend::start().await, Backend::start().await);
    let mgr = UpstreamManager::new();
    let mut u = upstream(
        "passive",
        &[
            ("127.0.0.1", a.addr.port(), 100),
            ("127.0.0.1", b.addr.port(), 100),
        ],
    );
    u.healthchecks.passive.unhealthy.http_failures = 3;
    u.healthchecks.passive.unhealthy.tcp_failures = 2;
    u.healthchecks.passive.healthy.successes = 2;
    let (_bs, bal) = one(&mgr, u);
    assert_eq!(target_health(&bal, 0), "HEALTHY");

    let peer_a = loop {
        let p = bal.pick(&input(), &[]).await.unwrap();
        if p.addr == a.addr {
            break p;
        }
    };
    bal.report(&peer_a, Outcome::Response(500));
    bal.report(&peer_a, Outcome::Response(404)); // in neither passive list: ignored
    bal.report(&peer_a, Outcome::Response(503));
    assert_eq!(target_health(&bal, 0), "HEALTHY", "2 of 3 failures");
    bal.report(&peer_a, Outcome::Response(429));
    assert_eq!(target_health(&bal, 0), "UNHEALTHY");
    assert_eq!(target_health(&bal, 1), "HEALTHY");
    for _ in 0..20 {
        assert_eq!(bal.pick(&input(), &[]).await.unwrap().addr, b.addr);
    }
    // Successes bring it back (passive.healthy.successes = 2).
    bal.report(&peer_a, Outcome::Response(200));
    assert_eq!(target_health(&bal, 0), "UNHEALTHY");
    bal.report(&peer_a, Outcome::Response(204));
    assert_eq!(target_health(&bal, 0), "HEALTHY");

    // TCP failures, and a success in between resets the count.
    bal.report(&peer_a, Outcome::TcpFailure);
    bal.report(&peer_a, Outcome::Response(200));
    bal.report(&peer_a, Outcome::TcpFailure);
    assert_eq!(target_health(&bal, 0), "HEALTHY");
    bal.report(&peer_a, Outcome::TcpFailure);
    assert_eq!(target_health(&bal, 0), "UNHEALTHY");
    // Timeouts have threshold 0: ignored.
    let peer_b = bal.pick(&input(), &[]).await.unwrap();
    for _ in 0..10 {
        bal.report(&peer_b, Outcome::Timeout);
    }
    assert_eq!(target_health(&bal, 1), "HEALTHY");
    // Both unhealthy -> 503.
    for _ in 0..3 {
        bal.report(&peer_b, Outcome::Response(500));
    }
    assert!(
        matches!(bal.pick(&input(), &[]).await, Err(BalancerError::NoHealthyTarget(n)) if n == "passive")
    );
    assert!(!bal.is_healthy());
    assert_eq!(bal.balancer_health()["health"], "UNHEALTHY");
}

#[tokio::test]
async fn threshold_makes_upstream_unhealthy() {
    let bes = [
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    ];
    let mgr = UpstreamManager::new();
    let targets: Vec<(&str, u16, u32)> = bes
        .iter()
        .map(|b| ("127.0.0.1", b.addr.port(), 100))
        .collect();
    let mut u = upstream("thr", &targets);
    u.healthchecks.passive.unhealthy.http_failures = 1;
    u.healthchecks.threshold = 60.0;
    let (_bs, bal) = one(&mgr, u);
    let mut peers = Map::new();
    while peers.len() < 4 {
        let p = bal.pick(&input(), &[]).await.unwrap();
        peers.entry(p.addr).or_insert(p);
    }
    bal.report(&peers[&bes[0].addr], Outcome::Response(500));
    assert!(bal.is_healthy(), "75% >= 60%");
    assert_ne!(bal.pick(&input(), &[]).await.unwrap().addr, bes[0].addr);
    bal.report(&peers[&bes[1].addr], Outcome::Response(500));
    assert!(!bal.is_healthy(), "50% < 60%");
    assert!(matches!(
        bal.pick(&input(), &[]).await,
        Err(BalancerError::NoHealthyTarget(_))
    ));
    let bh = bal.balancer_health();
    assert_eq!(bh["health"], "UNHEALTHY");
    assert_eq!(
        bh["details"]["weight"],
        serde_json::json!({"total": 400, "available": 200, "unavailable": 200})
    );
}

// ---------- active health checks ----------

#[tokio::test]
async fn active_http_check_follows_backend_status() {
    let (a, b) = (Backend::start().await, Backend::start().await);
    let mgr = UpstreamManager::new();
    let mut u = upstream(
        "active",
        &[
            ("127.0.0.1", a.addr.port(), 100),
            ("127.0.0.1", b.addr.port(), 100),
        ],
    );
    let hc = &mut u.healthchecks.active;
    hc.http_path = "/status".into();
    hc.headers.insert("x-probe".into(), vec!["yes".into()]);
    hc.healthy.interval_secs = 0.05;
    hc.unhealthy.interval_secs = 0.05;
    hc.healthy.successes = 2;
    hc.unhealthy.http_failures = 2;
    let (_bs, bal) = one(&mgr, u);
    assert_eq!(mgr.active_checkers(), 1);

    wait_until(5, "first probes", || {
        a.hits("/status") >= 2 && b.hits("/status") >= 2
    })
    .await;
    assert_eq!(a.probe_header.lock().as_deref(), Some("yes"));
    assert_eq!(target_health(&bal, 0), "HEALTHY");

    a.status.store(500, Ordering::SeqCst);
    wait_until(5, "a unhealthy", || target_health(&bal, 0) == "UNHEALTHY").await;
    assert_eq!(target_health(&bal, 1), "HEALTHY");
    for _ in 0..10 {
        assert_eq!(bal.pick(&input(), &[]).await.unwrap().addr, b.addr);
    }
    let report = bal.health_report();
    assert_eq!(
        report["data"][0]["data"]["addresses"][0]["health"],
        "UNHEALTHY"
    );

    a.status.store(200, Ordering::SeqCst);
    wait_until(5, "a healthy again", || target_health(&bal, 0) == "HEALTHY").await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(bal.pick(&input(), &[]).await.unwrap().addr);
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn active_tcp_check_marks_closed_port_unhealthy() {
    let live = Backend::start().await;
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let mgr = UpstreamManager::new();
    let mut u = upstream(
        "tcp",
        &[
            ("127.0.0.1", live.addr.port(), 100),
            ("127.0.0.1", closed.port(), 100),
        ],
    );
    let hc = &mut u.healthchecks.active;
    hc.kind = HealthcheckType::Tcp;
    hc.healthy.interval_secs = 0.05;
    hc.unhealthy.tcp_failures = 1;
    let (_bs, bal) = one(&mgr, u);
    wait_until(5, "closed port unhealthy", || {
        target_health(&bal, 1) == "UNHEALTHY"
    })
    .await;
    assert_eq!(target_health(&bal, 0), "HEALTHY");
    assert_eq!(live.hits("/"), 0, "tcp checks send no HTTP request");
    for _ in 0..10 {
        assert_eq!(bal.pick(&input(), &[]).await.unwrap().addr, live.addr);
    }
}

#[tokio::test]
async fn active_probe_timeouts_count_toward_the_timeouts_threshold() {
    // `/slow` is never answered (its release is never notified): every
    // probe times out.
    let (hung, hung2) = (Backend::start().await, Backend::start().await);
    let probing = |port: u16, timeouts: u32| {
        let mut u = upstream("timeouts", &[("127.0.0.1", port, 100)]);
        let hc = &mut u.healthchecks.active;
        hc.http_path = "/slow".into();
        hc.timeout_secs = 0.1;
        hc.healthy.interval_secs = 0.05;
        hc.unhealthy.interval_secs = 0.05;
        hc.unhealthy.timeouts = timeouts;
        u
    };
    let counting = UpstreamManager::new();
    let (_bs, bal) = one(&counting, probing(hung.addr.port(), 2));
    wait_until(5, "unhealthy after 2 timed-out probes", || {
        target_health(&bal, 0) == "UNHEALTHY"
    })
    .await;
    assert!(hung.hits("/slow") >= 2);
    // With the threshold at 0 (Kong's default), timeouts change nothing.
    let ignoring = UpstreamManager::new();
    let (_bs2, bal2) = one(&ignoring, probing(hung2.addr.port(), 0));
    wait_until(5, "timed-out probes", || hung2.hits("/slow") >= 4).await;
    assert_eq!(target_health(&bal2, 0), "HEALTHY");
}

#[tokio::test]
async fn active_checks_use_the_configured_status_lists() {
    let b = Backend::start().await;
    let mgr = UpstreamManager::new();
    let mut u = upstream("statuses", &[("127.0.0.1", b.addr.port(), 100)]);
    let hc = &mut u.healthchecks.active;
    hc.http_path = "/status".into();
    hc.healthy.interval_secs = 0.05;
    hc.unhealthy.interval_secs = 0.05;
    // Turned around from Kong's defaults: 418 is healthy, 200 is not.
    hc.healthy.http_statuses = vec![418];
    hc.healthy.successes = 1;
    hc.unhealthy.http_statuses = vec![200];
    hc.unhealthy.http_failures = 1;
    let (_bs, bal) = one(&mgr, u);
    wait_until(5, "200 counts as a failure", || {
        target_health(&bal, 0) == "UNHEALTHY"
    })
    .await;
    b.status.store(418, Ordering::SeqCst);
    wait_until(5, "418 counts as a success", || {
        target_health(&bal, 0) == "HEALTHY"
    })
    .await;
    // A status in neither list changes nothing.
    b.status.store(500, Ordering::SeqCst);
    let seen = b.hits("/status");
    wait_until(5, "more probes", || b.hits("/status") >= seen + 3).await;
    assert_eq!(target_health(&bal, 0), "HEALTHY");
}

/// A gRPC server on 127.0.0.1:0 (h2c) implementing only
/// `grpc.health.v1.Health/Check`: it answers `serving` (1 = SERVING,
/// 2 = NOT_SERVING) with `grpc-status: 0` in the trailers, and records
/// what each call looked like.
struct GrpcHealthServer {
    addr: SocketAddr,
    serving: Arc<AtomicU16>,
    calls: Arc<parking_lot::Mutex<Vec<GrpcCall>>>,
}

/// What one call to the gRPC health server looked like:
/// (path, content-type, request body).
type GrpcCall = (String, String, Vec<u8>);

impl GrpcHealthServer {
    async fn start() -> GrpcHealthServer {
        use http_body_util::StreamBody;
        use hyper::body::Frame;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = GrpcHealthServer {
            addr: listener.local_addr().unwrap(),
            serving: Arc::new(AtomicU16::new(1)),
            calls: Arc::default(),
        };
        let (serving, calls) = (server.serving.clone(), server.calls.clone());
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (serving, calls) = (serving.clone(), calls.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let (serving, calls) = (serving.clone(), calls.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let ctype = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            calls.lock().push((path, ctype, body.to_vec()));
                            let status = serving.load(Ordering::SeqCst) as u8;
                            let mut trailers = HeaderMap::new();
                            trailers.insert("grpc-status", HeaderValue::from_static("0"));
                            let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
                                Ok(Frame::data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))),
                                Ok(Frame::trailers(trailers)),
                            ];
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/grpc")
                                    .body(StreamBody::new(futures_util::stream::iter(frames)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
                });
            }
        });
        server
    }
}

#[tokio::test]
async fn active_grpc_check_follows_the_health_service() {
    let (a, b) = (
        GrpcHealthServer::start().await,
        GrpcHealthServer::start().await,
    );
    // An HTTP/1-only server: it cannot answer a gRPC health check.
    let h1 = Backend::start().await;
    let mgr = UpstreamManager::new();
    let mut u = upstream(
        "grpc",
        &[
            ("127.0.0.1", a.addr.port(), 100),
            ("127.0.0.1", b.addr.port(), 100),
            ("127.0.0.1", h1.addr.port(), 100),
        ],
    );
    let hc = &mut u.healthchecks.active;
    hc.kind = HealthcheckType::Grpc;
    hc.healthy.interval_secs = 0.05;
    hc.unhealthy.interval_secs = 0.05;
    hc.healthy.successes = 2;
    hc.unhealthy.http_failures = 2;
    hc.unhealthy.tcp_failures = 2;
    let (_bs, bal) = one(&mgr, u);

    wait_until(5, "the HTTP/1-only target unhealthy", || {
        target_health(&bal, 2) == "UNHEALTHY"
    })
    .await;
    assert!(a.calls.lock().len() >= 2 && b.calls.lock().len() >= 2);
    let (path, ctype, body) = a.calls.lock()[0].clone();
    assert_eq!(path, "/grpc.health.v1.Health/Check");
    assert_eq!(ctype, "application/grpc");
    assert_eq!(body, vec![0, 0, 0, 0, 0], "one empty HealthCheckRequest");
    assert_eq!(target_health(&bal, 0), "HEALTHY");

    a.serving.store(2, Ordering::SeqCst); // NOT_SERVING
    wait_until(5, "a unhealthy", || target_health(&bal, 0) == "UNHEALTHY").await;
    assert_eq!(target_health(&bal, 1), "HEALTHY");
    for _ in 0..10 {
        assert_eq!(bal.pick(&input(), &[]).await.unwrap().addr, b.addr);
    }

    a.serving.store(1, Ordering::SeqCst);
    wait_until(5, "a healthy again", || target_health(&bal, 0) == "HEALTHY").await;
}

// ---------- health report ----------

#[tokio::test]
async fn health_report_shape() {
    let a = Backend::start().await;
    let mgr = UpstreamManager::with_nameservers(&[]);
    let (_bs, bal) = one(
        &mgr,
        upstream(
            "shape",
            &[
                ("127.0.0.1", a.addr.port(), 100),
                ("no-such-host.invalid", 80, 50),
            ],
        ),
    );
    // Settle DNS (the second target cannot resolve: no name server).
    let _ = bal.pick(&input(), &[]).await;
    let r = bal.health_report();
    assert_eq!(r["total"], 2);
    let t0 = &r["data"][0];
    assert_eq!(t0["target"], format!("127.0.0.1:{}", a.addr.port()));
    assert_eq!(t0["weight"], 100);
    assert_eq!(t0["health"], "HEALTHCHECKS_OFF");
    assert_eq!(
        t0["data"]["addresses"],
        serde_json::json!([{"ip": "127.0.0.1", "port": a.addr.port(), "health": "HEALTHCHECKS_OFF", "weight": 100}])
    );
    assert_eq!(
        t0["data"]["weight"],
        serde_json::json!({"total": 100, "available": 100, "unavailable": 0})
    );
    let t1 = &r["data"][1];
    assert_eq!(t1["target"], "no-such-host.invalid:80");
    assert_eq!(t1["health"], "DNS_ERROR");
    assert_eq!(t1["data"]["addresses"], serde_json::json!([]));
    assert_eq!(r["balancer_health"]["health"], "HEALTHCHECKS_OFF");
    assert_eq!(r["balancer_health"]["details"]["healthy"], true);
    // Still serves from the resolvable target.
    assert_eq!(bal.pick(&input(), &[]).await.unwrap().addr, a.addr);

    // Only an unresolvable target -> a DNS error.
    let (_bs2, bal) = one(
        &mgr,
        upstream("dnsonly", &[("no-such-host.invalid", 80, 100)]),
    );
    assert!(matches!(
        bal.pick(&input(), &[]).await,
        Err(BalancerError::Dns { host, .. }) if host == "no-such-host.invalid"
    ));

    // IPv6 literal targets print in brackets.
    let (_bs3, bal) = one(&mgr, upstream("v6", &[("::1", 8080, 100)]));
    assert_eq!(bal.health_report()["data"][0]["target"], "[::1]:8080");
    assert_eq!(
        bal.pick(&input(), &[]).await.unwrap().addr,
        "[::1]:8080".parse::<SocketAddr>().unwrap()
    );
}

// ---------- build / reuse ----------

#[tokio::test]
async fn build_reuses_unchanged_and_stops_removed_checkers() {
    let a = Backend::start().await;
    let mgr = UpstreamManager::new();
    let mut checked = upstream("checked", &[("127.0.0.1", a.addr.port(), 100)]);
    checked.healthchecks.active.healthy.interval_secs = 0.05;
    checked.healthchecks.active.unhealthy.http_failures = 1;
    let plain = upstream("plain", &[("127.0.0.1", a.addr.port(), 100)]);
    let cfg1 = config(
        vec![checked.clone(), plain.clone()],
        vec![
            service("checked", 80, Some(0)),
            service("127.0.0.1", a.addr.port(), None),
            {
                let mut s = service("127.0.0.1", 9, None);
                s.enabled = false;
                s
            },
            service("localhost", a.addr.port(), None),
        ],
    );
    let bs1 = mgr.build(&cfg1);
    assert_eq!(mgr.active_checkers(), 1);
    assert!(Arc::ptr_eq(
        bs1.for_service(0).unwrap(),
        bs1.upstream("checked").unwrap()
    ));
    assert!(bs1.for_service(2).is_none(), "disabled service");
    assert!(bs1.for_service(9).is_none());
    let implicit = bs1.for_service(1).unwrap();
    assert!(!implicit.is_upstream());
    assert_eq!(implicit.pick(&input(), &[]).await.unwrap().addr, a.addr);
    // `localhost` resolves through /etc/hosts.
    let local = bs1
        .for_service(3)
        .unwrap()
        .pick(&input(), &[])
        .await
        .unwrap();
    assert_eq!(local.addr.port(), a.addr.port());
    assert!(local.addr.ip().is_loopback());
    assert_eq!(&*local.host, "localhost");

    // Mark state so reuse is observable.
    let p = bs1
        .upstream("checked")
        .unwrap()
        .pick(&input(), &[])
        .await
        .unwrap();
    a.status.store(500, Ordering::SeqCst);
    wait_until(5, "checked unhealthy", || {
        target_health(bs1.upstream("checked").unwrap(), 0) == "UNHEALTHY"
    })
    .await;
    drop(p);

    // Same definitions -> same Arcs (and health state); changed -> new.
    let mut plain2 = plain.clone();
    plain2.targets[0].weight = 50;
    let cfg2 = config(
        vec![checked.clone(), plain2],
        vec![
            service("checked", 80, Some(0)),
            service("127.0.0.1", a.addr.port(), None),
        ],
    );
    let bs2 = mgr.build(&cfg2);
    assert!(Arc::ptr_eq(
        bs1.upstream("checked").unwrap(),
        bs2.upstream("checked").unwrap()
    ));
    assert!(!Arc::ptr_eq(
        bs1.upstream("plain").unwrap(),
        bs2.upstream("plain").unwrap()
    ));
    assert!(Arc::ptr_eq(
        bs1.for_service(1).unwrap(),
        bs2.for_service(1).unwrap()
    ));
    assert_eq!(
        target_health(bs2.upstream("checked").unwrap(), 0),
        "UNHEALTHY"
    );
    assert_eq!(mgr.active_checkers(), 1);
    drop(bs1);
    assert_eq!(mgr.active_checkers(), 1, "still used by the new set");

    // Upstream removed: once the old set is gone its checker stops.
    let cfg3 = config(vec![plain.clone()], vec![]);
    let bs3 = mgr.build(&cfg3);
    assert!(bs3.upstream("checked").is_none());
    assert_eq!(mgr.active_checkers(), 1, "old snapshot still alive");
    let weak = Arc::downgrade(bs2.upstream("checked").unwrap());
    drop(bs2);
    assert!(weak.upgrade().is_none());
    wait_until(5, "checker stopped", || mgr.active_checkers() == 0).await;
}

// ---------- DNS ----------

/// A tiny authoritative DNS server on 127.0.0.1 (UDP). Answers A queries
/// for `name` with `ip` and `ttl`; NXDOMAIN for other names; stays silent
/// while `mute` is set.
struct DnsServer {
    addr: SocketAddr,
    ip: Arc<parking_lot::Mutex<Ipv4Addr>>,
    queries: Arc<AtomicUsize>,
    mute: Arc<AtomicBool>,
}

impl DnsServer {
    async fn start(name: &str, ip: Ipv4Addr, ttl: u32) -> DnsServer {
        use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
        use hickory_resolver::proto::rr::{rdata::A, Name, RData, Record, RecordType};
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let s = DnsServer {
            addr: sock.local_addr().unwrap(),
            ip: Arc::new(parking_lot::Mutex::new(ip)),
            queries: Arc::default(),
            mute: Arc::default(),
        };
        let zone_name = Name::from_ascii(name).unwrap();
        let (cur, queries, mute) = (s.ip.clone(), s.queries.clone(), s.mute.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if req.metadata.message_type != MessageType::Query {
                    continue;
                }
                queries.fetch_add(1, Ordering::SeqCst);
                if mute.load(Ordering::SeqCst) {
                    continue;
                }
                let mut resp = Message::response(req.metadata.id, OpCode::Query);
                resp.metadata.authoritative = true;
                resp.metadata.recursion_desired = req.metadata.recursion_desired;
                resp.metadata.recursion_available = true;
                let Some(q) = req.queries.first().cloned() else {
                    continue;
                };
                resp.add_query(q.clone());
                if q.name().to_lowercase() == zone_name.to_lowercase() {
                    if q.query_type() == RecordType::A {
                        let ip = *cur.lock();
                        resp.add_answer(Record::from_rdata(q.name().clone(), ttl, RData::A(A(ip))));
                    }
                } else {
                    resp.metadata.response_code = ResponseCode::NXDomain;
                }
                if let Ok(bytes) = resp.to_vec() {
                    let _ = sock.send_to(&bytes, from).await;
                }
            }
        });
        s
    }
}

#[tokio::test]
async fn dns_ttl_is_honoured_and_stale_answers_serve() {
    let dns = DnsServer::start("svc.test.", Ipv4Addr::new(127, 0, 0, 1), 1).await;
    let mgr = UpstreamManager::with_nameservers(&[dns.addr]);
    // A failing name is retried every few seconds, which would refresh the
    // whole balancer: keep it in a balancer of its own.
    let (_bs0, failing) = one(&mgr, upstream("dnsfail", &[("missing.test.", 8080, 100)]));
    assert!(matches!(
        failing.pick(&input(), &[]).await,
        Err(BalancerError::Dns { .. })
    ));
    assert_eq!(target_health(&failing, 0), "DNS_ERROR");
    let (_bs, bal) = one(&mgr, upstream("dns", &[("svc.test.", 8080, 100)]));
    let p = bal.pick(&input(), &[]).await.unwrap();
    assert_eq!(p.addr, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(&*p.host, "svc.test.");
    assert_eq!(target_health(&bal, 0), "HEALTHCHECKS_OFF");

    // The record changes; after its 1 s TTL the balancer follows.
    *dns.ip.lock() = Ipv4Addr::new(127, 0, 0, 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let p = bal.pick(&input(), &[]).await.unwrap();
        if p.addr == "127.0.0.2:8080".parse::<SocketAddr>().unwrap() {
            break;
        }
        assert_eq!(p.addr.ip(), Ipv4Addr::new(127, 0, 0, 1));
        assert!(tokio::time::Instant::now() < deadline, "TTL not honoured");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        bal.health_report()["data"][0]["data"]["addresses"][0]["ip"],
        "127.0.0.2"
    );

    // The server stops answering: once the answer expired, a refresh is
    // under way, yet picks return the stale address without waiting.
    dns.mute.store(true, Ordering::SeqCst);
    let q = dns.queries.load(Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while dns.queries.load(Ordering::SeqCst) == q {
        let p = tokio::time::timeout(Duration::from_millis(500), bal.pick(&input(), &[]))
            .await
            .expect("pick must not wait on DNS")
            .unwrap();
        assert_eq!(p.addr.ip(), Ipv4Addr::new(127, 0, 0, 2));
        assert!(
            tokio::time::Instant::now() < deadline,
            "no re-query after TTL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..20 {
        let p = tokio::time::timeout(Duration::from_millis(500), bal.pick(&input(), &[]))
            .await
            .expect("pick must not wait on DNS")
            .unwrap();
        assert_eq!(p.addr.ip(), Ipv4Addr::new(127, 0, 0, 2));
    }
}

#[tokio::test]
async fn active_checks_follow_dns_changes_of_an_upstream_without_traffic() {
    // Two backends on two loopback addresses, on the same port.
    let first = Backend::start().await;
    let port = first.addr.port();
    let second = match TcpListener::bind(("127.0.0.2", port)).await {
        Ok(l) => l,
        Err(e) => panic!("127.0.0.2:{port}: {e}"),
    };
    let probed_second = Arc::new(AtomicUsize::new(0));
    let seen = probed_second.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = second.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = tokio::io::AsyncWriteExt::write_all(
                &mut s,
                b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            )
            .await;
        }
    });
    let dns = DnsServer::start("svc.test.", Ipv4Addr::new(127, 0, 0, 1), 1).await;
    let mgr = UpstreamManager::with_nameservers(&[dns.addr]);
    let mut u = upstream("quiet", &[("svc.test.", port, 100)]);
    u.healthchecks.active.healthy.interval_secs = 0.05;
    u.healthchecks.active.http_path = "/status".into();
    let (_bs, bal) = one(&mgr, u);
    wait_until(5, "probes of the first address", || {
        first.hits("/status") >= 2
    })
    .await;
    // The record changes. No request is ever made: only the checker's
    // rounds can notice the 1 s TTL expiring.
    *dns.ip.lock() = Ipv4Addr::new(127, 0, 0, 2);
    wait_until(10, "probes of the new address", || {
        probed_second.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(
        bal.health_report()["data"][0]["data"]["addresses"][0]["ip"],
        "127.0.0.2"
    );
}

#[tokio::test]
async fn implicit_service_balancer_resolves_and_reports_dns_errors() {
    let dns = DnsServer::start("api.test.", Ipv4Addr::new(127, 0, 0, 1), 300).await;
    let mgr = UpstreamManager::with_nameservers(&[dns.addr]);
    let bs = mgr.build(&config(
        vec![],
        vec![
            service("api.test.", 9000, None),
            service("nope.test.", 9000, None),
        ],
    ));
    let p = bs
        .for_service(0)
        .unwrap()
        .pick(&input(), &[])
        .await
        .unwrap();
    assert_eq!(p.addr, "127.0.0.1:9000".parse::<SocketAddr>().unwrap());
    assert_eq!(bs.for_service(0).unwrap().name(), "api.test.:9000");
    let err = bs
        .for_service(1)
        .unwrap()
        .pick(&input(), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, BalancerError::Dns { ref host, .. } if host == "nope.test."),
        "{err}"
    );
    // Cached: more picks do not query again within the TTL.
    let q = dns.queries.load(Ordering::SeqCst);
    for _ in 0..10 {
        bs.for_service(0)
            .unwrap()
            .pick(&input(), &[])
            .await
            .unwrap();
    }
    assert_eq!(dns.queries.load(Ordering::SeqCst), q);
}

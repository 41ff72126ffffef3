//! End-to-end proxy behaviour against real upstream servers on loopback.

mod common;

use common::*;
use http::Request;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn two_services(foo: u16, bar: u16) -> String {
    format!(
        r#"
_format_version: "3.0"
services:
  - name: foo
    url: http://127.0.0.1:{foo}
    routes:
      - name: foo
        paths: [/foo]
  - name: bar
    url: http://127.0.0.1:{bar}/base
    routes:
      - name: bar
        paths: [/bar]
        strip_path: false
      - name: bar-host
        hosts: [api.example.com]
        preserve_host: true
"#
    )
}

#[tokio::test]
async fn routes_by_path_and_strips_the_prefix_like_kong() {
    let foo = echo_upstream("foo").await;
    let bar = echo_upstream("bar").await;
    let gw = gateway(&two_services(foo.port(), bar.port())).await;

    let r = get(&gw.url("/foo/items?x=1")).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["server"], "foo");
    assert_eq!(v["path"], "/items", "strip_path removes /foo");
    assert_eq!(v["query"], "x=1");

    let v = get(&gw.url("/bar/x")).await.json();
    assert_eq!(v["server"], "bar");
    assert_eq!(
        v["path"], "/base/bar/x",
        "service path + unstripped request path"
    );

    let r = get(&gw.url("/foo")).await.json();
    assert_eq!(r["path"], "/");
}

#[tokio::test]
async fn unmatched_request_gets_kongs_404_with_a_request_id() {
    let foo = echo_upstream("foo").await;
    let bar = echo_upstream("bar").await;
    let gw = gateway(&two_services(foo.port(), bar.port())).await;
    let r = get(&gw.url("/nothing")).await;
    assert_eq!(r.status, 404);
    let v = r.json();
    assert_eq!(v["message"], "no Route matched with those values");
    let id = r.headers["x-gateway-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(id.len(), 32);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "lower-case hex: {id}"
    );
    assert_eq!(v["request_id"], id.as_str());
    // Every request gets a distinct id.
    let r2 = get(&gw.url("/nothing")).await;
    assert_ne!(r2.headers["x-gateway-request-id"], id.as_str());
}

#[tokio::test]
async fn forwarding_headers_host_and_hop_by_hop() {
    let foo = echo_upstream("foo").await;
    let bar = echo_upstream("bar").await;
    let gw = gateway(&two_services(foo.port(), bar.port())).await;

    let r = get_with(
        &gw.url("/foo/h"),
        &[
            ("host", "gw.example.com:8000"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "203.0.113.1"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "secret"),
            ("proxy-connection", "keep-alive"),
            ("x-custom", "kept"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    assert_eq!(
        h["host"],
        format!("127.0.0.1:{}", foo.port()),
        "preserve_host=false"
    );
    assert_eq!(
        h["x-forwarded-proto"], "http",
        "untrusted client cannot claim https"
    );
    assert_eq!(h["x-forwarded-for"], "203.0.113.1, 127.0.0.1");
    assert_eq!(h["x-forwarded-host"], "gw.example.com");
    assert_eq!(
        h["x-forwarded-port"],
        gw.proxy().port().to_string(),
        "the listener's port, as Kong; not the Host header's 8000"
    );
    assert_eq!(h["x-forwarded-prefix"], "/foo");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["via"], "1.1 gateway");
    assert_eq!(h["x-custom"], "kept");
    assert!(h.get("x-private").is_none(), "named in Connection: removed");
    assert!(h.get("proxy-connection").is_none());
    assert!(
        h.get("x-gateway-request-id").is_some(),
        "request id goes upstream"
    );
    // Response side.
    assert_eq!(r.headers["via"], "1.1 gateway");
    assert!(r.headers.get("x-gateway-request-id").is_some());

    // preserve_host keeps the client's Host.
    let h = get_with(&gw.url("/anything"), &[("host", "api.example.com")])
        .await
        .json();
    assert_eq!(h["server"], "bar");
    assert_eq!(h["headers"]["host"], "api.example.com");
}

#[tokio::test]
async fn trusted_front_proxy_forwarded_headers_are_honoured() {
    let foo = echo_upstream("foo").await;
    let bar = echo_upstream("bar").await;
    let mut opts = loopback_options();
    opts.proxy.trusted =
        gateway_node::proxy::forward::TrustedProxies::parse("127.0.0.1/32").expect("cidr");
    let gw = gateway_with(&two_services(foo.port(), bar.port()), opts).await;
    let h = get_with(
        &gw.url("/foo"),
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "public.example.com"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-for", "198.51.100.7"),
        ],
    )
    .await
    .json();
    let h = &h["headers"];
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "public.example.com");
    assert_eq!(h["x-forwarded-port"], "443");
    assert_eq!(h["x-real-ip"], "198.51.100.7");
}

#[tokio::test]
async fn port_maps_set_x_forwarded_port_on_both_paths() {
    let foo = echo_upstream("foo").await;
    let bar = echo_upstream("bar").await;
    for direct_path in [true, false] {
        let port = server_port().await;
        let mut opts = loopback_options();
        opts.proxy_listen = format!("127.0.0.1:{port}").parse().expect("addr");
        opts.proxy.port_maps =
            gateway_node::proxy::forward::PortMaps::parse(&format!("80:{port}, 443:1"))
                .expect("maps");
        opts.direct_path = direct_path;
        let gw = gateway_with(&two_services(foo.port(), bar.port()), opts).await;
        let h = get_with(&gw.url("/foo"), &[("host", "api.example.com:9999")])
            .await
            .json();
        assert_eq!(
            h["headers"]["x-forwarded-port"], "80",
            "direct path: {direct_path}"
        );
        assert_eq!(h["headers"]["x-forwarded-host"], "api.example.com");
    }
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let foo = echo_upstream("foo").await;
    let bar = echo_upstream("bar").await;
    let gw = gateway(&two_services(foo.port(), bar.port())).await;
    for _ in 0..20 {
        assert_eq!(get(&gw.url("/foo")).await.status, 200);
    }
    assert_eq!(foo.requests.load(Ordering::SeqCst), 20);
    assert_eq!(
        foo.connections.load(Ordering::SeqCst),
        1,
        "sequential requests reuse one connection"
    );
}

#[tokio::test]
async fn connect_failure_retries_the_next_target() {
    let up = echo_upstream("live").await;
    let dead = closed_port().await;
    let yaml = format!(
        r#"
_format_version: "3.0"
upstreams:
  - name: pool
    targets:
      - target: 127.0.0.1:{dead}
      - target: 127.0.0.1:{live}
services:
  - name: s
    host: pool
    retries: 2
    routes: [{{ name: r, paths: [/] }}]
"#,
        live = up.port()
    );
    let gw = gateway(&yaml).await;
    for _ in 0..10 {
        let r = get(&gw.url("/x")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["server"], "live");
    }
}

/// Three echo upstreams ("a", "b", "c") as the targets of a
/// consistent-hashing upstream with the extra `hash` fields (YAML lines at
/// the upstream's indentation), behind one service routed on `/`.
async fn hashed_pool(hash: &str) -> ([Upstream; 3], String) {
    let ups = [
        echo_upstream("a").await,
        echo_upstream("b").await,
        echo_upstream("c").await,
    ];
    let targets: String = ups
        .iter()
        .map(|u| format!("      - target: 127.0.0.1:{}\n", u.port()))
        .collect();
    let yaml = format!(
        "_format_version: \"3.0\"\nupstreams:\n  - name: pool\n    algorithm: consistent-hashing\n{hash}    targets:\n{targets}services:\n  - name: s\n    host: pool\n    routes: [{{ name: r, paths: [/] }}]\n"
    );
    (ups, yaml)
}

#[tokio::test]
async fn hash_on_ip_keeps_each_client_on_one_target_on_both_paths() {
    let (_ups, yaml) = hashed_pool("    hash_on: ip\n").await;
    // The test's loopback peer is a trusted front proxy, so each request's
    // client address is the one its X-Forwarded-For names.
    let trusted = || {
        let mut o = loopback_options();
        o.proxy.trusted =
            gateway_node::proxy::forward::TrustedProxies::parse("127.0.0.1/32").expect("cidr");
        o
    };
    let mut general = trusted();
    general.direct_path = false;
    for (name, gw) in [
        ("direct", gateway_with(&yaml, trusted()).await),
        ("general", gateway_with(&yaml, general).await),
    ] {
        let mut servers = std::collections::HashSet::new();
        for i in 0..30u8 {
            let client = format!("198.51.100.{i}");
            let first = get_with(&gw.url("/x"), &[("x-forwarded-for", &client)]).await;
            let server = first.json()["server"].clone();
            for _ in 0..3 {
                let again = get_with(&gw.url("/x"), &[("x-forwarded-for", &client)]).await;
                assert_eq!(again.json()["server"], server, "{name}: {client}");
            }
            servers.insert(server.to_string());
        }
        assert_eq!(servers.len(), 3, "{name}: 30 clients spread: {servers:?}");
    }
}

/// `hash_on: cookie` with a client that has no cookie yet: the gateway
/// hashes on a new random value and sets it (name, `hash_on_cookie_path`),
/// so the client's next requests stick to the same target.
#[tokio::test]
async fn cookie_hashing_sets_the_cookie_and_sticks() {
    let (_ups, yaml) = hashed_pool(
        "    hash_on: cookie\n    hash_on_cookie: sticky\n    hash_on_cookie_path: /app\n",
    )
    .await;
    let gw = gateway(&yaml).await;
    let mut first_servers = std::collections::HashSet::new();
    for _ in 0..12 {
        let r = get(&gw.url("/x")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let set = r
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no Set-Cookie: {:?}", r.headers))
            .to_string();
        assert!(
            set.starts_with("sticky=") && set.contains("; Path=/app"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap_or_default().to_string();
        let server = r.json()["server"].clone();
        first_servers.insert(server.to_string());
        // The cookie is not forwarded on the first request (the client
        // did not send it), and later requests carrying it stick.
        assert!(r.json()["headers"].get("cookie").is_none());
        for _ in 0..5 {
            let again = get_with(&gw.url("/x"), &[("cookie", &cookie)]).await;
            assert_eq!(again.json()["server"], server, "{cookie}");
            assert!(again.headers.get("set-cookie").is_none(), "set only once");
        }
    }
    // Fresh cookies spread over the targets (12 random values on 3 targets).
    assert!(first_servers.len() >= 2, "{first_servers:?}");
}

#[tokio::test]
async fn all_targets_down_is_502_and_slow_upstream_is_504() {
    let dead = closed_port().await;
    let slow = echo_upstream("slow").await;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
  - name: dead
    url: http://127.0.0.1:{dead}
    retries: 1
    routes: [{{ name: dead, paths: [/dead] }}]
  - name: slow
    url: http://127.0.0.1:{slow}
    read_timeout: 200
    retries: 0
    routes: [{{ name: slow, paths: [/slow] }}]
"#,
        slow = slow.port()
    );
    let gw = gateway(&yaml).await;
    let r = get(&gw.url("/dead")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "An invalid response was received from the upstream server"
    );
    let r = get_with(&gw.url("/slow"), &[("x-test-delay-ms", "2000")]).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["message"], "The upstream server is timing out");
    assert!(r.json()["request_id"].is_string());
}

#[tokio::test]
async fn route_without_service_answers_503() {
    let yaml = r#"
_format_version: "3.0"
routes:
  - name: orphan
    paths: [/orphan]
"#;
    let gw = gateway(yaml).await;
    let r = get(&gw.url("/orphan")).await;
    assert_eq!(r.status, 503);
}

#[tokio::test]
async fn https_only_route_redirects_plain_http() {
    let up = echo_upstream("s").await;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://127.0.0.1:{}
    routes:
      - name: secure
        paths: [/secure]
        protocols: [https]
      - name: moved
        paths: [/moved]
        protocols: [https]
        https_redirect_status_code: 308
"#,
        up.port()
    );
    let gw = gateway(&yaml).await;
    let r = get(&gw.url("/secure")).await;
    assert_eq!(r.status, 426);
    assert_eq!(r.json()["message"], "Please use HTTPS protocol");
    let r = get_with(&gw.url("/moved/a?b=1"), &[("host", "api.example.com:8000")]).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "https://api.example.com/moved/a?b=1");
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let foo = echo_upstream("foo").await;
    let bar = echo_upstream("bar").await;
    let gw = gateway(&two_services(foo.port(), bar.port())).await;
    let resp = h2c_client()
        .request(Request::get(gw.url("/foo/h2")).body(full("")).expect("req"))
        .await
        .expect("h2 request");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let r = read(resp).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["path"], "/h2");
    assert_eq!(
        v["version"], "HTTP/1.1",
        "http services get HTTP/1.1 upstream"
    );
    assert_eq!(v["headers"]["x-forwarded-host"], "127.0.0.1");
}

#[tokio::test]
async fn grpc_over_h2c_passes_trailers_through() {
    use http_body_util::BodyExt;
    // A gRPC-shaped upstream: h2c, answers with data then trailers.
    let up = upstream(|req: Request<hyper::body::Incoming>| async move {
        assert_eq!(req.version(), http::Version::HTTP_2);
        let te = req.headers().get("te").cloned();
        let _ = req.into_body().collect().await;
        let frames: Vec<
            Result<http_body::Frame<bytes::Bytes>, Box<dyn std::error::Error + Send + Sync>>,
        > = vec![
            Ok(http_body::Frame::data(bytes::Bytes::from_static(
                b"\0\0\0\0\x02hi",
            ))),
            Ok(http_body::Frame::trailers({
                let mut t = http::HeaderMap::new();
                t.insert("grpc-status", http::HeaderValue::from_static("0"));
                t.insert("grpc-message", http::HeaderValue::from_static("ok"));
                t
            })),
        ];
        let mut resp = http::Response::new(
            http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed(),
        );
        resp.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/grpc"),
        );
        if let Some(te) = te {
            resp.headers_mut().insert("x-saw-te", te);
        }
        resp
    })
    .await;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
  - name: grpc
    protocol: grpc
    host: 127.0.0.1
    port: {}
    routes:
      - name: grpc
        protocols: [grpc]
        paths: [/helloworld.Greeter]
"#,
        up.port()
    );
    let gw = gateway(&yaml).await;
    let req = Request::post(gw.url("/helloworld.Greeter/SayHello"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full(&b"\0\0\0\0\x02yo"[..]))
        .expect("req");
    let resp = h2c_client().request(req).await.expect("grpc call");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-saw-te"], "trailers");
    let collected = resp.into_body().collect().await.expect("body");
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers passed through");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");
    assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x02hi");
}

#[tokio::test]
async fn websocket_upgrade_is_tunneled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Upstream: accept the upgrade, then echo bytes upper-cased.
    let up = upstream(|mut req: Request<hyper::body::Incoming>| async move {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut io = hyper_util::rt::TokioIo::new(upgraded);
                let mut buf = [0u8; 64];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let up: Vec<u8> = buf[..n].to_ascii_uppercase();
                    if io.write_all(&up).await.is_err() {
                        break;
                    }
                }
            }
        });
        http::Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .body(full(""))
            .expect("101")
    })
    .await;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
  - name: ws
    url: http://127.0.0.1:{}
    routes: [{{ name: ws, paths: [/ws] }}]
"#,
        up.port()
    );
    let gw = gateway(&yaml).await;
    let mut s = tokio::net::TcpStream::connect(gw.proxy())
        .await
        .expect("connect");
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("head in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before 101: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    s.write_all(b"hello tunnel").await.expect("write");
    let mut got = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .expect("echo in time")
        .expect("read");
    assert_eq!(&got, b"HELLO TUNNEL");
}

#[tokio::test]
async fn disabled_service_routes_are_not_served() {
    let up = echo_upstream("s").await;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
  - name: off
    url: http://127.0.0.1:{p}
    enabled: false
    routes: [{{ name: off, paths: [/off] }}]
  - name: on
    url: http://127.0.0.1:{p}
    routes: [{{ name: on, paths: [/on] }}]
"#,
        p = up.port()
    );
    let gw = gateway(&yaml).await;
    assert_eq!(get(&gw.url("/off")).await.status, 404);
    assert_eq!(get(&gw.url("/on")).await.status, 200);
}

#[tokio::test]
async fn plugins_run_in_their_phases() {
    let up = echo_upstream("s").await;
    let yaml = format!(
        r#"
_format_version: "3.0"
plugins:
  - name: correlation-id
    config: {{ header_name: X-Correlation-Id, generator: uuid, echo_downstream: true }}
services:
  - name: s
    url: http://127.0.0.1:{}
    routes:
      - name: open
        paths: [/open]
      - name: closed
        paths: [/closed]
        plugins:
          - name: request-termination
            config: {{ status_code: 403, message: "closed for maintenance" }}
"#,
        up.port()
    );
    let gw = gateway(&yaml).await;
    let r = get(&gw.url("/open")).await;
    assert_eq!(r.status, 200);
    let sent = r.json()["headers"]["x-correlation-id"]
        .as_str()
        .expect("id upstream")
        .to_owned();
    assert_eq!(sent.len(), 36);
    assert_eq!(
        r.headers["x-correlation-id"],
        sent.as_str(),
        "echoed downstream"
    );
    // A client-supplied correlation id is kept.
    let r = get_with(&gw.url("/open"), &[("x-correlation-id", "mine")]).await;
    assert_eq!(r.json()["headers"]["x-correlation-id"], "mine");

    let before = up.requests.load(Ordering::SeqCst);
    let r = get(&gw.url("/closed")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "closed for maintenance");
    assert!(
        r.headers.get("x-correlation-id").is_some(),
        "response_filter runs on plugin answers too"
    );
    assert_eq!(
        up.requests.load(Ordering::SeqCst),
        before,
        "upstream not called"
    );
}

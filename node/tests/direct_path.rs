//! The direct HTTP/1.1 path (`proxy::direct`) against the general (hyper)
//! path: the same raw requests go to a gateway with the direct path and to
//! one without it, in front of one raw upstream that echoes the request
//! head it received byte for byte. The upstream request heads and the
//! client responses must be the same, up to header-name case, order, the
//! request id and `Date`. Plus what only the direct path has to get right:
//! handing a connection over mid-way, stale pooled upstream connections,
//! timeouts and broken upstream framing. And, on both paths, a client that
//! leaves while its request is upstream ends that request.

mod common;

use common::{gateway_with, loopback_options, Gateway};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIG: usize = 3_000_000;

/// A raw HTTP/1.1 upstream. By path: `/chunked`, `/close` (no length,
/// closes), `/hints` (103 first), `/hop` (hop-by-hop response headers),
/// `/nocontent` (204), `/big` (3 MB), `/bye` (closes after answering),
/// `/slow` (never answers), `/badchunk` (broken chunked framing); anything
/// else answers 200 with the request head it read as the body. HEAD gets
/// a `Content-Length: 100` head only.
async fn raw_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = read_head(&mut s, &mut buf).await else {
                        return;
                    };
                    let mut head: Vec<u8> = buf.drain(..end).collect();
                    let line = String::from_utf8_lossy(&head).into_owned();
                    // A Content-Length body is read and echoed after the head.
                    let length = line
                        .lines()
                        .find_map(|l| {
                            let (n, v) = l.split_once(':')?;
                            n.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < length {
                        let mut chunk = [0u8; 65536];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    head.extend(buf.drain(..length));
                    let mut words = line.split(' ');
                    let method = words.next().unwrap_or_default().to_owned();
                    let path = words.next().unwrap_or_default().to_owned();
                    let path = path.split('?').next().unwrap_or_default();
                    let mut close = false;
                    let reply: Vec<u8> = if method == "HEAD" {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-Head: 1\r\n\r\n".to_vec()
                    } else {
                        match path {
                            "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
                            "/close" => {
                                close = true;
                                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the upstream closes".to_vec()
                            }
                            "/hints" => b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                            "/hop" => b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\nVia: 1.0 upstream\r\nX-Keep: 2\r\nX-Gateway-Request-Id: forged\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                            "/nocontent" => b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n".to_vec(),
                            "/big" => {
                                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
                                r.extend((0..BIG).map(|i| (i % 251) as u8));
                                r
                            }
                            "/bye" => {
                                close = true;
                                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye".to_vec()
                            }
                            "/slow" => {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                                return;
                            }
                            "/badchunk" => {
                                // A large valid chunk (more than one read of
                                // the gateway's), then broken framing.
                                close = true;
                                let mut r = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n", 200_000).into_bytes();
                                r.extend(std::iter::repeat_n(b'a', 200_000));
                                r.extend_from_slice(b"XX");
                                r
                            }
                            "/badchunk-at-once" => {
                                close = true;
                                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX".to_vec()
                            }
                            _ => {
                                let mut r = format!(
                                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                                    head.len()
                                )
                                .into_bytes();
                                r.extend_from_slice(&head);
                                r
                            }
                        }
                    };
                    if s.write_all(&reply).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, connections)
}

/// Read until a complete head is in `buf`; its length. None on EOF.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One response as the client read it.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    /// (lower-case name, value), sorted; `date` and the request id masked.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Read more of a response into `buf`; 0 at EOF or after 10 s of nothing.
async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = vec![0u8; 65536];
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            n
        }
        _ => 0,
    }
}

/// Read one response from `s` (after a request with method `method`).
async fn read_answer(s: &mut TcpStream, buf: &mut Vec<u8>, method: &str) -> Answer {
    let end = tokio::time::timeout(Duration::from_secs(10), read_head(s, buf))
        .await
        .expect("a response head in time")
        .expect("a response head");
    let head: Vec<u8> = buf.drain(..end).collect();
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut hs);
    r.parse(&head).expect("response head parses");
    let status = r.code.expect("status");
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            let name = h.name.to_ascii_lowercase();
            let value = match name.as_str() {
                "date" | "x-gateway-request-id" => "*".to_owned(),
                _ => String::from_utf8_lossy(h.value).into_owned(),
            };
            (name, value)
        })
        .collect();
    headers.sort();
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    let mut trailers = Vec::new();
    let no_body = method == "HEAD" || status == 204 || status == 304;
    if no_body {
    } else if find("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                assert!(fill(s, buf).await > 0, "chunked body cut short");
            };
            let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .expect("chunk size");
            buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    let i = loop {
                        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                            break i;
                        }
                        assert!(fill(s, buf).await > 0, "trailers cut short");
                    };
                    let line = String::from_utf8_lossy(&buf[..i]).into_owned();
                    buf.drain(..i + 2);
                    if line.is_empty() {
                        break;
                    }
                    let (n, v) = line.split_once(':').expect("trailer line");
                    trailers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
                break;
            }
            while buf.len() < size + 2 {
                assert!(fill(s, buf).await > 0, "chunk cut short");
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().expect("content-length");
        while buf.len() < len {
            assert!(fill(s, buf).await > 0, "body cut short");
        }
        body = buf.drain(..len).collect();
    } else {
        while fill(s, buf).await > 0 {}
        body = std::mem::take(buf);
    }
    Answer {
        status,
        headers,
        body,
        trailers,
    }
}

/// Send `request` on a new connection and read the answer.
async fn ask(gw: &Gateway, request: &str) -> Answer {
    let mut s = TcpStream::connect(gw.proxy()).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let method = request.split(' ').next().unwrap_or_default();
    read_answer(&mut s, &mut Vec::new(), method).await
}

/// The upstream-side request head echoed in a body: its request line and
/// its headers as (lower-case name, value), sorted, request id masked.
/// `X-Forwarded-Port` with the gateway's own port reads `<proxy port>`.
/// The request body the upstream got is the request line's suffix
/// `+ body:<bytes>`.
fn echoed(body: &[u8], proxy_port: u16) -> (String, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(body);
    let (head, request_body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let request_line = format!("{} + body:{request_body}", lines.next().unwrap_or_default());
    let mut headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            let n = n.to_ascii_lowercase();
            let v = if n == "x-gateway-request-id" {
                "*".to_owned()
            } else if n == "x-forwarded-port" && v.trim() == proxy_port.to_string() {
                "<proxy port>".to_owned()
            } else {
                v.trim().to_owned()
            };
            (n, v)
        })
        .collect();
    headers.sort();
    (request_line, headers)
}

fn config(upstream: SocketAddr) -> String {
    format!(
        r#"
_format_version: "3.0"
services:
  - name: raw
    url: http://{upstream}
    read_timeout: 500
    routes:
      - name: plain
        paths: ["/plain", "/chunked", "/close", "/hints", "/hop", "/nocontent", "/big", "/bye", "/slow", "/badchunk", "/badchunk-at-once"]
        strip_path: false
  - name: based
    url: http://{upstream}/base
    routes:
      - name: strip
        paths: ["/strip"]
      - name: keep-host
        paths: ["/keephost"]
        preserve_host: true
        strip_path: false
"#
    )
}

/// Two gateways on one config: with the direct path, and without it.
async fn both_paths(yaml: &str) -> (Gateway, Gateway) {
    both_paths_with(yaml, loopback_options()).await
}

async fn both_paths_with(
    yaml: &str,
    options: gateway_node::app::NodeOptions,
) -> (Gateway, Gateway) {
    let general = gateway_node::app::NodeOptions {
        direct_path: false,
        ..options.clone()
    };
    let direct = gateway_with(yaml, options).await;
    let general = gateway_with(yaml, general).await;
    (direct, general)
}

async fn pair() -> (Gateway, Gateway, Arc<AtomicUsize>) {
    let (up, connections) = raw_upstream().await;
    let yaml = config(up);
    let (direct, general) = both_paths(&yaml).await;
    (direct, general, connections)
}

#[tokio::test]
async fn direct_path_forwards_what_the_general_path_forwards() {
    let (direct, general, _) = pair().await;
    let h = "Host: api.example\r\nX-Case-Check: 1\r\n";
    let requests = [
        format!("GET /plain HTTP/1.1\r\n{h}\r\n"),
        format!("GET /plain?a=1&b=two HTTP/1.1\r\n{h}User-Agent: t\r\nAccept: */*\r\n\r\n"),
        // Client forwarding headers from an untrusted peer.
        format!(
            "GET /plain HTTP/1.1\r\n{h}X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8, 9.9.9.9\r\n\
             X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Port: 1\r\n\
             X-Forwarded-Prefix: /p\r\nX-Real-IP: 9.9.9.9\r\nVia: 1.0 client\r\nVia: 1.1 other\r\n\r\n"
        ),
        // Hop-by-hop headers, and a forged request id.
        format!(
            "GET /plain HTTP/1.1\r\n{h}Connection: keep-alive, X-Secret\r\nX-Secret: s\r\n\
             Keep-Alive: timeout=1\r\nTE: trailers, deflate\r\nProxy-Connection: keep-alive\r\n\
             Trailer: x\r\nX-Gateway-Request-Id: forged\r\n\r\n"
        ),
        "GET /plain HTTP/1.1\r\nHost: api.example:8080\r\nX-Case-Check: 1\r\n\r\n".to_owned(),
        "GET /plain HTTP/1.1\r\nHost: [::1]:8443\r\nX-Case-Check: 1\r\n\r\n".to_owned(),
        // strip_path with a service path, query kept; a normalized path.
        format!("GET /strip/x/y?q=1&r=2 HTTP/1.1\r\n{h}\r\n"),
        format!("GET /strip HTTP/1.1\r\n{h}\r\n"),
        format!("GET /plain//a/../b/./c HTTP/1.1\r\n{h}\r\n"),
        format!("GET /keephost/z HTTP/1.1\r\n{h}\r\n"),
        format!("DELETE /plain HTTP/1.1\r\n{h}Content-Length: 0\r\n\r\n"),
        format!("OPTIONS /plain HTTP/1.1\r\n{h}\r\n"),
        // Bodies with a Content-Length.
        format!("POST /plain HTTP/1.1\r\n{h}Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"),
        format!("PUT /strip/p HTTP/1.1\r\n{h}Content-Length: 20000\r\n\r\n{}", "x".repeat(20_000)),
    ];
    for req in &requests {
        let a = ask(&direct, req).await;
        let b = ask(&general, req).await;
        assert_eq!(a.status, 200, "{req:?}: {a:?}");
        let (line_a, heads_a) = echoed(&a.body, direct.proxy().port());
        let (line_b, heads_b) = echoed(&b.body, general.proxy().port());
        assert_eq!(line_a, line_b, "request line for {req:?}");
        assert_eq!(heads_a, heads_b, "upstream headers for {req:?}");
        // The body differs only in header-name case, so compare the rest.
        let mut ha = a.headers.clone();
        let mut hb = b.headers.clone();
        ha.retain(|(n, _)| n != "content-length");
        hb.retain(|(n, _)| n != "content-length");
        assert_eq!(ha, hb, "response headers for {req:?}");
        // The direct path passes header names as sent; hyper lower-cases
        // them. So this shows which path served each.
        let body_a = String::from_utf8_lossy(&a.body);
        let body_b = String::from_utf8_lossy(&b.body);
        assert!(
            body_a.contains("X-Case-Check: 1"),
            "direct path not used: {body_a}"
        );
        assert!(body_b.contains("x-case-check: 1"), "{body_b}");
    }
}

#[tokio::test]
async fn direct_path_passes_responses_on_as_the_general_path_does() {
    let (direct, general, _) = pair().await;
    for (method, path) in [
        ("GET", "/chunked"),
        ("GET", "/close"),
        ("GET", "/hints"),
        ("GET", "/hop"),
        ("GET", "/nocontent"),
        ("HEAD", "/plain"),
        ("GET", "/big"),
        ("GET", "/nothing-routes-here"),
    ] {
        let req = format!("{method} {path} HTTP/1.1\r\nHost: api.example\r\n\r\n");
        let a = ask(&direct, &req).await;
        let b = ask(&general, &req).await;
        assert_eq!(a.status, b.status, "{method} {path}");
        assert_eq!(a.body.len(), b.body.len(), "{method} {path}");
        if path == "/nothing-routes-here" {
            // Same JSON apart from the request id.
            assert_eq!(a.status, 404);
            let (ja, jb): (serde_json::Value, serde_json::Value) = (
                serde_json::from_slice(&a.body).expect("json"),
                serde_json::from_slice(&b.body).expect("json"),
            );
            assert_eq!(ja["message"], jb["message"]);
        } else {
            assert!(a.body == b.body, "{method} {path}: bodies differ");
        }
        // The one difference: the direct path passes a chunked body on
        // verbatim, trailers included; the general path drops HTTP/1
        // trailers (hyper sends only those a `Trailer` header announced,
        // and `Trailer` is removed as hop-by-hop).
        if path != "/chunked" {
            assert_eq!(a.trailers, b.trailers, "{method} {path}");
        } else {
            assert!(b.trailers.is_empty());
        }
        assert_eq!(a.headers, b.headers, "{method} {path}");
        assert!(a.header("x-gateway-request-id").is_some());
    }
    // What the rules say, not only "the same as hyper".
    let hop = ask(&direct, "GET /hop HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(hop.header("via"), Some("1.0 upstream, 1.1 gateway"));
    assert_eq!(hop.header("x-keep"), Some("2"));
    for gone in ["x-drop", "keep-alive", "proxy-connection", "connection"] {
        assert_eq!(hop.header(gone), None, "{gone} passed through");
    }
    let chunked = ask(&direct, "GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(chunked.body, b"hello world");
    assert_eq!(chunked.trailers, vec![("x-trailer".into(), "t".into())]);
    let close = ask(&direct, "GET /close HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(close.body, b"until the upstream closes");
    assert_eq!(close.header("transfer-encoding"), Some("chunked"));
    let big = ask(&direct, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(big
        .body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 251) as u8));
}

#[tokio::test]
async fn a_connection_moves_to_the_general_path_mid_way_and_keeps_its_order() {
    let (direct, _general, _) = pair().await;
    let mut s = TcpStream::connect(direct.proxy()).await.expect("connect");
    // Pipelined in one write: direct, then a chunked POST (general path),
    // then a GET that the general path now serves.
    let batch = "GET /plain?n=1 HTTP/1.1\r\nHost: a\r\nX-Case-Check: 1\r\n\r\n\
                 POST /plain?n=2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
                 GET /plain?n=3 HTTP/1.1\r\nHost: a\r\nX-Case-Check: 1\r\n\r\n";
    s.write_all(batch.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    for _ in 0..3 {
        let a = read_answer(&mut s, &mut buf, "GET").await;
        assert_eq!(a.status, 200);
        let body = String::from_utf8_lossy(&a.body).into_owned();
        lines.push(body.lines().next().unwrap_or_default().to_owned());
        if body.contains("n=1") {
            assert!(
                body.contains("X-Case-Check"),
                "first request on the direct path"
            );
        }
        if body.contains("n=3") {
            assert!(
                body.contains("x-case-check"),
                "third request on the general path"
            );
        }
    }
    assert_eq!(
        lines,
        [
            "GET /plain?n=1 HTTP/1.1",
            "POST /plain?n=2 HTTP/1.1",
            "GET /plain?n=3 HTTP/1.1"
        ]
    );
}

#[tokio::test]
async fn stale_pooled_upstream_connections_are_not_failures() {
    let (direct, _general, connections) = pair().await;
    let mut s = TcpStream::connect(direct.proxy()).await.expect("connect");
    let mut buf = Vec::new();
    // The upstream closes every connection right after its answer, so each
    // pooled connection is stale by the next request.
    for i in 0..20 {
        s.write_all(b"GET /bye HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let a = read_answer(&mut s, &mut buf, "GET").await;
        assert_eq!((i, a.status, a.body.as_slice()), (i, 200, &b"bye"[..]));
    }
    assert!(connections.load(Ordering::SeqCst) >= 20);
    // And a healthy keep-alive upstream connection is reused.
    let before = connections.load(Ordering::SeqCst);
    for _ in 0..20 {
        s.write_all(b"GET /plain HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(read_answer(&mut s, &mut buf, "GET").await.status, 200);
    }
    assert!(connections.load(Ordering::SeqCst) <= before + 1);
}

#[tokio::test]
async fn upstream_timeouts_and_broken_framing_on_the_direct_path() {
    let (direct, _general, _) = pair().await;
    // read_timeout is 500 ms: 504 with the request id in body and header.
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(direct.proxy()).await.expect("connect");
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let a = read_answer(&mut s, &mut buf, "GET").await;
    assert_eq!(a.status, 504);
    assert!(started.elapsed() >= Duration::from_millis(500));
    let v: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
    assert_eq!(v["message"], "The upstream server is timing out");
    assert_eq!(v["request_id"].as_str().map(str::len), Some(32));
    // The connection stays usable.
    s.write_all(b"GET /plain HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_answer(&mut s, &mut buf, "GET").await.status, 200);

    // Broken chunked framing from the upstream: the client's connection is
    // closed after what was valid, never left hanging.
    let (text, closed) = common::raw(
        direct.proxy(),
        b"GET /badchunk HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(closed, "connection left open");
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..100.min(text.len())]
    );
    // Broken before anything was sent to the client: a 502.
    let (text, closed) = common::raw(
        direct.proxy(),
        b"GET /badchunk-at-once HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(closed, "connection left open: {text}");
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
}

#[tokio::test]
async fn upstream_connect_failures_retry_and_answer_502() {
    let dead = common::closed_port().await;
    let (up, _) = raw_upstream().await;
    let yaml = format!(
        r#"
_format_version: "3.0"
upstreams:
  - name: pool
    targets:
      - target: 127.0.0.1:{dead}
      - target: {up}
services:
  - name: retried
    host: pool
    routes:
      - paths: ["/plain"]
        strip_path: false
  - name: dead
    url: http://127.0.0.1:{dead}
    retries: 2
    routes:
      - paths: ["/dead"]
"#
    );
    let gw = gateway_with(&yaml, loopback_options()).await;
    for _ in 0..6 {
        let a = ask(
            &gw,
            "GET /plain HTTP/1.1\r\nHost: a\r\nX-Case-Check: 1\r\n\r\n",
        )
        .await;
        assert_eq!(a.status, 200);
        assert!(String::from_utf8_lossy(&a.body).contains("X-Case-Check"));
    }
    let a = ask(&gw, "GET /dead HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(a.status, 502);
    let v: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
    assert_eq!(
        v["message"],
        "An invalid response was received from the upstream server"
    );
}

/// A request body sent in pieces, with the next request right behind it.
#[tokio::test]
async fn request_bodies_stream_through_the_direct_path() {
    let (direct, _general, _) = pair().await;
    let mut s = TcpStream::connect(direct.proxy()).await.expect("connect");
    let body: Vec<u8> = (0..300_000).map(|i| b'a' + (i % 26) as u8).collect();
    let head = format!(
        "POST /plain HTTP/1.1\r\nHost: a\r\nX-Case-Check: 1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(&body[..1000]).await.expect("first part");
    s.write_all(&body[1000..250_000]).await.expect("middle");
    // The end of the body and a whole next request in one write.
    let mut last = body[250_000..].to_vec();
    last.extend_from_slice(b"GET /plain?after=1 HTTP/1.1\r\nHost: a\r\nX-Case-Check: 1\r\n\r\n");
    s.write_all(&last).await.expect("last");
    let mut buf = Vec::new();
    let a = read_answer(&mut s, &mut buf, "POST").await;
    assert_eq!(a.status, 200);
    let end = a
        .body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("echoed head")
        + 4;
    assert!(
        String::from_utf8_lossy(&a.body[..end]).contains("X-Case-Check"),
        "direct path"
    );
    assert!(
        a.body[end..] == body[..],
        "the upstream got the body unchanged"
    );
    let b = read_answer(&mut s, &mut buf, "GET").await;
    assert_eq!(b.status, 200);
    let echoed = String::from_utf8_lossy(&b.body).into_owned();
    assert!(
        echoed.starts_with("GET /plain?after=1 HTTP/1.1"),
        "{echoed}"
    );
    assert!(echoed.contains("X-Case-Check"), "still on the direct path");
}

#[tokio::test]
async fn body_limits_and_stalled_bodies_on_the_direct_path() {
    let (up, _) = raw_upstream().await;
    let mut opts = loopback_options();
    opts.proxy.max_body_size = 100;
    opts.proxy.client_body_timeout = Duration::from_millis(300);
    let gw = gateway_with(&config(up), opts).await;
    // Over the limit by its Content-Length: 413, connection closed.
    let (text, closed) = common::raw(
        gw.proxy(),
        b"POST /plain HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("Request size limit exceeded"), "{text}");
    assert!(closed);
    // A body that stops coming: 400 after the client body timeout, closed.
    let started = std::time::Instant::now();
    let (text, closed) = common::raw(
        gw.proxy(),
        b"POST /plain HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
        Duration::from_secs(5),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(closed);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Within the limit it passes.
    let a = ask(
        &gw,
        "POST /plain HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(a.body.ends_with(b"\r\n\r\nabc"));
}

/// What the holding upstream saw.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A request head, by its `X-Seq` header.
    Got(String),
    /// The connection that carried request `X-Seq` was closed by the gateway.
    Closed(String),
}

/// An upstream for client aborts: `/held` is answered (200 "held") only
/// once `release` is notified; `/heldbody` sends its head and 2 of its 10
/// body bytes at once and the rest once `release` is notified. A close of
/// the connection while held is reported. Anything else is answered
/// 200 "ok" at once; after that answer, `/thenclose` closes its side of the
/// connection and `/thenwait` does not, and both report when the gateway
/// closes the connection.
async fn holding_upstream() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Seen>,
    Arc<tokio::sync::Notify>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Notify::new());
    let released = release.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            let release = released.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(end) = read_head(&mut s, &mut buf).await {
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let seq = head
                        .lines()
                        .find_map(|l| l.strip_prefix("X-Seq: ").or(l.strip_prefix("x-seq: ")))
                        .unwrap_or("?")
                        .to_owned();
                    let _ = tx.send(Seen::Got(seq.clone()));
                    let held_body = head.starts_with("GET /heldbody");
                    if held_body
                        && s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
                            .await
                            .is_err()
                    {
                        return;
                    }
                    let body = if head.starts_with("GET /held") {
                        let mut chunk = [0u8; 1024];
                        tokio::select! {
                            r = s.read(&mut chunk) => {
                                if matches!(r, Ok(0) | Err(_)) {
                                    let _ = tx.send(Seen::Closed(seq));
                                    return;
                                }
                                panic!("bytes from the gateway while a request is held");
                            }
                            () = release.notified() => "held",
                        }
                    } else {
                        "ok"
                    };
                    let answer = if held_body {
                        "cdefghij".to_owned()
                    } else {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    if head.starts_with("GET /then") {
                        if head.starts_with("GET /thenclose") {
                            let _ = s.shutdown().await;
                        }
                        let mut chunk = [0u8; 1024];
                        if matches!(s.read(&mut chunk).await, Ok(0) | Err(_)) {
                            let _ = tx.send(Seen::Closed(seq));
                        }
                        return;
                    }
                }
            });
        }
    });
    (addr, rx, release)
}

async fn next_seen(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the upstream saw nothing within 10 s")
        .expect("upstream gone")
}

/// Send `GET {path}` with `X-Seq: {seq}` on a new connection and wait
/// until the upstream has it.
async fn send_held(
    gw: &Gateway,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
    path: &str,
    seq: &str,
) -> TcpStream {
    let mut s = TcpStream::connect(gw.proxy()).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\nX-Seq: {seq}\r\n\r\n");
    s.write_all(request.as_bytes()).await.expect("write");
    assert_eq!(next_seen(rx).await, Seen::Got(seq.into()), "{path} {seq}");
    s
}

async fn holding_pair() -> (
    Gateway,
    Gateway,
    tokio::sync::mpsc::UnboundedReceiver<Seen>,
    Arc<tokio::sync::Notify>,
) {
    holding_pair_with(loopback_options()).await
}

async fn holding_pair_with(
    options: gateway_node::app::NodeOptions,
) -> (
    Gateway,
    Gateway,
    tokio::sync::mpsc::UnboundedReceiver<Seen>,
    Arc<tokio::sync::Notify>,
) {
    let (up, rx, release) = holding_upstream().await;
    // A read timeout far beyond the test's waits: only the client leaving
    // can end a held request in time. Retries on, so a retry would show.
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
  - name: held
    url: http://{up}
    read_timeout: 60000
    retries: 3
    routes:
      - name: all
        paths: ["/"]
        strip_path: false
"#
    );
    let (direct, general) = both_paths_with(&yaml, options).await;
    (direct, general, rx, release)
}

#[tokio::test]
async fn a_client_that_leaves_ends_its_upstream_request_on_both_paths() {
    let (direct, general, mut rx, _release) = holding_pair().await;
    for (name, gw) in [("direct", &direct), ("general", &general)] {
        drop(send_held(gw, &mut rx, "/held", "1").await);
        // The gateway closes the upstream connection (within 10 s, against
        // a 60 s read timeout) and does not send the request again: the
        // next request the upstream sees is a new one.
        assert_eq!(next_seen(&mut rx).await, Seen::Closed("1".into()), "{name}");

        // Part of the body came through; then the client leaves.
        let mut s = send_held(gw, &mut rx, "/heldbody", "3").await;
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\nab") {
            assert!(fill(&mut s, &mut got).await > 0, "{name}: no body start");
        }
        drop(s);
        assert_eq!(next_seen(&mut rx).await, Seen::Closed("3".into()), "{name}");
        // And a plain request after both.
        let mut s = send_held(gw, &mut rx, "/next", "2").await;
        let a = read_answer(&mut s, &mut Vec::new(), "GET").await;
        assert_eq!((a.status, a.body.as_slice()), (200, &b"ok"[..]), "{name}");

        // A client that only shuts down its sending side counts as gone too
        // (as in nginx and hyper by default): the held request ends and
        // the client gets no answer, just the close.
        let mut s = send_held(gw, &mut rx, "/held", "4").await;
        s.shutdown().await.expect("shutdown");
        assert_eq!(next_seen(&mut rx).await, Seen::Closed("4".into()), "{name}");
        let mut rest = Vec::new();
        assert_eq!(fill(&mut s, &mut rest).await, 0, "{name}: {rest:?}");
    }
}

#[tokio::test]
async fn a_request_pipelined_while_one_is_held_is_not_a_client_leaving() {
    let (direct, general, mut rx, release) = holding_pair().await;
    for (name, gw) in [("direct", &direct), ("general", &general)] {
        let mut s = send_held(gw, &mut rx, "/held", "1").await;
        // The next request arrives while the first is upstream ...
        s.write_all(b"GET /next HTTP/1.1\r\nHost: a\r\nX-Seq: 2\r\n\r\n")
            .await
            .expect("write");
        // The gateway runs on this test's single-threaded runtime: yielding
        // lets it poll its I/O and see those bytes before the first
        // response exists (on loopback they arrive within the write).
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        // ... and both are answered, in order, on the same connection.
        let mut buf = Vec::new();
        let first = read_answer(&mut s, &mut buf, "GET").await;
        assert_eq!(
            (first.status, first.body.as_slice()),
            (200, &b"held"[..]),
            "{name}"
        );
        let second = read_answer(&mut s, &mut buf, "GET").await;
        assert_eq!(
            (second.status, second.body.as_slice()),
            (200, &b"ok"[..]),
            "{name}"
        );
        assert_eq!(next_seen(&mut rx).await, Seen::Got("2".into()), "{name}");
    }
}

/// Send `path` and read its answer; the client connection stays open.
async fn answered(
    gw: &Gateway,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
    path: &str,
    seq: &str,
) -> TcpStream {
    let mut s = send_held(gw, rx, path, seq).await;
    let a = read_answer(&mut s, &mut Vec::new(), "GET").await;
    assert_eq!((seq, a.status, a.body.as_slice()), (seq, 200, &b"ok"[..]));
    s
}

#[tokio::test]
async fn an_idle_upstream_connection_its_upstream_closed_is_closed_on_both_paths() {
    let (direct, general, mut rx, _release) = holding_pair().await;
    for (name, gw) in [("direct", &direct), ("general", &general)] {
        // The client stays connected and sends nothing more, so only the
        // pool's own sweep can notice the upstream's FIN and close its end.
        let _client = answered(gw, &mut rx, "/thenclose", name).await;
        assert_eq!(next_seen(&mut rx).await, Seen::Closed(name.into()));
    }
}

#[tokio::test]
async fn idle_upstream_connections_are_closed_after_the_keepalive_idle_timeout() {
    let mut options = loopback_options();
    options.proxy.upstream_keepalive_idle_timeout = Duration::from_millis(300);
    let (direct, general, mut rx, _release) = holding_pair_with(options).await;
    for (name, gw) in [("direct", &direct), ("general", &general)] {
        let _client = answered(gw, &mut rx, "/thenwait", name).await;
        assert_eq!(next_seen(&mut rx).await, Seen::Closed(name.into()));
    }
}

#[tokio::test]
async fn a_keepalive_pool_of_size_zero_closes_each_upstream_connection() {
    let mut options = loopback_options();
    options.proxy.upstream_keepalive_pool_size = 0;
    let (direct, general, mut rx, _release) = holding_pair_with(options).await;
    for (name, gw) in [("direct", &direct), ("general", &general)] {
        let _client = answered(gw, &mut rx, "/thenwait", name).await;
        assert_eq!(next_seen(&mut rx).await, Seen::Closed(name.into()));
    }
}

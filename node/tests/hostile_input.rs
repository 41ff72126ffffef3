//! Bad requests get a clear 4xx (or a closed connection), never a panic, a
//! hang, or a forwarded request.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn setup(max_body: u64, header_timeout: Duration) -> (Gateway, Upstream) {
    setup_on(max_body, header_timeout, true).await
}

/// `setup`, on the direct path (as by default) or on the general path only.
async fn setup_on(
    max_body: u64,
    header_timeout: Duration,
    direct_path: bool,
) -> (Gateway, Upstream) {
    let up = echo_upstream("s").await;
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://127.0.0.1:{}
    routes: [{{ name: r, paths: [/] }}]
"#,
        up.port()
    );
    let mut opts = loopback_options();
    opts.proxy.max_body_size = max_body;
    opts.limits.header_read_timeout = header_timeout;
    opts.limits.max_header_size = 16 * 1024;
    opts.direct_path = direct_path;
    (gateway_with(&yaml, opts).await, up)
}

const WAIT: Duration = Duration::from_secs(3);

fn status_of(resp: &str) -> &str {
    resp.split_whitespace().nth(1).unwrap_or("")
}

#[tokio::test]
async fn malformed_request_line_is_400() {
    let (gw, up) = setup(0, Duration::from_secs(10)).await;
    let (resp, _) = raw(gw.proxy(), b"GARBAGE\r\n\r\n", WAIT).await;
    assert_eq!(status_of(&resp), "400", "{resp}");
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn oversized_header_section_is_431() {
    let (gw, up) = setup(0, Duration::from_secs(10)).await;
    let big = "a".repeat(20 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let (resp, _) = raw(gw.proxy(), req.as_bytes(), WAIT).await;
    assert_eq!(status_of(&resp), "431", "{resp}");
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn body_over_the_limit_is_413_with_length_or_chunked() {
    let (gw, up) = setup(1000, Duration::from_secs(10)).await;
    let req = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n";
    let (resp, _) = raw(gw.proxy(), req.as_bytes(), WAIT).await;
    assert_eq!(status_of(&resp), "413", "{resp}");
    assert_eq!(
        up.requests.load(Ordering::SeqCst),
        0,
        "declared length: rejected before forwarding"
    );

    let chunk = "x".repeat(800);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (resp, _) = raw(gw.proxy(), req.as_bytes(), WAIT).await;
    assert_eq!(status_of(&resp), "413", "{resp}");
    // Under the limit passes.
    let req =
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789";
    let (resp, _) = raw(gw.proxy(), req.as_bytes(), WAIT).await;
    assert_eq!(status_of(&resp), "200", "{resp}");
}

#[tokio::test]
async fn smuggling_shapes_are_400_and_close_the_connection() {
    for direct_path in [true, false] {
        let (gw, up) = setup_on(0, Duration::from_secs(10), direct_path).await;
        smuggling_shapes_on(&gw, &up, direct_path).await;
    }
}

async fn smuggling_shapes_on(gw: &Gateway, up: &Upstream, direct_path: bool) {
    let cases: &[(&str, &[u8])] = &[
        (
            "differing duplicate CL",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        (
            "TE not chunked",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n"),
        ("bare CR in header", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"),
        ("bare LF ending a header", b"GET / HTTP/1.1\r\nHost: x\nX-A: a\r\n\r\n"),
        ("bare LF line endings", b"GET / HTTP/1.1\nHost: x\nX-A: a\n\n"),
        (
            "a bare-LF line hiding a second head (hyper refuses it)",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\nGET /smuggled HTTP/1.1\r\n\r\n",
        ),
        ("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ];
    for (name, bytes) in cases {
        let name = format!("{name} (direct path on: {direct_path})");
        let before = up.requests.load(Ordering::SeqCst);
        let (resp, closed) = raw(gw.proxy(), bytes, WAIT).await;
        assert_eq!(status_of(&resp), "400", "{name}: {resp}");
        assert!(closed, "{name}: connection must be closed");
        assert!(!resp.contains("smuggled"), "{name}");
        if name.contains("bare LF") {
            assert!(resp.contains("LF without CR"), "{name}: {resp}");
        }
        assert_eq!(
            up.requests.load(Ordering::SeqCst),
            before,
            "{name}: never forwarded"
        );
    }
}

const CL_TE_REQUEST: &[u8] =
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// The gateway's own answer to a request with both framing headers.
fn assert_ambiguous_framing_400(name: &str, resp: &str) {
    assert_eq!(status_of(resp), "400", "{name}: {resp}");
    assert!(
        resp.contains("both Content-Length and Transfer-Encoding"),
        "{name}: the gateway's JSON error: {resp}"
    );
    assert!(
        resp.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{name}: {resp}"
    );
}

/// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 section 6.1
/// allows rejecting it; hyper alone would accept it, frame it by
/// `Transfer-Encoding` and forward it): 400 from the gateway, connection
/// closed, nothing forwarded, and the request smuggled after the body is
/// never parsed.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_400_and_never_forwarded() {
    let (gw, up) = setup(0, Duration::from_secs(10)).await;
    let cases: &[(&str, &[u8])] = &[
        ("CL then TE", CL_TE_REQUEST),
        (
            "TE then CL",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n",
        ),
        (
            "lower case, CL framing would smuggle",
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
    ];
    for (name, bytes) in cases {
        let (resp, closed) = raw(gw.proxy(), &[bytes, SMUGGLED].concat(), WAIT).await;
        assert_ambiguous_framing_400(name, &resp);
        assert!(closed, "{name}: connection must be closed: {resp}");
        assert_eq!(
            resp.matches("HTTP/1.1 ").count(),
            1,
            "{name}: exactly one response: {resp}"
        );
        assert!(!resp.contains("smuggled"), "{name}: {resp}");
        assert_eq!(
            up.requests.load(Ordering::SeqCst),
            0,
            "{name}: never forwarded"
        );
    }
}

/// The admin API and the demo services give the proxy's answer to both
/// framing headers: 400, connection closed. A `POST /config` framed that
/// way is never applied.
#[tokio::test]
async fn the_admin_api_and_demo_services_refuse_both_framing_headers() {
    let (gw, _up) = setup(0, Duration::from_secs(10)).await;
    let before = get(&gw.admin_url("/status")).await.json()["configuration_hash"].clone();
    let config =
        r#"{"_format_version":"3.0","services":[{"name":"x","url":"http://127.0.0.1:9"}]}"#;
    let chunked = format!("{:x}\r\n{config}\r\n0\r\n\r\n", config.len());
    let post = format!(
        "POST /config HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}"
    );
    let (resp, closed) = raw(gw.admin(), post.as_bytes(), WAIT).await;
    assert_ambiguous_framing_400("admin POST /config", &resp);
    assert!(closed, "admin: connection must be closed: {resp}");
    let after = get(&gw.admin_url("/status")).await.json()["configuration_hash"].clone();
    assert_eq!(before, after, "the refused config was not applied");
    // The same config with plain chunked framing is applied: the refusal
    // above was the framing, not the config.
    let (resp, _) = raw(
        gw.admin(),
        format!(
            "POST /config HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunked}"
        )
        .as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(status_of(&resp), "201", "{resp}");

    let shutdown = gateway_node::proxy::server::Shutdown::default();
    let demo = gateway_node::demo::start_service("foo", shutdown.clone())
        .await
        .expect("demo service");
    let (resp, closed) = raw(demo, &[CL_TE_REQUEST, SMUGGLED].concat(), WAIT).await;
    assert_ambiguous_framing_400("demo service", &resp);
    assert!(closed, "demo: connection must be closed: {resp}");
    assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "demo: {resp}");
    shutdown.trigger();
}

/// Statuses of the responses in `resp`, in order.
fn statuses(resp: &str) -> Vec<&str> {
    resp.split("HTTP/1.1 ")
        .skip(1)
        .map(|r| r.get(..3).unwrap_or(""))
        .collect()
}

#[tokio::test]
async fn a_pipelined_request_before_the_ambiguous_one_is_served() {
    let (gw, up) = setup(0, Duration::from_secs(10)).await;
    let first = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n";
    let (resp, closed) = raw(
        gw.proxy(),
        &[&first[..], CL_TE_REQUEST, SMUGGLED].concat(),
        WAIT,
    )
    .await;
    assert_eq!(statuses(&resp), ["200", "400"], "{resp}");
    assert!(resp.contains("\"path\":\"/first\""), "{resp}");
    assert!(closed, "{resp}");
    assert!(!resp.contains("smuggled"), "{resp}");
    let second = resp.rfind("HTTP/1.1 ").map_or("", |i| &resp[i..]);
    assert_ambiguous_framing_400("second", second);
    assert_eq!(up.requests.load(Ordering::SeqCst), 1);
}

/// Bodies that look like request heads, framed both ways, on one
/// keep-alive connection: (request bytes, path, body length).
fn keep_alive_requests() -> Vec<(Vec<u8>, &'static str, usize)> {
    let fake = "\r\n\r\nGET /fake HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut out = Vec::new();
    out.push((
        format!(
            "POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{fake}",
            fake.len()
        )
        .into_bytes(),
        "/cl",
        fake.len(),
    ));
    out.push((
        format!(
            "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:X};name=\"a;b\"\r\n{fake}\r\n3 ;x\r\n0\r\n\r\n{:x}\r\n{fake}\r\n\
             0;end\r\nX-Trailer: Content-Length: 9\r\n\r\n",
            fake.len(),
            fake.len()
        )
        .into_bytes(),
        "/chunked",
        2 * fake.len() + 3,
    ));
    out.push((
        b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        "/plain",
        0,
    ));
    out.push((
        b"POST /chunk-looking HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".to_vec(),
        "/chunk-looking",
        5,
    ));
    out.push((
        b"POST /empty-chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            .to_vec(),
        "/empty-chunked",
        0,
    ));
    out
}

/// Read one response (Content-Length or chunked body); `buf` keeps what was
/// read past it. `None` if the connection closed or went quiet first.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String)> {
    async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
        let mut b = [0u8; 4096];
        match tokio::time::timeout(WAIT, s.read(&mut b)).await {
            Ok(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&b[..n]);
                true
            }
            _ => false,
        }
    }
    let find = |buf: &[u8], pat: &[u8], from: usize| {
        buf.get(from..)?
            .windows(pat.len())
            .position(|w| w == pat)
            .map(|i| i + from)
    };
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n", 0) {
            break i + 4;
        }
        if !fill(s, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let mut body = Vec::new();
    let mut at = head_end;
    if head.contains("\r\ntransfer-encoding: chunked\r\n") {
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n", at) {
                    break i;
                }
                if !fill(s, buf).await {
                    return None;
                }
            };
            let size_text = String::from_utf8_lossy(&buf[at..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                while find(buf, b"\r\n", at) != Some(at) {
                    if !fill(s, buf).await {
                        return None;
                    }
                }
                at += 2;
                break;
            }
            while buf.len() < at + size + 2 {
                if !fill(s, buf).await {
                    return None;
                }
            }
            body.extend_from_slice(&buf[at..at + size]);
            at += size + 2;
        }
    } else {
        let len: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(Some(0), |v| v.trim().parse().ok())?;
        while buf.len() < head_end + len {
            if !fill(s, buf).await {
                return None;
            }
        }
        body.extend_from_slice(&buf[head_end..head_end + len]);
        at = head_end + len;
    }
    buf.drain(..at);
    Some((head, String::from_utf8_lossy(&body).into_owned()))
}

/// Everything until the server closes; true if it did close.
async fn read_to_close(s: &mut TcpStream, mut out: Vec<u8>) -> (String, bool) {
    let mut b = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(WAIT, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&b[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

fn assert_echoed(resp: &(String, String), path: &str, body_len: usize) {
    let (head, body) = resp;
    assert!(head.starts_with("http/1.1 200 "), "{path}: {head}{body}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    assert_eq!(v["path"], path, "{head}{body}");
    assert_eq!(v["body_len"], body_len, "{path}: {body}");
}

/// How the bytes of one request reach the gateway.
#[derive(Clone, Copy, Debug)]
enum Delivery {
    /// One write.
    Whole,
    /// The head one byte per write, the body in 7-byte writes.
    Trickled,
}

async fn send_request(s: &mut TcpStream, bytes: &[u8], how: Delivery) {
    match how {
        Delivery::Whole => s.write_all(bytes).await.expect("write"),
        Delivery::Trickled => {
            let head_len = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(bytes.len(), |i| i + 4);
            let (head, body) = bytes.split_at(head_len);
            for piece in head.chunks(1).chain(body.chunks(7)) {
                s.write_all(piece).await.expect("write");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
}

/// Several requests with bodies on one keep-alive connection, each sent
/// after the previous answer, then a request with both framing headers: all
/// served, then 400. The scanner watching the socket kept its place through
/// every body, or the last request would not be caught (or an earlier one
/// would be refused).
#[tokio::test]
async fn keep_alive_bodies_do_not_desync_the_framing_guard() {
    for how in [Delivery::Whole, Delivery::Trickled] {
        let (gw, up) = setup(0, Duration::from_secs(10)).await;
        let mut s = TcpStream::connect(gw.proxy()).await.expect("connect");
        let _ = s.set_nodelay(true);
        let mut buf = Vec::new();
        let requests = keep_alive_requests();
        for (bytes, path, body_len) in &requests {
            send_request(&mut s, bytes, how).await;
            let resp = read_response(&mut s, &mut buf)
                .await
                .unwrap_or_else(|| panic!("{how:?} {path}: no response"));
            assert_echoed(&resp, path, *body_len);
        }
        let cl_te_head = &CL_TE_REQUEST[..CL_TE_REQUEST.len() - 5];
        send_request(&mut s, cl_te_head, how).await;
        let (resp, closed) = read_to_close(&mut s, buf).await;
        assert_ambiguous_framing_400(&format!("{how:?}"), &resp);
        assert!(closed, "{how:?}: {resp}");
        assert_eq!(
            up.requests.load(Ordering::SeqCst),
            requests.len(),
            "{how:?}"
        );
    }
}

/// The same requests pipelined in one write.
#[tokio::test]
async fn pipelined_bodies_do_not_desync_the_framing_guard() {
    let (gw, up) = setup(0, Duration::from_secs(10)).await;
    let requests = keep_alive_requests();
    let mut all: Vec<u8> = requests.iter().flat_map(|r| r.0.clone()).collect();
    all.extend_from_slice(CL_TE_REQUEST);
    all.extend_from_slice(SMUGGLED);
    let mut s = TcpStream::connect(gw.proxy()).await.expect("connect");
    s.write_all(&all).await.expect("write");
    let mut buf = Vec::new();
    for (_, path, body_len) in &requests {
        let resp = read_response(&mut s, &mut buf)
            .await
            .unwrap_or_else(|| panic!("{path}: no response"));
        assert_echoed(&resp, path, *body_len);
    }
    let (resp, closed) = read_to_close(&mut s, buf).await;
    assert_ambiguous_framing_400("last", &resp);
    assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{resp}");
    assert!(closed, "{resp}");
    assert_eq!(up.requests.load(Ordering::SeqCst), requests.len());
}

#[tokio::test]
async fn slow_header_sender_is_cut_off() {
    let (gw, _up) = setup(0, Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    // Half a request line, then nothing.
    let (resp, closed) = raw(
        gw.proxy(),
        b"GET / HTTP/1.1\r\nHost:",
        Duration::from_secs(5),
    )
    .await;
    assert!(closed, "connection closed by the server: {resp:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The head of a chunked request comes first, its malformed first size
/// line later: the gateway waits for the first chunk before it sends
/// anything upstream, so the request is refused whole.
#[tokio::test]
async fn a_bad_first_chunk_after_the_head_is_refused_and_never_forwarded() {
    for direct_path in [true, false] {
        let (gw, up) = setup_on(0, Duration::from_secs(10), direct_path).await;
        let mut s = TcpStream::connect(gw.proxy()).await.expect("connect");
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .expect("head");
        // Give a gateway that forwards heads at once the time to do it.
        let forwarded = eventually(Duration::from_millis(500), || {
            let n = up.requests.load(Ordering::SeqCst);
            async move { n > 0 }
        })
        .await;
        assert!(
            !forwarded,
            "direct path {direct_path}: head sent upstream before any chunk"
        );
        s.write_all(b"zz\r\nhello\r\n0\r\n\r\n")
            .await
            .expect("body");
        let mut resp = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut resp)).await;
        let resp = String::from_utf8_lossy(&resp);
        assert_eq!(status_of(&resp), "400", "direct path {direct_path}: {resp}");
        assert_eq!(up.requests.load(Ordering::SeqCst), 0, "never forwarded");
    }
}

/// `Expect: 100-continue`: the client sends its body only after the
/// gateway's `100 Continue`. Reading a chunked body's first chunk before
/// going upstream must not deadlock on that, for either framing.
#[tokio::test]
async fn expect_100_continue_bodies_arrive_whole() {
    for direct_path in [true, false] {
        let (gw, _up) = setup_on(0, Duration::from_secs(10), direct_path).await;
        for (framing, body) in [
            (
                "Transfer-Encoding: chunked",
                &b"5\r\nhello\r\n0\r\n\r\n"[..],
            ),
            ("Content-Length: 5", &b"hello"[..]),
        ] {
            let what = format!("direct path {direct_path}, {framing}");
            let mut s = TcpStream::connect(gw.proxy()).await.expect("connect");
            let head = format!(
                "POST / HTTP/1.1\r\nHost: x\r\n{framing}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.expect("head");
            let mut got = Vec::new();
            let continued = tokio::time::timeout(WAIT, async {
                let mut b = [0u8; 256];
                while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&b[..n]),
                    }
                }
            })
            .await;
            let interim = String::from_utf8_lossy(&got).into_owned();
            assert!(
                continued.is_ok() && interim.starts_with("HTTP/1.1 100"),
                "{what}: {interim:?}"
            );
            s.write_all(body).await.expect("body");
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut rest)).await;
            let resp = String::from_utf8_lossy(&rest);
            assert_eq!(status_of(&resp), "200", "{what}: {resp}");
            assert!(resp.contains("\"body_len\":5"), "{what}: {resp}");
        }
    }
}

/// A slowloris client sends its head a byte at a time, each byte well
/// within any per-read timeout: the header-read timeout bounds the whole
/// head, so it is cut all the same, on both paths.
#[tokio::test]
async fn a_client_trickling_its_head_is_cut_off_at_the_header_read_timeout() {
    for direct_path in [true, false] {
        let (gw, up) = setup_on(0, Duration::from_millis(500), direct_path).await;
        let mut s = TcpStream::connect(gw.proxy()).await.expect("connect");
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Padding: ".to_vec();
        let started = std::time::Instant::now();
        let mut sent = 0usize;
        // One byte every 50 ms, bounded at 200 bytes (10 s), until the
        // gateway closes the connection.
        let cut = loop {
            let byte = head.get(sent).copied().unwrap_or(b'a');
            if s.write_all(&[byte]).await.is_err() {
                break true;
            }
            sent += 1;
            if sent >= 200 {
                break false;
            }
            let mut b = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(50), s.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(_)) | Err(_) => {}
            }
        };
        assert!(
            cut,
            "direct path {direct_path}: still open after {sent} bytes"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "direct path {direct_path}: cut after {:?}",
            started.elapsed()
        );
        assert_eq!(up.requests.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn invalid_path_encoding_is_400() {
    let (gw, up) = setup(0, Duration::from_secs(10)).await;
    let (resp, _) = raw(
        gw.proxy(),
        b"GET /a%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(status_of(&resp), "400", "{resp}");
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);
}

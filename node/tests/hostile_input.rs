//! Bad requests get a clear 4xx (or a closed connection), never a panic, a
//! hang, or a forwarded request.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

async fn setup(max_body: u64, header_timeout: Duration) -> (Gateway, Upstream) {
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
    let (gw, up) = setup(0, Duration::from_secs(10)).await;
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
        ("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ];
    for (name, bytes) in cases {
        let before = up.requests.load(Ordering::SeqCst);
        let (resp, closed) = raw(gw.proxy(), bytes, WAIT).await;
        assert_eq!(status_of(&resp), "400", "{name}: {resp}");
        assert!(closed, "{name}: connection must be closed");
        assert!(!resp.contains("smuggled"), "{name}");
        if *name != "bad chunk size" {
            assert_eq!(
                up.requests.load(Ordering::SeqCst),
                before,
                "{name}: never forwarded"
            );
        }
    }
}

/// Both `Content-Length` and `Transfer-Encoding`: hyper takes RFC 9112
/// section 6.1's other permitted answer: the message is framed by
/// `Transfer-Encoding` alone, `Content-Length` is dropped, and the connection
/// is closed after the response, so bytes smuggled after the chunked body are
/// never parsed as a request. What reaches the upstream is one re-framed
/// request without `Content-Length`.
#[tokio::test]
async fn content_length_with_transfer_encoding_never_smuggles() {
    let (gw, up) = setup(0, Duration::from_secs(10)).await;
    let (resp, closed) = raw(
        gw.proxy(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(closed, "connection closed after the response: {resp}");
    assert!(!resp.contains("smuggled"), "{resp}");
    assert_eq!(
        resp.matches("HTTP/1.1 ").count(),
        1,
        "exactly one response: {resp}"
    );
    assert_eq!(up.requests.load(Ordering::SeqCst), 1);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    let echoed: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    assert!(echoed["headers"].get("content-length").is_none(), "{resp}");
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

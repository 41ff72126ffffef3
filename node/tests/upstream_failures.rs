//! What a client gets when upstreams fail, on both request paths (the
//! direct HTTP/1.1 path and the general one): the exact number of attempts
//! `retries` allows, 503 once passive health checks have taken every target
//! out, and 504 for `connect_timeout` and `write_timeout`.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A gateway serving `yaml` on the direct path, and one on the general path.
async fn both_paths(yaml: &str) -> [(&'static str, Gateway); 2] {
    let mut general = loopback_options();
    general.direct_path = false;
    [
        ("direct", gateway_with(yaml, loopback_options()).await),
        ("general", gateway_with(yaml, general).await),
    ]
}

/// One service at `url` with the extra service `fields` (YAML lines at the
/// service's indentation), routed on `/`.
fn one_service(url: impl std::fmt::Display, fields: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: {url}\n{fields}    routes: [{{ name: r, paths: [/] }}]\n"
    )
}

/// An upstream that accepts connections and closes each at once, without
/// an answer; counts them.
async fn closing_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn retries_bound_the_attempts_exactly() {
    let targets = [
        closing_upstream().await,
        closing_upstream().await,
        closing_upstream().await,
    ];
    let yaml = format!(
        r#"
_format_version: "3.0"
upstreams:
  - name: pool
    targets:
      - target: {}
      - target: {}
      - target: {}
services:
  - name: none
    host: pool
    retries: 0
    routes: [{{ name: none, paths: [/none] }}]
  - name: two
    host: pool
    retries: 2
    routes: [{{ name: two, paths: [/two] }}]
"#,
        targets[0].0, targets[1].0, targets[2].0
    );
    let total = || {
        targets
            .iter()
            .map(|(_, n)| n.load(Ordering::SeqCst))
            .sum::<usize>()
    };
    for (name, gw) in both_paths(&yaml).await {
        for (path, attempts) in [("/none", 1), ("/two", 3)] {
            let before = total();
            let r = get(&gw.url(path)).await;
            assert_eq!(r.status, 502, "{name} {path}: {}", r.text());
            assert_eq!(total() - before, attempts, "{name} {path}: attempts");
        }
        // With retries: 2 on three targets, each target was tried once.
        let before: Vec<usize> = targets
            .iter()
            .map(|(_, n)| n.load(Ordering::SeqCst))
            .collect();
        assert_eq!(get(&gw.url("/two")).await.status, 502);
        for (i, (_, n)) in targets.iter().enumerate() {
            assert_eq!(
                n.load(Ordering::SeqCst) - before[i],
                1,
                "{name}: target {i}"
            );
        }
    }
}

#[tokio::test]
async fn no_healthy_target_left_is_503_and_the_health_endpoint_says_why() {
    let dead = closed_port().await;
    let yaml = format!(
        r#"
_format_version: "3.0"
upstreams:
  - name: pool
    healthchecks:
      passive:
        unhealthy:
          tcp_failures: 1
    targets:
      - target: 127.0.0.1:{dead}
services:
  - name: s
    host: pool
    retries: 0
    routes: [{{ name: r, paths: [/] }}]
"#
    );
    for (name, gw) in both_paths(&yaml).await {
        // The connect failure is a 502 and takes the only target out.
        let r = get(&gw.url("/x")).await;
        assert_eq!(r.status, 502, "{name}: {}", r.text());
        let r = get(&gw.url("/x")).await;
        assert_eq!(r.status, 503, "{name}: {}", r.text());
        let body = r.json();
        assert_eq!(
            body["message"], "failure to get a peer from the ring-balancer",
            "{name}"
        );
        assert_eq!(
            body["request_id"],
            r.headers["x-gateway-request-id"].to_str().expect("ascii"),
            "{name}"
        );
        let health = get(&gw.admin_url("/upstreams/pool/health")).await.json();
        assert_eq!(health["data"][0]["health"], "UNHEALTHY", "{name}: {health}");
    }
}

/// A listener whose accept queue is full and never drained: a further
/// connection attempt gets no answer to its SYN, so it hangs until the
/// connecting side gives up. Returns its address and the connections that
/// fill the queue (keep them open).
async fn unanswered_listener() -> (SocketAddr, Vec<TcpStream>, TcpListener) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    let listener = socket.listen(1).expect("listen");
    let mut held = Vec::new();
    // The kernel queues backlog + 1 connections; bounded in count and time.
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => held.push(s),
            _ => return (addr, held, listener),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

#[tokio::test]
async fn connect_timeout_is_504_after_the_allowed_attempts() {
    let (addr, _held, _listener) = unanswered_listener().await;
    let yaml = one_service(
        format!("http://{addr}"),
        "    connect_timeout: 300\n    retries: 1\n",
    );
    for (name, gw) in both_paths(&yaml).await {
        let started = tokio::time::Instant::now();
        let r = get(&gw.url("/x")).await;
        assert_eq!(r.status, 504, "{name}: {}", r.text());
        assert_eq!(r.json()["message"], "The upstream server is timing out");
        // Two attempts of 300 ms each (retries: 1).
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "{name}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn write_timeout_is_504_when_the_upstream_stops_reading_the_body() {
    // Reads the request head, then neither reads nor answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            held.push(s);
        }
    });
    let yaml = one_service(
        format!("http://{addr}"),
        "    write_timeout: 300\n    read_timeout: 60000\n    retries: 0\n",
    );
    // More than loopback socket buffers on both hops can hold.
    const BODY: usize = 64 << 20;
    for (name, gw) in both_paths(&yaml).await {
        let mut s = TcpStream::connect(gw.proxy()).await.expect("connect");
        let head = format!("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: {BODY}\r\n\r\n");
        s.write_all(head.as_bytes()).await.expect("head");
        let (mut rd, mut wr) = s.into_split();
        // Send the body until the gateway stops taking it; read the answer.
        let sender = tokio::spawn(async move {
            let chunk = vec![b'x'; 64 << 10];
            let mut sent = 0;
            while sent < BODY {
                if wr.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
        });
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), async {
            let mut b = [0u8; 4096];
            loop {
                match rd.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&b[..n]),
                }
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        })
        .await;
        sender.abort();
        assert!(read.is_ok(), "{name}: no answer within 20 s");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 504"), "{name}: {answer}");
    }
}

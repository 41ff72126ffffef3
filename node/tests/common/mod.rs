//! Shared test fixtures: real upstream servers on loopback, an in-process
//! gateway node, and clients (hyper, and raw sockets for hostile input).
#![allow(dead_code)]

pub mod region;

use bytes::Bytes;
use gateway_config::SourceFile;
use gateway_node::app::{new_live_config, Node, NodeOptions};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub type BoxBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A real HTTP upstream on 127.0.0.1:0.
pub struct Upstream {
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Requests answered so far.
    pub requests: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Start an upstream whose requests are answered by `handler` (HTTP/1.1
/// and h2c prior knowledge, with upgrades).
pub async fn upstream<H, F>(handler: H) -> Upstream
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<BoxBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let r = r.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    r.fetch_add(1, Ordering::SeqCst);
                    let fut = handler(req);
                    async move { Ok::<_, std::convert::Infallible>(fut.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Upstream {
        addr,
        connections,
        requests,
    }
}

/// An upstream that answers with a JSON echo of the request:
/// `{"server", "method", "path", "query", "headers": {name: value}, "body_len"}`.
/// Request headers `x-test-status` and `x-test-delay-ms` set the status and
/// delay the answer.
pub async fn echo_upstream(name: &'static str) -> Upstream {
    upstream(move |req: Request<Incoming>| async move {
        let (parts, body) = req.into_parts();
        let status = parts
            .headers
            .get("x-test-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u16>().ok())
            .unwrap_or(200);
        if let Some(ms) = parts
            .headers
            .get("x-test-delay-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let body_len = body
            .collect()
            .await
            .map(|b| b.to_bytes().len())
            .unwrap_or(usize::MAX);
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into(),
                )
            })
            .collect();
        let v = serde_json::json!({
            "server": name,
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "body_len": body_len,
        });
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("connection", "keep-alive")
            .header("x-upstream-hop", "should-be-removed")
            .body(full(v.to_string()))
            .expect("response")
    })
    .await
}

/// A free loopback port nobody listens on (bound then released).
pub async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

/// A free loopback port for a server that another process (a gateway node,
/// git daemon) binds later. [`closed_port`] comes from the kernel's
/// ephemeral range, where any outgoing connection of any process can take
/// it before the server binds ("Address already in use" seen in CI). This
/// picks from 20000..32000, below that range (32768+ by default), checks it
/// is free now, and never hands the same port out twice in this process.
pub async fn server_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..10_000 {
        let port: u16 = rand::random_range(20000..32000);
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        let given = given.get_or_insert_with(HashSet::new);
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in 20000..32000");
}

/// An in-process gateway node on ephemeral loopback ports.
pub struct Gateway {
    pub node: Node,
}

impl Gateway {
    pub fn proxy(&self) -> SocketAddr {
        self.node.proxy_addr
    }
    pub fn admin(&self) -> SocketAddr {
        self.node.admin_addr
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node.proxy_addr)
    }
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node.admin_addr)
    }
}

pub fn loopback_options() -> NodeOptions {
    NodeOptions {
        proxy_listen: "127.0.0.1:0".parse().expect("addr"),
        admin_listen: "127.0.0.1:0".parse().expect("addr"),
        drain_timeout: Duration::from_secs(5),
        node_id: "test-node".into(),
        ..NodeOptions::default()
    }
}

/// Start a gateway serving `yaml` (must be valid).
pub async fn gateway(yaml: &str) -> Gateway {
    gateway_with(yaml, loopback_options()).await
}

pub async fn gateway_with(yaml: &str, opts: NodeOptions) -> Gateway {
    let live = new_live_config().expect("live config");
    live.apply_files(&[SourceFile {
        name: "test.yml".into(),
        text: yaml.into(),
    }])
    .await
    .unwrap_or_else(|e| panic!("test config must be valid: {e}"));
    let node = Node::start(opts, live).await.expect("start node");
    Gateway { node }
}

/// A keep-alive HTTP/1.1 client.
pub fn client(
) -> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, BoxBody>
{
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 prior-knowledge (h2c) client.
pub fn h2c_client(
) -> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, BoxBody>
{
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response read to the end.
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn send(req: Request<BoxBody>) -> Got {
    let resp = client().request(req).await.expect("request");
    read(resp).await
}

pub async fn read(resp: Response<Incoming>) -> Got {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Got {
    send(Request::get(url).body(full("")).expect("req")).await
}

pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Got {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(full("")).expect("req")).await
}

pub async fn post(url: &str, content_type: &str, body: impl Into<Bytes>) -> Got {
    send(
        Request::post(url)
            .header("content-type", content_type)
            .body(full(body.into()))
            .expect("req"),
    )
    .await
}

/// Send raw bytes on a fresh connection; return everything the server sent
/// until it closed the connection or `wait` passed without new data.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Poll `check` until it returns true or `deadline` passes.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! `gateway demo`: two built-in microservices, foo and bar, answering
//! `{"msg":"Hello from the foo microservice"}`, and the embedded config
//! routing `/foo` and `/bar` to them.

use crate::proxy::body::full;
use crate::proxy::server::{refuse_bad_framing, serve, HttpLimits, Shutdown};
use http::{header, HeaderValue, Response};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// The embedded demo config; `FOO_PORT` / `BAR_PORT` are filled in.
pub const DEMO_CONFIG: &str = include_str!("kong.yml");

/// The demo config for services listening on these ports.
pub fn demo_config(foo_port: u16, bar_port: u16) -> String {
    DEMO_CONFIG
        .replace("FOO_PORT", &foo_port.to_string())
        .replace("BAR_PORT", &bar_port.to_string())
}

/// Start one demo microservice on `127.0.0.1:0`; returns its address.
pub async fn start_service(name: &'static str, shutdown: Shutdown) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let body =
        serde_json::json!({ "msg": format!("Hello from the {name} microservice") }).to_string();
    tokio::spawn(serve(
        listener,
        HttpLimits::default(),
        None,
        shutdown,
        Duration::from_secs(1),
        move |req, conn| {
            let body = body.clone();
            refuse_bad_framing(req, conn, move |_req| async move {
                let mut resp = Response::new(full(body));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            })
        },
    ));
    Ok(addr)
}

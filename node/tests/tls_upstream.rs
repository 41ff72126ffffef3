//! https upstreams: TLS with verification on by default.

mod common;

use common::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::sync::Arc;

/// A CA, and an HTTPS echo upstream on 127.0.0.1 whose certificate for
/// `localhost` that CA signed. Returns (port, CA PEM).
async fn tls_upstream() -> (u16, String) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key der"),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        if req.uri().path() == "/grpc.health.v1.Health/Check" {
                            return Ok(grpc_serving_response());
                        }
                        let body = serde_json::json!({ "tls": true, "path": req.uri().path(),
                        "host": req.headers().get("host").and_then(|h| h.to_str().ok()) });
                        let mut resp = http::Response::new(full(body.to_string()));
                        if req.uri().path() == "/fail" {
                            *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, ca_cert.pem())
}

/// A gRPC `HealthCheckResponse{status: SERVING}` with `grpc-status: 0`
/// in the trailers.
fn grpc_serving_response() -> http::Response<BoxBody> {
    use http_body_util::BodyExt;
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames: Vec<Result<hyper::body::Frame<hyper::body::Bytes>, std::convert::Infallible>> = vec![
        Ok(hyper::body::Frame::data(hyper::body::Bytes::from_static(
            &[0, 0, 0, 0, 2, 0x08, 1],
        ))),
        Ok(hyper::body::Frame::trailers(trailers)),
    ];
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames))
        .map_err(|e| match e {})
        .boxed();
    http::Response::builder()
        .header("content-type", "application/grpc")
        .body(body)
        .expect("response")
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

#[tokio::test]
async fn https_upstreams_are_verified_by_default() {
    let (port, ca_pem) = tls_upstream().await;
    let yaml = format!(
        r#"
_format_version: "3.0"
ca_certificates:
  - id: 4e3ad2e4-0bc4-4638-8e34-c84a417ba39b
    cert: |
{ca}
services:
  - name: unknown-ca
    url: https://localhost:{port}
    retries: 0
    routes: [{{ name: a, paths: [/unknown-ca] }}]
  - name: trusted-ca
    url: https://localhost:{port}/base
    ca_certificates: [4e3ad2e4-0bc4-4638-8e34-c84a417ba39b]
    routes: [{{ name: b, paths: [/trusted-ca] }}]
  - name: no-verify
    url: https://localhost:{port}
    tls_verify: false
    routes: [{{ name: c, paths: [/no-verify] }}]
"#,
        ca = indent(&ca_pem)
    );
    let gw = gateway(&yaml).await;

    let r = get(&gw.url("/unknown-ca")).await;
    assert_eq!(
        r.status,
        502,
        "certificate from an unknown CA is refused: {}",
        r.text()
    );

    let r = get(&gw.url("/trusted-ca/x")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["tls"], true);
    assert_eq!(v["path"], "/base/x");
    assert_eq!(v["host"], format!("localhost:{port}"));

    let r = get(&gw.url("/no-verify")).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// An upstream named `name` whose only target is the TLS test server on
/// `port`, with active checks of `kind` (`https` or `grpcs`) every 50 ms;
/// one success makes it healthy, one failure unhealthy.
fn tls_checked_upstream(kind: &str, name: &str, path: &str, verify: bool, port: u16) -> String {
    format!(
        r#"
  - name: {name}
    healthchecks:
      active:
        type: {kind}
        http_path: {path}
        https_verify_certificate: {verify}
        https_sni: localhost
        healthy: {{ interval: 0.05, successes: 1 }}
        unhealthy: {{ interval: 0.05, http_failures: 1, tcp_failures: 1 }}
    targets: [{{ target: "127.0.0.1:{port}" }}]"#
    )
}

/// The id of the test CA in [`config_with_test_ca`].
const TEST_CA_ID: &str = "4e3ad2e4-0bc4-4638-8e34-c84a417ba39b";

/// A config with the test CA as a `ca_certificates` entry (`TEST_CA_ID`),
/// `upstreams` and the YAML `services` items.
fn config_with_test_ca(ca_pem: &str, upstreams: &[String], services: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nca_certificates:\n  - id: {TEST_CA_ID}\n    cert: |\n{ca}upstreams:{ups}\nservices:{services}",
        ca = indent(ca_pem),
        ups = upstreams.concat(),
    )
}

/// Poll each upstream's `/upstreams/{name}/health` until all show the
/// wanted health (at most 10 s).
async fn wait_health(gw: &Gateway, want: &[(&str, &str)]) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut got = Vec::new();
        for (name, _) in want {
            let r = get(&gw.admin_url(&format!("/upstreams/{name}/health"))).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let health = r.json()["data"][0]["health"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            got.push((*name, health));
        }
        if want.iter().zip(&got).all(|((_, w), (_, g))| g == w) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health after 10 s: {got:?}, want {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `healthchecks.active.type: https` probes over TLS: the status is read
/// through the handshake, an untrusted certificate is a failure, and the
/// CAs of the upstream's services are trusted (a TCP-only probe would mark
/// every target here healthy).
#[tokio::test]
async fn https_active_health_checks_verify_and_read_the_status() {
    let (port, ca_pem) = tls_upstream().await;
    let upstreams = [
        tls_checked_upstream("https", "trusted", "/ok", true, port),
        tls_checked_upstream("https", "untrusted", "/ok", true, port),
        tls_checked_upstream("https", "unverified", "/ok", false, port),
        tls_checked_upstream("https", "failing", "/fail", false, port),
    ];
    let services = format!(
        r#"
  - name: trusted
    host: trusted
    protocol: https
    ca_certificates: [{TEST_CA_ID}]
  - name: untrusted
    host: untrusted
    protocol: https
    tls_verify: false
"#
    );
    let gw = gateway(&config_with_test_ca(&ca_pem, &upstreams, &services)).await;
    wait_health(
        &gw,
        &[
            ("trusted", "HEALTHY"),
            ("untrusted", "UNHEALTHY"),
            ("unverified", "HEALTHY"),
            ("failing", "UNHEALTHY"),
        ],
    )
    .await;
}

/// `type: grpcs` runs the gRPC health check over TLS (ALPN h2): `SERVING`
/// from a server whose certificate the upstream's services trust is
/// healthy (`http_path` points at a 500, so only the gRPC call can make it
/// so); the same server is unhealthy for an upstream that does not trust
/// its CA (a failed handshake is a TCP failure).
#[tokio::test]
async fn grpcs_active_health_checks_call_the_health_service_over_tls() {
    let (port, ca_pem) = tls_upstream().await;
    let upstreams = [
        tls_checked_upstream("grpcs", "trusted", "/fail", true, port),
        tls_checked_upstream("grpcs", "untrusted", "/fail", true, port),
    ];
    let services = format!(
        r#"
  - name: trusted
    host: trusted
    protocol: grpcs
    ca_certificates: [{TEST_CA_ID}]
"#
    );
    let gw = gateway(&config_with_test_ca(&ca_pem, &upstreams, &services)).await;
    wait_health(&gw, &[("trusted", "HEALTHY"), ("untrusted", "UNHEALTHY")]).await;
}

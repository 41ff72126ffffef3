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
                        let body = serde_json::json!({ "tls": true, "path": req.uri().path(),
                        "host": req.headers().get("host").and_then(|h| h.to_str().ok()) });
                        Ok::<_, std::convert::Infallible>(http::Response::new(full(
                            body.to_string(),
                        )))
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

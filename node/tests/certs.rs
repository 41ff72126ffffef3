//! Cluster certificates (`gateway_node::certs`): real files in a temporary
//! directory, checked with rustls' own verifiers and real mTLS handshakes.

use gateway_node::certs::{self, CertError, CertKind, ClusterTlsFiles};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::{CertificateError, RootCertStore};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA in `dir` plus a node cert `gw-eu-0` and a client cert `ops`.
fn cluster(dir: &Path) {
    certs::init_ca(dir, certs::DEFAULT_CA_NAME, false).expect("init ca");
    certs::issue(dir, CertKind::Node, "gw-eu-0", &[], false).expect("issue node");
    certs::issue(dir, CertKind::Client, "ops", &[], false).expect("issue client");
}

fn cert_der(path: &Path) -> CertificateDer<'static> {
    let mut certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .expect("open cert")
        .collect::<Result<_, _>>()
        .expect("parse cert");
    assert_eq!(
        certs.len(),
        1,
        "{}: exactly one certificate",
        path.display()
    );
    certs.remove(0)
}

fn key_der(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).expect("key")
}

fn roots(dir: &Path) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(cert_der(&dir.join("ca.pem"))).expect("add root");
    Arc::new(roots)
}

fn client_verifier(dir: &Path) -> Arc<dyn ClientCertVerifier> {
    rustls::server::WebPkiClientVerifier::builder_with_provider(roots(dir), provider())
        .build()
        .expect("client verifier")
}

fn server_verifier(dir: &Path) -> Arc<rustls::client::WebPkiServerVerifier> {
    rustls::client::WebPkiServerVerifier::builder_with_provider(roots(dir), provider())
        .build()
        .expect("server verifier")
}

fn verify_server(
    dir: &Path,
    cert: &CertificateDer<'_>,
    name: &'static str,
) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(name).expect("server name");
    server_verifier(dir)
        .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn init_and_issue_write_files_and_refuse_to_overwrite() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("certs");
    let ca = certs::init_ca(&dir, certs::DEFAULT_CA_NAME, false).expect("init ca");
    assert_eq!(ca.cert, dir.join("ca.pem"));
    assert_eq!(ca.key, dir.join("ca.key"));
    let node = certs::issue(
        &dir,
        CertKind::Node,
        "gw-eu-0",
        &["10.0.0.5".to_owned(), "gw-eu-0.internal".to_owned()],
        false,
    )
    .expect("issue node");
    assert_eq!(node.cert, dir.join("gw-eu-0.pem"));
    assert_eq!(node.key, dir.join("gw-eu-0.key"));
    assert_eq!(
        node.subject_alt_names,
        [
            "gw-eu-0",
            "localhost",
            "127.0.0.1",
            "::1",
            "10.0.0.5",
            "gw-eu-0.internal"
        ]
    );
    let client = certs::issue(&dir, CertKind::Client, "ops", &[], false).expect("issue client");
    assert_eq!(client.subject_alt_names, ["ops"]);

    for file in [
        "ca.pem",
        "ca.key",
        "gw-eu-0.pem",
        "gw-eu-0.key",
        "ops.pem",
        "ops.key",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    // Leaf files hold just the leaf.
    cert_der(&node.cert);
    cert_der(&client.cert);
    #[cfg(unix)]
    {
        for key in ["ca.key", "gw-eu-0.key", "ops.key"] {
            assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
        }
        assert_eq!(mode(&dir), 0o700);
    }

    // No silent overwrite: the error names the file, and nothing changed.
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let ca_key = std::fs::read_to_string(dir.join("ca.key")).unwrap();
    let err = certs::init_ca(&dir, "other", false).expect_err("init over an existing CA");
    assert!(matches!(err, CertError::Exists { .. }), "{err:?}");
    assert!(err.to_string().contains("ca.pem"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("ca.pem")).unwrap(), ca_pem);
    assert_eq!(std::fs::read_to_string(dir.join("ca.key")).unwrap(), ca_key);
    let err = certs::issue(&dir, CertKind::Node, "gw-eu-0", &[], false).expect_err("reissue");
    assert!(err.to_string().contains("gw-eu-0.pem"), "{err}");

    // Only the key left over (e.g. a crashed run): still refused, named.
    std::fs::remove_file(dir.join("ops.pem")).unwrap();
    let err = certs::issue(&dir, CertKind::Client, "ops", &[], false).expect_err("key exists");
    assert!(err.to_string().contains("ops.key"), "{err}");

    // --force replaces, keeping the key private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let loose = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(dir.join("gw-eu-0.key"), loose).unwrap();
    }
    let old_node_key = std::fs::read_to_string(&node.key).unwrap();
    certs::issue(&dir, CertKind::Node, "gw-eu-0", &[], true).expect("forced reissue");
    assert_ne!(std::fs::read_to_string(&node.key).unwrap(), old_node_key);
    #[cfg(unix)]
    assert_eq!(mode(&node.key), 0o600);
    certs::init_ca(&dir, "second CA", true).expect("forced init");
    assert_ne!(std::fs::read_to_string(dir.join("ca.pem")).unwrap(), ca_pem);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn bad_names_sans_and_missing_ca_are_reported_with_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();

    // No CA yet.
    let err = certs::issue(dir, CertKind::Node, "gw-eu-0", &[], false).expect_err("no CA");
    assert!(err.to_string().contains("ca.pem"), "{err}");
    assert!(!dir.join("gw-eu-0.key").exists());

    certs::init_ca(dir, certs::DEFAULT_CA_NAME, false).expect("init ca");
    for bad in [
        "",
        "a/b",
        "../evil",
        "has space",
        ".hidden",
        "ca",
        "gw\u{e9}",
    ] {
        let err = certs::issue(dir, CertKind::Client, bad, &[], false)
            .expect_err(&format!("name {bad:?} accepted"));
        assert!(
            matches!(err, CertError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
    let err = certs::issue(
        dir,
        CertKind::Node,
        "gw-eu-1",
        &["bad name".to_owned()],
        false,
    )
    .expect_err("bad SAN");
    assert!(matches!(err, CertError::InvalidSan { .. }), "{err:?}");
    assert!(err.to_string().contains("gw-eu-1.pem"), "{err}");
    assert!(!dir.join("gw-eu-1.pem").exists() && !dir.join("gw-eu-1.key").exists());

    // A key that does not belong to the CA certificate.
    std::fs::remove_file(dir.join("ca.key")).unwrap();
    let other = tempfile::tempdir().expect("tempdir");
    certs::init_ca(other.path(), "other", false).expect("other ca");
    std::fs::copy(other.path().join("ca.key"), dir.join("ca.key")).unwrap();
    let err = certs::issue(dir, CertKind::Node, "gw-eu-1", &[], false).expect_err("mismatch");
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("ca.key"), "{err}");

    // A leaf is not a CA.
    certs::issue(other.path(), CertKind::Node, "leaf", &[], false).expect("leaf");
    std::fs::copy(other.path().join("leaf.pem"), dir.join("ca.pem")).unwrap();
    std::fs::copy(other.path().join("leaf.key"), dir.join("ca.key")).unwrap();
    let err = certs::issue(dir, CertKind::Node, "gw-eu-1", &[], false).expect_err("leaf as CA");
    assert!(err.to_string().contains("not a CA"), "{err}");
    assert!(err.to_string().contains("ca.pem"), "{err}");
}

#[test]
fn certificate_contents() {
    use x509_parser::extensions::GeneralName;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    cluster(dir);
    let now = SystemTime::now();
    let year = Duration::from_secs(365 * 24 * 3600);

    let ca_der = cert_der(&dir.join("ca.pem"));
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("parse ca");
    assert_eq!(ca.subject().to_string(), "CN=gateway cluster CA");
    assert_eq!(ca.issuer(), ca.subject());
    let bc = ca.basic_constraints().unwrap().expect("basicConstraints");
    assert!(bc.value.ca && bc.value.path_len_constraint.is_none());
    let ku = ca.key_usage().unwrap().expect("keyUsage").value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    let ca_end = SystemTime::from(ca.validity().not_after.to_datetime());
    assert!(ca_end > now + 9 * year && ca_end < now + 11 * year);
    assert_eq!(
        ca.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );

    for (name, kind) in [("gw-eu-0", CertKind::Node), ("ops", CertKind::Client)] {
        let der = cert_der(&dir.join(format!("{name}.pem")));
        let (_, leaf) = x509_parser::parse_x509_certificate(&der).expect("parse leaf");
        assert_eq!(leaf.subject().to_string(), format!("CN={name}"));
        assert_eq!(leaf.issuer(), ca.subject());
        assert!(!leaf.is_ca());
        let eku = leaf.extended_key_usage().unwrap().expect("EKU").value;
        assert!(eku.client_auth);
        assert_eq!(eku.server_auth, kind == CertKind::Node, "{name}");
        let end = SystemTime::from(leaf.validity().not_after.to_datetime());
        assert!(end > now + year && end < now + 3 * year, "{name}");
        let sans: Vec<String> = leaf
            .subject_alternative_name()
            .unwrap()
            .expect("SAN")
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                other => panic!("unexpected SAN {other:?}"),
            })
            .collect();
        match kind {
            CertKind::Node => assert_eq!(
                sans,
                [
                    "gw-eu-0".to_owned(),
                    "localhost".to_owned(),
                    format!("ip:{:?}", [127u8, 0, 0, 1]),
                    format!("ip:{:?}", std::net::Ipv6Addr::LOCALHOST.octets()),
                ]
            ),
            CertKind::Client => assert_eq!(sans, ["ops"]),
        }
    }
}

#[test]
fn rustls_verifiers_accept_the_chain_and_enforce_purposes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    cluster(dir);
    let node = cert_der(&dir.join("gw-eu-0.pem"));
    let client = cert_der(&dir.join("ops.pem"));

    // Both are acceptable client certificates.
    let verifier = client_verifier(dir);
    verifier
        .verify_client_cert(&node, &[], UnixTime::now())
        .expect("node cert as client cert");
    verifier
        .verify_client_cert(&client, &[], UnixTime::now())
        .expect("client cert as client cert");

    // The node cert is a server cert for its name, localhost and 127.0.0.1 ...
    for name in ["gw-eu-0", "localhost", "127.0.0.1", "::1"] {
        verify_server(dir, &node, name).unwrap_or_else(|e| panic!("node cert for {name}: {e}"));
    }
    // ... and nothing else.
    let err = verify_server(dir, &node, "gw-eu-1").expect_err("wrong name");
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{err:?}"
    );
    // The client cert has no serverAuth.
    let err = verify_server(dir, &client, "ops").expect_err("client cert as server cert");
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
            )
        ),
        "{err:?}"
    );
    // The CA itself is not an end-entity certificate for anybody.
    let ca = cert_der(&dir.join("ca.pem"));
    verifier
        .verify_client_cert(&ca, &[], UnixTime::now())
        .expect_err("CA cert as client cert");
}

#[test]
fn certificates_of_another_ca_are_rejected() {
    let ours = tempfile::tempdir().expect("tempdir");
    let theirs = tempfile::tempdir().expect("tempdir");
    cluster(ours.path());
    // Same CA name and same leaf names: only the keys differ.
    cluster(theirs.path());
    let verifier = client_verifier(ours.path());
    for name in ["gw-eu-0", "ops"] {
        let foreign = cert_der(&theirs.path().join(format!("{name}.pem")));
        let err = verifier
            .verify_client_cert(&foreign, &[], UnixTime::now())
            .expect_err("foreign client cert accepted");
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature
                )
            ),
            "{name}: {err:?}"
        );
    }
    let foreign_node = cert_der(&theirs.path().join("gw-eu-0.pem"));
    verify_server(ours.path(), &foreign_node, "gw-eu-0").expect_err("foreign server cert");
}

/// A TLS echo server on 127.0.0.1 presenting `gw-eu-0` and requiring a
/// client certificate signed by the CA in `dir`. Each connection's result
/// (`Ok` = handshake and echo completed) is sent to the returned channel.
async fn mtls_server(
    dir: &Path,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Result<(), String>>,
) {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(client_verifier(dir))
        .with_single_cert(
            vec![cert_der(&dir.join("gw-eu-0.pem"))],
            key_der(&dir.join("gw-eu-0.key")),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let result = async {
                    let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
                    let mut buf = [0u8; 4];
                    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
                    tls.write_all(&buf).await.map_err(|e| e.to_string())?;
                    tls.shutdown().await.map_err(|e| e.to_string())
                }
                .await;
                let _ = tx.send(result);
            });
        }
    });
    (addr, rx)
}

/// Connects to `addr` as `127.0.0.1`, trusting the CA in `trust`, with the
/// given client identity, and does a 4-byte echo.
async fn mtls_client(
    addr: std::net::SocketAddr,
    trust: &Path,
    identity: Option<(&Path, &str)>,
) -> Result<(), String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots(trust));
    let config = match identity {
        Some((dir, name)) => builder
            .with_client_auth_cert(
                vec![cert_der(&dir.join(format!("{name}.pem")))],
                key_der(&dir.join(format!("{name}.key"))),
            )
            .expect("client identity"),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from("127.0.0.1").expect("ip");
    let mut tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    // With TLS 1.3 the server checks the client certificate after the
    // client considers the handshake done: a rejection shows up here.
    tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    if &buf != b"ping" {
        return Err(format!("echo mismatch: {buf:?}"));
    }
    Ok(())
}

#[tokio::test]
async fn mtls_handshake_needs_a_certificate_from_the_cluster_ca() {
    let ours = tempfile::tempdir().expect("tempdir");
    let theirs = tempfile::tempdir().expect("tempdir");
    cluster(ours.path());
    cluster(theirs.path());
    let (addr, mut results) = mtls_server(ours.path()).await;
    let timeout = Duration::from_secs(10);
    let server_result = |r: Option<Result<(), String>>| r.expect("server task result");

    // (a) A node certificate (nodes are clients of each other), and a
    //     client certificate: accepted.
    for name in ["gw-eu-0", "ops"] {
        let client = mtls_client(addr, ours.path(), Some((ours.path(), name)));
        tokio::time::timeout(timeout, client)
            .await
            .expect("timeout")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let server = tokio::time::timeout(timeout, results.recv()).await;
        server_result(server.expect("timeout")).expect("server side");
    }

    // (b) No client certificate: rejected by the server.
    let client = tokio::time::timeout(timeout, mtls_client(addr, ours.path(), None))
        .await
        .expect("timeout");
    assert!(client.is_err(), "no client cert: {client:?}");
    let server = server_result(
        tokio::time::timeout(timeout, results.recv())
            .await
            .expect("timeout"),
    );
    let err = server.expect_err("server accepted a client without a certificate");
    assert!(err.contains("certificate"), "{err}");

    // (c) A certificate from another CA (same names): rejected.
    let client = mtls_client(addr, ours.path(), Some((theirs.path(), "gw-eu-0")));
    let client = tokio::time::timeout(timeout, client)
        .await
        .expect("timeout");
    assert!(client.is_err(), "foreign client cert: {client:?}");
    let server = server_result(
        tokio::time::timeout(timeout, results.recv())
            .await
            .expect("timeout"),
    );
    let err = server.expect_err("server accepted a foreign client certificate");
    // Same CA name, so webpki finds "the" issuer by name and then fails
    // on the signature.
    assert!(
        err.contains("BadSignature") || err.contains("UnknownIssuer"),
        "{err}"
    );

    // And the other way round: a client trusting only the other CA refuses
    // our server.
    let client = mtls_client(addr, theirs.path(), Some((theirs.path(), "gw-eu-0")));
    let client = tokio::time::timeout(timeout, client)
        .await
        .expect("timeout");
    assert!(
        client.is_err(),
        "client trusted a foreign server: {client:?}"
    );
}

#[test]
fn cluster_tls_files_load() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    cluster(dir);

    let files = ClusterTlsFiles::from_dir(dir, "gw-eu-0");
    assert_eq!(files.ca, dir.join("ca.pem"));
    assert_eq!(files.cert, dir.join("gw-eu-0.pem"));
    assert_eq!(files.key, dir.join("gw-eu-0.key"));
    let pem = files.load().expect("load");
    assert_eq!(pem.ca, std::fs::read_to_string(dir.join("ca.pem")).unwrap());
    assert_eq!(
        pem.cert,
        std::fs::read_to_string(dir.join("gw-eu-0.pem")).unwrap()
    );
    assert!(pem.key.contains("-----BEGIN PRIVATE KEY-----"));
    assert!(
        !format!("{pem:?}").contains("BEGIN PRIVATE KEY"),
        "Debug leaks the key"
    );

    // Missing key file: the message names it.
    let missing = ClusterTlsFiles::from_dir(dir, "gw-eu-9");
    std::fs::copy(dir.join("gw-eu-0.pem"), &missing.cert).unwrap();
    let err = missing.load().expect_err("missing key");
    let key_path = missing.key.display().to_string();
    assert!(err.to_string().contains(&key_path), "{err}");

    // Wrong block types: a certificate where the key should be, a key where
    // the CA should be.
    let swapped = ClusterTlsFiles {
        ca: files.ca.clone(),
        cert: files.cert.clone(),
        key: files.cert.clone(),
    };
    let err = swapped.load().expect_err("cert as key");
    assert!(matches!(err, CertError::MissingPem { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&files.cert.display().to_string()),
        "{err}"
    );
    let swapped = ClusterTlsFiles {
        ca: files.key.clone(),
        ..files.clone()
    };
    let err = swapped.load().expect_err("key as CA");
    assert!(
        err.to_string().contains(&files.key.display().to_string()),
        "{err}"
    );

    // A key that belongs to another certificate.
    let mismatched = ClusterTlsFiles {
        key: dir.join("ops.key"),
        ..files.clone()
    };
    let err = mismatched.load().expect_err("mismatched key");
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("ops.key"), "{err}");
}

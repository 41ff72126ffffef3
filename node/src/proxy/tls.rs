//! TLS to upstreams (`https` and `grpcs` services), on rustls with the ring
//! provider (one provider, chosen explicitly per config, so nothing depends
//! on a process-wide default).
//!
//! Verification is **on by default**: the peer certificate must chain to
//! the Mozilla roots (webpki-roots) or to one of the service's
//! `ca_certificates`, and match the target's host name (the SNI sent).
//! `tls_verify: false` turns verification off for that service. This
//! differs from Kong, whose default (`nginx_proxy_proxy_ssl_verify`) is off.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A client TLS configuration shared by every connection of the services
/// that use it.
pub struct UpstreamTls {
    pub connector: tokio_rustls::TlsConnector,
    /// Identifies the configuration in pool keys: connections made with
    /// different trust settings are never shared.
    pub id: u64,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UpstreamTls({:x})", self.id)
    }
}

/// Build the client configuration for `verify` + extra trusted `ca_pems`.
/// `h2` selects ALPN `h2` (gRPC) instead of `http/1.1`.
pub fn upstream_tls(verify: bool, ca_pems: &[&str], h2: bool) -> Result<UpstreamTls, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?;
    let mut config = if verify {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for (i, pem) in ca_pems.iter().enumerate() {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("ca_certificates[{i}]: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_certificates[{i}]: {e}"))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (verify, ca_pems, h2).hash(&mut h);
    Ok(UpstreamTls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        id: h.finish() | 1,
    })
}

/// The name to verify and send as SNI for a target host (name or IP).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| format!("invalid TLS server name {host:?}: {e}"))
}

/// `tls_verify: false`: any certificate is accepted (signatures of the
/// handshake itself are still checked).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

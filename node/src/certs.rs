//! Cluster certificates: a private CA for one gateway cluster, and the node
//! and client certificates it signs (`gatewayctl certs init|issue`).
//!
//! Nodes talk to each other (Raft, control gRPC) over mutual TLS: every node
//! presents a certificate signed by the cluster CA and requires one from its
//! peer. A node certificate is therefore valid both as a server and as a
//! client certificate; a client certificate (for operators and tooling) only
//! as a client certificate.
//!
//! Layout of a certificate directory:
//!
//! ```text
//! ca.pem        the CA certificate (distribute to every node and client)
//! ca.key        the CA private key (0600; keep it off the nodes if you can)
//! NAME.pem      a node or client certificate (just the leaf)
//! NAME.key      its private key (0600)
//! ```
//!
//! Keys are ECDSA P-256, written as PKCS#8 `PRIVATE KEY` PEM blocks.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use time::{Duration, OffsetDateTime};

/// File name of the CA certificate inside a certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a certificate directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// The CA common name `gatewayctl certs init` uses unless told otherwise.
pub const DEFAULT_CA_NAME: &str = "gateway cluster CA";

/// How long a new CA is valid.
const CA_VALIDITY_YEARS: i32 = 10;
/// How long a new node or client certificate is valid (never past the CA).
const LEAF_VALIDITY_YEARS: i32 = 2;
/// `notBefore` is backdated by this much so that peers whose clocks run a
/// little behind the issuing machine accept a fresh certificate.
const BACKDATE: Duration = Duration::hours(1);
/// Upper bound of an X.509 common name (RFC 5280 `ub-common-name`).
const MAX_NAME_LEN: usize = 64;

/// Errors of the certificate tooling. Every message names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The target file exists and `force` was not given.
    #[error("{}: already exists (use --force to overwrite it)", path.display())]
    Exists { path: PathBuf },
    /// Reading, writing or creating a file or directory failed.
    #[error("{}: {what}: {error}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        error: io::Error,
    },
    /// The file holds no PEM block of the expected type.
    #[error("{}: no {expected} PEM block found", path.display())]
    MissingPem {
        path: PathBuf,
        expected: &'static str,
    },
    /// The file is not valid PEM.
    #[error("{}: invalid PEM: {error}", path.display())]
    InvalidPem { path: PathBuf, error: pem::Error },
    /// A certificate or key could not be parsed or used.
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    /// The private key does not belong to the certificate.
    #[error("{}: private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    /// The certificate (or CA) name is not acceptable.
    #[error("invalid name {name:?} for {}: {reason}", path.display())]
    InvalidName {
        name: String,
        /// The file the name would have produced (`dir/NAME.pem`, `dir/ca.pem`).
        path: PathBuf,
        reason: String,
    },
    /// An extra subject alternative name is neither an IP address nor a DNS name.
    #[error("{}: invalid subject alternative name {san:?}: {reason}", path.display())]
    InvalidSan {
        san: String,
        path: PathBuf,
        reason: &'static str,
    },
    /// rcgen failed to build or sign a certificate.
    #[error("{}: generating the certificate failed: {error}", path.display())]
    Generate { path: PathBuf, error: rcgen::Error },
}

/// The files `init_ca` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// `dir/ca.pem`
    pub cert: PathBuf,
    /// `dir/ca.key`
    pub key: PathBuf,
    /// End of the CA's validity.
    pub not_after: SystemTime,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertKind {
    /// A cluster node: EKU serverAuth + clientAuth (nodes are clients of
    /// each other); SANs name, `localhost`, `127.0.0.1`, `::1` and extras.
    Node,
    /// An operator or tool: EKU clientAuth only; SAN name (and extras).
    Client,
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertKind::Node => "node",
            CertKind::Client => "client",
        })
    }
}

/// The files `issue` wrote, and what went into the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedFiles {
    /// `dir/NAME.pem`
    pub cert: PathBuf,
    /// `dir/NAME.key`
    pub key: PathBuf,
    pub kind: CertKind,
    /// The subject alternative names, in certificate order (DNS names and
    /// IP addresses as text).
    pub subject_alt_names: Vec<String>,
    /// End of the certificate's validity (at most the CA's).
    pub not_after: SystemTime,
}

/// Creates the cluster CA: `dir/ca.pem` and `dir/ca.key` (0600). `dir` is
/// created (0700 on unix) if missing. Refuses to overwrite either file
/// unless `force`.
///
/// The CA is self-signed, `CA:TRUE` without a path length limit, key usages
/// keyCertSign + cRLSign, subject `CN=name`, valid for 10 years.
pub fn init_ca(dir: &Path, name: &str, force: bool) -> Result<CaFiles, CertError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    validate_ca_name(name, &cert_path)?;
    if !force {
        refuse_existing(&[&cert_path, &key_path])?;
    }

    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - BACKDATE;
    params.not_after = add_years(now, CA_VALIDITY_YEARS);

    let generate = |error| CertError::Generate {
        path: cert_path.clone(),
        error,
    };
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;

    create_dir(dir)?;
    write_files(
        &[
            Output::secret(&key_path, key.serialize_pem()),
            Output::public(&cert_path, cert.pem()),
        ],
        force,
    )?;
    Ok(CaFiles {
        cert: cert_path,
        key: key_path,
        not_after: params.not_after.into(),
    })
}

/// Issues a node or client certificate signed by the CA in `dir`
/// (`dir/ca.pem` + `dir/ca.key`), writing `dir/NAME.pem` (the leaf only) and
/// `dir/NAME.key` (0600). Refuses to overwrite either unless `force`.
///
/// `name` (1 to 64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`, not
/// `ca`) is the common name and the first SAN: an IP address SAN if it
/// parses as one, else a DNS name SAN (so it must be a valid host name).
/// `extra_sans` are parsed the same way (a DNS name may be a `*.` wildcard).
/// Duplicate SANs are dropped. Valid for 2 years, capped at the CA's expiry.
pub fn issue(
    dir: &Path,
    kind: CertKind,
    name: &str,
    extra_sans: &[String],
    force: bool,
) -> Result<IssuedFiles, CertError> {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    validate_leaf_name(name, &cert_path)?;

    let mut sans = Sans::default();
    sans.push(name, false)
        .map_err(|reason| CertError::InvalidName {
            name: name.to_owned(),
            path: cert_path.clone(),
            reason: reason.to_owned(),
        })?;
    if kind == CertKind::Node {
        for builtin in ["localhost", "127.0.0.1", "::1"] {
            sans.push(builtin, false).expect("built-in SANs are valid");
        }
    }
    for san in extra_sans {
        sans.push(san, true)
            .map_err(|reason| CertError::InvalidSan {
                san: san.clone(),
                path: cert_path.clone(),
                reason,
            })?;
    }

    if !force {
        refuse_existing(&[&cert_path, &key_path])?;
    }
    let ca = load_ca(dir)?;

    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(name);
    params.subject_alt_names = sans.sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match kind {
        CertKind::Node => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        CertKind::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = add_years(now, LEAF_VALIDITY_YEARS).min(ca.not_after);

    let generate = |error| CertError::Generate {
        path: cert_path.clone(),
        error,
    };
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.signed_by(&key, &ca.issuer).map_err(generate)?;

    write_files(
        &[
            Output::secret(&key_path, key.serialize_pem()),
            Output::public(&cert_path, cert.pem()),
        ],
        force,
    )?;
    Ok(IssuedFiles {
        cert: cert_path,
        key: key_path,
        kind,
        subject_alt_names: sans.text,
        not_after: params.not_after.into(),
    })
}

/// Where a node's (or client's) mTLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTlsFiles {
    /// The cluster CA certificate(s) to trust.
    pub ca: PathBuf,
    /// This node's certificate (leaf first; a chain may follow).
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// The PEM text of a node's mTLS material, ready for
/// `tonic::transport::Certificate::from_pem(ca)` and
/// `tonic::transport::Identity::from_pem(cert, key)`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterTlsPem {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl fmt::Debug for ClusterTlsPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTlsPem")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ClusterTlsFiles {
    /// The files of `name` in a certificate directory: `dir/ca.pem`,
    /// `dir/NAME.pem`, `dir/NAME.key`.
    pub fn from_dir(dir: &Path, name: &str) -> ClusterTlsFiles {
        ClusterTlsFiles {
            ca: dir.join(CA_CERT_FILE),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// Reads the three files and checks that the CA and certificate files
    /// hold well-formed `CERTIFICATE` blocks, the key file a private key
    /// block, and that the key belongs to the (first) certificate.
    pub fn load(&self) -> Result<ClusterTlsPem, CertError> {
        let ca = read_text(&self.ca)?;
        certificates(&self.ca, &ca)?;
        let cert = read_text(&self.cert)?;
        let chain = certificates(&self.cert, &cert)?;
        let key = read_text(&self.key)?;
        let key_der = private_key(&self.key, &key)?;

        let provider = rustls::crypto::ring::default_provider();
        match rustls::sign::CertifiedKey::from_der(chain, key_der, &provider) {
            Ok(_) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(CertError::KeyMismatch {
                    key: self.key.clone(),
                    cert: self.cert.clone(),
                })
            }
            Err(e) => {
                return Err(CertError::Invalid {
                    path: self.key.clone(),
                    reason: format!("unusable private key or certificate: {e}"),
                })
            }
        }
        Ok(ClusterTlsPem { ca, cert, key })
    }
}

// ---------------------------------------------------------------------------

/// The loaded CA, ready to sign.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
}

fn load_ca(dir: &Path) -> Result<Ca, CertError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    let cert_pem = read_text(&cert_path)?;
    let key_pem = read_text(&key_path)?;

    let cert_der = certificates(&cert_path, &cert_pem)?.swap_remove(0);
    let invalid = |reason: String| CertError::Invalid {
        path: cert_path.clone(),
        reason,
    };
    let (_, x509) = x509_parser::parse_x509_certificate(&cert_der)
        .map_err(|e| invalid(format!("cannot parse the CA certificate: {e}")))?;
    let is_ca = x509
        .basic_constraints()
        .map_err(|e| invalid(format!("bad basicConstraints: {e}")))?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(invalid(
            "not a CA certificate (basicConstraints CA:TRUE missing)".into(),
        ));
    }
    if let Some(ku) = x509
        .key_usage()
        .map_err(|e| invalid(format!("bad keyUsage: {e}")))?
    {
        if !ku.value.key_cert_sign() {
            return Err(invalid("CA key usage lacks keyCertSign".into()));
        }
    }
    let not_after = x509.validity().not_after.to_datetime();
    if not_after <= OffsetDateTime::now_utc() {
        return Err(invalid(format!("the CA expired at {not_after}")));
    }

    private_key(&key_path, &key_pem)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| CertError::Invalid {
        path: key_path.clone(),
        reason: format!("cannot load the CA private key: {e}"),
    })?;
    if rcgen::PublicKeyData::subject_public_key_info(&key) != x509.public_key().raw {
        return Err(CertError::KeyMismatch {
            key: key_path,
            cert: cert_path,
        });
    }
    let issuer = Issuer::from_ca_cert_der(&cert_der, key)
        .map_err(|e| invalid(format!("cannot use the CA certificate: {e}")))?;
    Ok(Ca { issuer, not_after })
}

/// 1..=64 of `[A-Za-z0-9._-]`, not starting with `.` or `-` (hidden files,
/// things that look like flags), and not `ca` (the CA's own files).
fn validate_leaf_name(name: &str, path: &Path) -> Result<(), CertError> {
    let reason = if name.is_empty() {
        Some("the name is empty".to_owned())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("longer than {MAX_NAME_LEN} characters"))
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(format!(
            "character {c:?} is not allowed (only A-Z, a-z, 0-9, '.', '_' and '-')"
        ))
    } else if name.starts_with(['.', '-']) {
        Some("must not start with '.' or '-'".to_owned())
    } else if name.eq_ignore_ascii_case("ca") {
        Some("\"ca\" is reserved for the CA's own files".to_owned())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CertError::InvalidName {
            name: name.to_owned(),
            path: path.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn validate_ca_name(name: &str, path: &Path) -> Result<(), CertError> {
    let reason = if name.trim().is_empty() {
        "the CA name is empty"
    } else if name.chars().count() > MAX_NAME_LEN {
        "the CA name is longer than 64 characters"
    } else if name.chars().any(char::is_control) {
        "the CA name contains control characters"
    } else {
        return Ok(());
    };
    Err(CertError::InvalidName {
        name: name.to_owned(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    })
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

/// `t` plus `years` calendar years (29 February becomes 28 February).
fn add_years(t: OffsetDateTime, years: i32) -> OffsetDateTime {
    let year = t.year() + years;
    t.replace_year(year).unwrap_or_else(|_| {
        t.replace_day(28)
            .and_then(|t| t.replace_year(year))
            .expect("28 February exists in every year")
    })
}

/// Subject alternative names in order, without duplicates.
#[derive(Default)]
struct Sans {
    sans: Vec<SanType>,
    text: Vec<String>,
}

impl Sans {
    /// Adds `s` as an IP address if it parses as one, else as a DNS name
    /// (a `*.` wildcard only if `allow_wildcard`).
    fn push(&mut self, s: &str, allow_wildcard: bool) -> Result<(), &'static str> {
        let (san, text) = if let Ok(ip) = s.parse::<IpAddr>() {
            (SanType::IpAddress(ip), ip.to_string())
        } else {
            let host = match s.strip_prefix("*.") {
                Some(rest) if allow_wildcard => rest,
                _ => s,
            };
            if !matches!(ServerName::try_from(host), Ok(ServerName::DnsName(_))) {
                return Err("not an IP address or a valid DNS name");
            }
            let text = s.to_ascii_lowercase();
            let ia5 = text
                .as_str()
                .try_into()
                .map_err(|_| "not an IP address or a valid DNS name")?;
            (SanType::DnsName(ia5), text)
        };
        if !self.text.contains(&text) {
            self.sans.push(san);
            self.text.push(text);
        }
        Ok(())
    }
}

/// The `CERTIFICATE` blocks of a PEM file (at least one).
fn certificates(path: &Path, text: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| CertError::InvalidPem {
            path: path.to_owned(),
            error,
        })?;
    if certs.is_empty() {
        return Err(CertError::MissingPem {
            path: path.to_owned(),
            expected: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// The first private key block (`PRIVATE KEY`, `EC PRIVATE KEY`,
/// `RSA PRIVATE KEY`) of a PEM file.
fn private_key(path: &Path, text: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|error| match error {
        pem::Error::NoItemsFound => CertError::MissingPem {
            path: path.to_owned(),
            expected: "PRIVATE KEY",
        },
        error => CertError::InvalidPem {
            path: path.to_owned(),
            error,
        },
    })
}

fn read_text(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|error| CertError::Io {
        path: path.to_owned(),
        what: "cannot read",
        error,
    })
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|error| CertError::Io {
        path: dir.to_owned(),
        what: "cannot create directory",
        error,
    })
}

/// Fails on the first path that exists (a dangling symlink counts).
fn refuse_existing(paths: &[&Path]) -> Result<(), CertError> {
    for path in paths {
        if fs::symlink_metadata(path).is_ok() {
            return Err(CertError::Exists {
                path: path.to_path_buf(),
            });
        }
    }
    Ok(())
}

struct Output<'a> {
    path: &'a Path,
    contents: String,
    /// Private key: mode 0600.
    secret: bool,
}

impl<'a> Output<'a> {
    fn secret(path: &'a Path, contents: String) -> Self {
        Output {
            path,
            contents,
            secret: true,
        }
    }

    fn public(path: &'a Path, contents: String) -> Self {
        Output {
            path,
            contents,
            secret: false,
        }
    }
}

/// Writes all outputs or, if one fails, removes those this call created.
///
/// Without `force` each file is created exclusively (an existing file is
/// never touched). With `force` each is written to a temporary file in the
/// same directory and renamed over the target, so a key file is never
/// briefly readable with the old file's permissions.
fn write_files(outputs: &[Output<'_>], force: bool) -> Result<(), CertError> {
    let mut created: Vec<&Path> = Vec::new();
    for output in outputs {
        let existed = fs::symlink_metadata(output.path).is_ok();
        let result = if force {
            write_replacing(output)
        } else {
            write_new(output.path, output)
        };
        if let Err(e) = result {
            for path in created {
                let _ = fs::remove_file(path);
            }
            return Err(e);
        }
        if !existed {
            created.push(output.path);
        }
    }
    if let Some(dir) = outputs.first().and_then(|o| o.path.parent()) {
        // Persist the directory entries; best effort.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Creates `path` exclusively and writes `output` to it.
fn write_new(path: &Path, output: &Output<'_>) -> Result<(), CertError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(
        &mut options,
        if output.secret { 0o600 } else { 0o644 },
    );
    let io_error = |what, error| CertError::Io {
        path: output.path.to_owned(),
        what,
        error,
    };
    let mut file = options.open(path).map_err(|error| {
        if error.kind() == io::ErrorKind::AlreadyExists {
            CertError::Exists {
                path: output.path.to_owned(),
            }
        } else {
            io_error("cannot create", error)
        }
    })?;
    let written = (|| {
        #[cfg(unix)]
        if output.secret {
            // Exactly 0600 whatever the umask.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(output.contents.as_bytes())?;
        file.sync_all()
    })();
    written.map_err(|error| {
        let _ = fs::remove_file(path);
        io_error("cannot write", error)
    })
}

/// Writes `output` via a temporary file renamed over the target.
fn write_replacing(output: &Output<'_>) -> Result<(), CertError> {
    let file_name = output
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = output.path.with_file_name(format!(
        ".{file_name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    write_new(&tmp, output)?;
    fs::rename(&tmp, output.path).map_err(|error| {
        let _ = fs::remove_file(&tmp);
        CertError::Io {
            path: output.path.to_owned(),
            what: "cannot replace",
            error,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_error(name: &str) -> Option<String> {
        validate_leaf_name(name, Path::new("/x/n.pem"))
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn leaf_names() {
        for ok in ["gw-eu-0", "a", "node_1", "ops.example", "10.0.0.5", "CAT"] {
            assert_eq!(name_error(ok), None, "{ok}");
        }
        for bad in [
            "", ".hidden", "-flag", "a/b", "../x", "a b", "ca", "CA", "é", "x\n",
        ] {
            let e = name_error(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(e.contains("/x/n.pem"), "{e}");
        }
        assert!(name_error(&"a".repeat(64)).is_none());
        assert!(name_error(&"a".repeat(65)).is_some());
    }

    #[test]
    fn sans_parse_ip_or_dns_and_dedupe() {
        let mut sans = Sans::default();
        for s in [
            "gw-eu-0",
            "localhost",
            "127.0.0.1",
            "::1",
            "0:0::1",
            "LOCALHOST",
        ] {
            sans.push(s, false).unwrap();
        }
        sans.push("*.gw.internal", true).unwrap();
        assert_eq!(
            sans.text,
            ["gw-eu-0", "localhost", "127.0.0.1", "::1", "*.gw.internal"]
        );
        assert!(matches!(sans.sans[2], SanType::IpAddress(_)));
        assert!(matches!(sans.sans[1], SanType::DnsName(_)));
        for bad in ["", "a..b", "-a", "*.x", "a b", "node.1"] {
            assert!(sans.push(bad, false).is_err(), "{bad:?} accepted");
        }
        assert!(sans.push("*.*.x", true).is_err());
        assert!(sans.push("*.10.0.0.1", true).is_err());
    }

    #[test]
    fn add_years_handles_leap_day() {
        use rcgen::date_time_ymd;
        assert_eq!(
            add_years(date_time_ymd(2028, 2, 29), 2),
            date_time_ymd(2030, 2, 28)
        );
        assert_eq!(
            add_years(date_time_ymd(2026, 5, 1), 10),
            date_time_ymd(2036, 5, 1)
        );
    }
}

//! Certificates (with nested SNIs), top-level SNIs, CA certificates.

use super::Dec;
use crate::check;
use crate::fields::Field;
use crate::model::{CaCertificate, Certificate};
use crate::raw::{Link, Origin, RawCaCertificate, RawCertificate, RawSni};
use crate::yaml::Value;

const CERT_LABELS: &[&str] = &["CERTIFICATE"];
const KEY_LABELS: &[&str] = &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

impl Dec<'_> {
    /// A PEM field: required or optional, checked for a block of `labels`.
    fn pem(
        &mut self,
        o: &mut crate::fields::Obj<'_>,
        name: &'static str,
        required: bool,
        what: &str,
        labels: &[&str],
    ) -> Option<String> {
        let f = if required {
            o.require(&mut self.d, name)?
        } else {
            o.get(name)?
        };
        let s = f.str(&mut self.d)?;
        match check::pem(&s, what, labels) {
            Ok(()) => Some(s),
            Err(e) => {
                self.d.err(&f.at(), e);
                None
            }
        }
    }

    pub(super) fn certificate(&mut self, f: Field<'_>) {
        let Some(mut o) = f.obj(&mut self.d) else {
            return;
        };
        let idx = self.raw.certificates.len();
        let (meta, id_at) = self.meta(&mut o);
        let cert = self.pem(&mut o, "cert", true, "certificate", CERT_LABELS);
        let key = self.pem(&mut o, "key", true, "key", KEY_LABELS);
        let cert_alt = self.pem(&mut o, "cert_alt", false, "certificate", CERT_LABELS);
        let key_alt = self.pem(&mut o, "key_alt", false, "key", KEY_LABELS);
        if o.get("cert_alt").is_some() != o.get("key_alt").is_some() {
            self.d.err(
                &o.at(),
                "all or none of these fields must be set: 'cert_alt', 'key_alt'",
            );
        }
        if let Some(list) = o.get("snis") {
            for item in list.seq(&mut self.d).unwrap_or_default() {
                if let Value::Str(_) = item.node.value {
                    if let Some(name) = item.str(&mut self.d) {
                        self.sni_name(name, &item, Link::Nested(idx));
                    }
                } else {
                    self.sni(item, Link::Nested(idx));
                }
            }
        }
        let origin = Self::origin(&o, None, id_at);
        o.finish(&mut self.d);
        self.raw.certificates.push(RawCertificate {
            certificate: Certificate {
                meta,
                cert: cert.unwrap_or_default(),
                key: key.unwrap_or_default(),
                cert_alt,
                key_alt,
                snis: Vec::new(),
            },
            origin,
        });
    }

    /// An SNI entity: `{name, certificate, id, tags}`.
    pub(super) fn sni(&mut self, f: Field<'_>, parent: Link) {
        let Some(mut o) = f.obj(&mut self.d) else {
            return;
        };
        let _ = self.meta(&mut o);
        let certificate = self.link(&mut o, "certificate", parent, false);
        if matches!(certificate, Link::None) {
            self.d.err(&o.at(), "missing required field 'certificate'");
        }
        let name = o.require(&mut self.d, "name");
        let name_s = name.as_ref().and_then(|n| n.str(&mut self.d));
        o.finish(&mut self.d);
        if let (Some(s), Some(nf)) = (name_s, name) {
            self.sni_name(s, &nf, certificate);
        }
    }

    fn sni_name(&mut self, name: String, f: &Field<'_>, certificate: Link) {
        if let Err(e) = check::wildcard_sni(&name) {
            self.d.err(&f.at(), e);
            return;
        }
        self.raw.snis.push(RawSni {
            name: name.to_ascii_lowercase(),
            origin: Origin {
                at: f.at(),
                name_at: Some(f.at()),
                id_at: None,
            },
            certificate,
        });
    }

    pub(super) fn ca_certificate(&mut self, f: Field<'_>) {
        let Some(mut o) = f.obj(&mut self.d) else {
            return;
        };
        let (meta, id_at) = self.meta(&mut o);
        let cert_f = o.get("cert");
        let cert = self.pem(&mut o, "cert", true, "certificate", CERT_LABELS);
        if let (Some(c), Some(cf)) = (&cert, &cert_f) {
            if check::pem_count(c, "CERTIFICATE") > 1 {
                self.d
                    .err(&cf.at(), "please submit only one certificate at a time");
            }
        }
        let cert_digest = o.get("cert_digest").and_then(|f| {
            let s = f.str(&mut self.d)?;
            if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                Some(s.to_ascii_lowercase())
            } else {
                self.d
                    .err(&f.at(), "expected a SHA-256 digest (64 hex characters)");
                None
            }
        });
        let origin = Self::origin(&o, cert_f.as_ref().map(Field::at), id_at);
        o.finish(&mut self.d);
        self.raw.ca_certificates.push(RawCaCertificate {
            ca: CaCertificate {
                meta,
                cert: cert.unwrap_or_default(),
                cert_digest,
            },
            origin,
        });
    }
}

//! Webhook authentication (pure functions, no IO).
//!
//! A webhook only tells the leader "fetch now"; the fetched commit is what
//! gets validated and applied, so a forged hook can at worst cause an extra
//! fetch. Still, verify it to keep strangers from driving fetch load.
//! An empty secret never verifies.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Verify GitHub's `X-Hub-Signature-256: sha256=<hex>` header: HMAC-SHA256
/// of the raw request body keyed with the webhook secret, compared in
/// constant time. A missing or malformed header is `false`.
pub fn verify_github(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(header) = header else {
        return false;
    };
    if secret.is_empty() {
        return false;
    }
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Verify GitLab's `X-Gitlab-Token` header, which carries the secret itself.
/// Compared in constant time (both sides are hashed first, so not even the
/// length leaks). A missing header is `false`.
pub fn verify_gitlab(secret: &[u8], header: Option<&str>) -> bool {
    let Some(header) = header else {
        return false;
    };
    if secret.is_empty() {
        return false;
    }
    let want = Sha256::digest(secret);
    let got = Sha256::digest(header.as_bytes());
    want.ct_eq(&got).into()
}

/// The `X-Hub-Signature-256` value for `body` (for tests and for tools that
/// send hooks).
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // From GitHub's "Validating webhook deliveries" documentation.
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_known_answer() {
        assert!(verify_github(SECRET, BODY, Some(SIG)));
        assert_eq!(sign_github(SECRET, BODY), SIG);
        assert!(verify_github(
            SECRET,
            BODY,
            Some(&SIG.to_uppercase().replace("SHA256=", "sha256="))
        ));
    }

    #[test]
    fn github_rejects() {
        assert!(!verify_github(SECRET, BODY, None));
        assert!(!verify_github(SECRET, b"Hello, World?", Some(SIG)));
        assert!(!verify_github(b"other secret", BODY, Some(SIG)));
        assert!(
            !verify_github(SECRET, BODY, Some(&SIG[7..])),
            "prefix required"
        );
        assert!(!verify_github(SECRET, BODY, Some("sha1=757107ea")));
        assert!(!verify_github(SECRET, BODY, Some("sha256=zz")));
        assert!(
            !verify_github(SECRET, BODY, Some(&SIG[..SIG.len() - 2])),
            "truncated"
        );
        assert!(
            !verify_github(b"", b"", Some(&sign_github(b"", b""))),
            "empty secret"
        );
    }

    #[test]
    fn gitlab() {
        assert!(verify_gitlab(b"s3cret", Some("s3cret")));
        assert!(!verify_gitlab(b"s3cret", Some("s3cre")));
        assert!(!verify_gitlab(b"s3cret", Some("s3cret ")));
        assert!(!verify_gitlab(b"s3cret", None));
        assert!(!verify_gitlab(b"", Some("")));
    }
}

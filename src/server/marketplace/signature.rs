//! GitHub webhook signatures: `X-Hub-Signature-256: sha256=<hex>`, the
//! HMAC-SHA256 of the raw request body keyed with the webhook secret (as
//! bytes, exactly as configured). GitHub signs no timestamp, so replays are
//! stopped by the `X-GitHub-Delivery` dedupe instead.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a signature was rejected. The messages name no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header, or not `sha256=<hex>`.
    #[error("missing or malformed X-Hub-Signature-256 header")]
    Malformed,
    /// The signature matches no configured secret.
    #[error("signature does not match")]
    Mismatch,
    /// No webhook secret is configured.
    #[error("webhook secret not configured")]
    NoSecret,
}

fn mac(secret: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac
}

/// The `X-Hub-Signature-256` value GitHub would send for `body` with
/// webhook secret `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, body).finalize().into_bytes())
    )
}

/// Verifies `header` (the `X-Hub-Signature-256` value) for the raw `body`
/// against every secret in `secrets`. The comparison is constant-time
/// (`Mac::verify_slice`).
///
/// Errors: see [`SignatureError`].
pub fn verify(header: Option<&str>, body: &[u8], secrets: &[String]) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let signature = header
        .map(str::trim)
        .and_then(|h| h.strip_prefix("sha256="))
        .and_then(|hex_sig| hex::decode(hex_sig).ok())
        .filter(|bytes| bytes.len() == 32)
        .ok_or(SignatureError::Malformed)?;
    if secrets
        .iter()
        .any(|secret| mac(secret, body).verify_slice(&signature).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_documented_vector() {
        // From GitHub's "Validating webhook deliveries" docs: secret
        // "It's a Secret to Everybody", payload "Hello, World!".
        assert_eq!(
            sign("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn round_trip_rotation_and_rejections() {
        let body = br#"{"action":"purchased"}"#;
        let secrets = vec!["new".to_owned(), "old".to_owned()];
        assert_eq!(verify(Some(&sign("old", body)), body, &secrets), Ok(()));
        assert_eq!(verify(Some(&sign("new", body)), body, &secrets), Ok(()));
        assert_eq!(
            verify(Some(&sign("other", body)), body, &secrets),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&sign("new", body)), b"{}", &secrets),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(None, body, &secrets), Err(SignatureError::Malformed));
        assert_eq!(
            verify(Some("sha1=00"), body, &secrets),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("sha256=zz"), body, &secrets),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some(&sign("new", body)), body, &[]),
            Err(SignatureError::NoSecret)
        );
    }
}

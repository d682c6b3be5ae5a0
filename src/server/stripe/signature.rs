//! Stripe webhook signatures: `Stripe-Signature: t=<unix seconds>,v1=<hex>`
//! where each `v1` is HMAC-SHA256 over `"{t}.{raw body}"` keyed with an
//! endpoint secret (`whsec_…`, used as bytes exactly as written). Verified
//! here rather than by async-stripe, whose event parser rejects localstripe's
//! events; the signing half is what `stripe-trigger` and the tests use.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Largest accepted age (or clock skew) of a signature timestamp, in seconds.
pub const TOLERANCE_SECONDS: i64 = 300;

/// Why a signature was rejected. The messages name no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header, or one without `t=` and `v1=`.
    #[error("missing or malformed Stripe-Signature header")]
    Malformed,
    /// The timestamp is more than [`TOLERANCE_SECONDS`] from now.
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// No `v1` matches any configured secret.
    #[error("no signature matches")]
    Mismatch,
    /// No webhook secret is configured.
    #[error("webhook signing secret not configured")]
    NoSecret,
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Stripe-Signature` header value Stripe would send for `body` at
/// `timestamp` (unix seconds) with endpoint secret `secret`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Verifies `header` for the raw `body` at time `now` (unix seconds) against
/// every secret in `secrets`; any `v1` may match any secret. Comparison is
/// constant-time (`Mac::verify_slice`).
///
/// Errors: see [`SignatureError`].
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    now: i64,
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = header.ok_or(SignatureError::Malformed)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => timestamp = value.parse::<i64>().ok(),
            "v1" => {
                if let Ok(bytes) = hex::decode(value) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    let matched = secrets.iter().any(|secret| {
        signatures
            .iter()
            .any(|signature| mac(secret, timestamp, body).verify_slice(signature).is_ok())
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000;

    #[test]
    fn known_vector() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign("whsec_test", 1_700_000_000, b"{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn round_trip_rotation_and_rejections() {
        let body = br#"{"id":"evt_1"}"#;
        let secrets = vec!["whsec_new".to_owned(), "whsec_old".to_owned()];
        let header = sign("whsec_old", NOW, body);
        assert_eq!(verify(Some(&header), body, &secrets, NOW + 10), Ok(()));
        // Several v1 values: any may match.
        let both = format!(
            "{},v1={}",
            sign("whsec_other", NOW, body),
            &header[header.find("v1=").unwrap() + 3..]
        );
        assert_eq!(verify(Some(&both), body, &secrets, NOW), Ok(()));
        assert_eq!(
            verify(Some(&header), br#"{"id":"evt_2"}"#, &secrets, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), body, &secrets, NOW + TOLERANCE_SECONDS + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(None, body, &secrets, NOW),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("t=abc,v1=00"), body, &secrets, NOW),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some(&header), body, &[], NOW),
            Err(SignatureError::NoSecret)
        );
    }
}

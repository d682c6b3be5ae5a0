//! Stripe webhook signatures: `Stripe-Signature: t=<unix seconds>,v1=<hex>`
//! where each `v1` is HMAC-SHA256 over `"{t}.{raw body}"` keyed with an
//! endpoint secret (`whsec_…`, used as bytes exactly as written). Verified
//! here rather than by async-stripe, whose event parser rejects localstripe's
//! events; the signing half is what `stripe-trigger` and the tests use.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Largest accepted age (or clock skew) of a signature timestamp, in seconds.
pub const TOLERANCE_SECONDS: i64 = 300;

/// Longest `Stripe-Signature` header accepted, in bytes. Stripe sends
/// `t=…` and one `v1=` per active endpoint secret (two during a rotation),
/// about 150 bytes; anything much longer is not Stripe.
pub const MAX_HEADER_BYTES: usize = 1024;

/// Most `v1=` entries accepted in one header.
pub const MAX_SIGNATURES: usize = 8;

/// Most comma-separated entries of any kind (`t`, `v1`, `v0`, …).
pub const MAX_ENTRIES: usize = 16;

/// Why a signature was rejected. The messages name no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header, or one without `t=` and `v1=`, or one
    /// over [`MAX_HEADER_BYTES`], [`MAX_ENTRIES`] or [`MAX_SIGNATURES`].
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

/// A parsed `Stripe-Signature` header: its timestamp and its `v1`
/// signatures (1 to [`MAX_SIGNATURES`], each 32 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// `t`, unix seconds.
    pub timestamp: i64,
    /// Every well-formed `v1` (64 hex digits); others are ignored.
    pub signatures: Vec<[u8; 32]>,
}

/// Parses a `Stripe-Signature` header without touching the body: bounded
/// work (at most [`MAX_HEADER_BYTES`] read, at most [`MAX_ENTRIES`]
/// entries and [`MAX_SIGNATURES`] `v1` entries kept), never panics.
/// Entries other than `t` and `v1` (e.g. `v0`) are skipped; a `v1` that is
/// not 64 hex digits is ignored.
///
/// Errors: [`SignatureError::Malformed`] when the header is too long, has
/// too many entries or `v1` entries, or lacks a numeric `t` or a
/// well-formed `v1`.
pub fn parse_header(header: &str) -> Result<SignatureHeader, SignatureError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    let mut v1_entries = 0usize;
    for (index, part) in header.split(',').enumerate() {
        if index >= MAX_ENTRIES {
            return Err(SignatureError::Malformed);
        }
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => timestamp = value.parse::<i64>().ok(),
            "v1" => {
                v1_entries += 1;
                if v1_entries > MAX_SIGNATURES {
                    return Err(SignatureError::Malformed);
                }
                let mut bytes = [0u8; 32];
                if hex::decode_to_slice(value, &mut bytes[..]).is_ok() {
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
    Ok(SignatureHeader {
        timestamp,
        signatures,
    })
}

/// Verifies `header` for the raw `body` at time `now` (unix seconds) against
/// every secret in `secrets`; any `v1` may match any secret. The header is
/// parsed first ([`parse_header`]: bounded), the timestamp checked next,
/// and the body is hashed once per secret (the HMAC state is cloned to
/// compare each `v1`), so the work is at most `secrets.len()` passes over
/// the body whatever the header holds. Comparison is constant-time
/// (`Mac::verify_slice`).
///
/// Errors: see [`SignatureError`].
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[&str],
    now: i64,
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = parse_header(header.ok_or(SignatureError::Malformed)?)?;
    if now.abs_diff(header.timestamp) > TOLERANCE_SECONDS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let matched = secrets.iter().any(|secret| {
        let mac = mac(secret, header.timestamp, body);
        header
            .signatures
            .iter()
            .any(|signature| mac.clone().verify_slice(signature).is_ok())
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
    fn headers_are_bounded() {
        let body = b"{}";
        let secrets = vec!["whsec_a"];
        let good = sign("whsec_a", NOW, body);
        let sig = &good[good.find("v1=").unwrap() + 3..];
        // Eight v1 entries (seven wrong, the right one last) still verify.
        let eight = format!("t={NOW}{},v1={sig}", ",v1=00".repeat(7));
        assert_eq!(verify(Some(&eight), body, &secrets, NOW), Ok(()));
        // Nine are refused before any HMAC.
        let nine = format!("t={NOW}{},v1={sig}", ",v1=00".repeat(8));
        assert_eq!(parse_header(&nine), Err(SignatureError::Malformed));
        let many = format!("t={NOW}{}", ",v1=00".repeat(1000));
        assert_eq!(
            verify(Some(&many), body, &secrets, NOW),
            Err(SignatureError::Malformed)
        );
        let entries = format!("t={NOW},v1={sig}{}", ",x=1".repeat(MAX_ENTRIES));
        assert_eq!(parse_header(&entries), Err(SignatureError::Malformed));
        let long = format!("{good},v0={}", "a".repeat(MAX_HEADER_BYTES));
        assert_eq!(parse_header(&long), Err(SignatureError::Malformed));
        assert_eq!(
            verify(
                Some(&format!("t={},v1={sig}", i64::MIN)),
                body,
                &secrets,
                NOW
            ),
            Err(SignatureError::Stale)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Garbage headers: no panic, and never accepted.
        #[test]
        fn garbage_headers_are_errors(header in ".{0,2000}", body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let secrets = vec!["whsec_a"];
            let _ = parse_header(&header);
            proptest::prop_assert!(verify(Some(&header), &body, &secrets, NOW).is_err());
        }

        /// Header-shaped garbage: a parse that succeeds is bounded.
        #[test]
        fn parsed_headers_are_bounded(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    "t=-?[0-9]{0,20}",
                    "v1=[0-9a-f]{0,70}",
                    "v0=[0-9a-f]{0,10}",
                    "[a-z0-9=]{0,8}",
                ],
                0..40,
            )
        ) {
            let header = parts.join(",");
            if let Ok(parsed) = parse_header(&header) {
                proptest::prop_assert!(header.len() <= MAX_HEADER_BYTES);
                proptest::prop_assert!(!parsed.signatures.is_empty());
                proptest::prop_assert!(parsed.signatures.len() <= MAX_SIGNATURES);
            }
        }

        /// A valid signature verifies among up to seven wrong ones, in any
        /// position, with any body.
        #[test]
        fn valid_headers_verify(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            wrong in 0usize..8,
            position in 0usize..8,
            skew in -TOLERANCE_SECONDS..=TOLERANCE_SECONDS,
        ) {
            let secrets = vec!["whsec_new", "whsec_old"];
            let good = sign("whsec_old", NOW, &body);
            let sig = good[good.find("v1=").unwrap() + 3..].to_owned();
            let mut v1s = vec!["ab".repeat(32); wrong];
            v1s.insert(position.min(wrong), sig);
            let header = format!("t={NOW},{}", v1s.iter().map(|s| format!("v1={s}")).collect::<Vec<_>>().join(","));
            proptest::prop_assert_eq!(verify(Some(&header), &body, &secrets, NOW + skew), Ok(()));
        }
    }

    #[test]
    fn round_trip_rotation_and_rejections() {
        let body = br#"{"id":"evt_1"}"#;
        let secrets = vec!["whsec_new", "whsec_old"];
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

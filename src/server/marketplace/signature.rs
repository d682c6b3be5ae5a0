//! GitHub webhook signatures: `X-Hub-Signature-256: sha256=<hex>`, the
//! HMAC-SHA256 of the raw request body keyed with the webhook secret (as
//! bytes, exactly as configured). GitHub signs no timestamp, so replays are
//! stopped by the `X-GitHub-Delivery` dedupe instead.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Longest `X-Hub-Signature-256` header accepted, in bytes (a real one is
/// `sha256=` and 64 hex digits, 71 bytes).
pub const MAX_HEADER_BYTES: usize = 128;

/// Why a signature was rejected. The messages name no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header, or not `sha256=<64 hex digits>`, or
    /// longer than [`MAX_HEADER_BYTES`].
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

/// Parses an `X-Hub-Signature-256` value (`sha256=<64 hex digits>`,
/// surrounding whitespace ignored) into the 32-byte signature, without
/// touching the body: at most [`MAX_HEADER_BYTES`] are read; never panics.
///
/// Errors: [`SignatureError::Malformed`] for anything else.
pub fn parse_header(header: &str) -> Result<[u8; 32], SignatureError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(SignatureError::Malformed);
    }
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let mut signature = [0u8; 32];
    hex::decode_to_slice(hex_sig, &mut signature[..]).map_err(|_| SignatureError::Malformed)?;
    Ok(signature)
}

/// Verifies `header` (the `X-Hub-Signature-256` value) for the raw `body`
/// against every secret in `secrets`: the header is parsed first
/// ([`parse_header`]: bounded), then the body is hashed once per secret.
/// The comparison is constant-time (`Mac::verify_slice`).
///
/// Errors: see [`SignatureError`].
pub fn verify(header: Option<&str>, body: &[u8], secrets: &[&str]) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let signature = parse_header(header.ok_or(SignatureError::Malformed)?)?;
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
    fn headers_are_bounded() {
        let body = b"{}";
        let good = sign("s", body);
        assert_eq!(verify(Some(&format!("  {good} ")), body, &["s"]), Ok(()));
        let long = format!("{good}{}", " ".repeat(MAX_HEADER_BYTES));
        assert_eq!(parse_header(&long), Err(SignatureError::Malformed));
        assert_eq!(
            parse_header(&format!("{good}00")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(parse_header("sha256="), Err(SignatureError::Malformed));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Garbage headers: no panic, never accepted.
        #[test]
        fn garbage_headers_are_errors(header in ".{0,300}", body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = parse_header(&header);
            proptest::prop_assert!(verify(Some(&header), &body, &["s"]).is_err());
        }

        /// Header-shaped garbage: only `sha256=` and 64 hex digits parse.
        #[test]
        fn only_well_formed_headers_parse(prefix in "(sha256=|sha1=|SHA256=|)", digits in "[0-9a-fA-Fg]{0,70}") {
            let header = format!("{prefix}{digits}");
            let ok = parse_header(&header).is_ok();
            let expected = prefix == "sha256=" && digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_hexdigit());
            proptest::prop_assert_eq!(ok, expected);
        }

        /// A valid signature verifies for any body and either secret.
        #[test]
        fn valid_headers_verify(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), old in proptest::prelude::any::<bool>()) {
            let secrets = vec!["new", "old"];
            let header = sign(if old { "old" } else { "new" }, &body);
            proptest::prop_assert_eq!(verify(Some(&header), &body, &secrets), Ok(()));
        }
    }

    #[test]
    fn round_trip_rotation_and_rejections() {
        let body = br#"{"action":"purchased"}"#;
        let secrets = vec!["new", "old"];
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

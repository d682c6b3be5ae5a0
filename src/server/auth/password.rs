//! Passwords: parsed into [`Password`] (12 to 128 characters), hashed with
//! argon2id (the `argon2` crate's defaults: m = 19 MiB, t = 2, p = 1, which
//! are OWASP's recommended minimum) as a PHC string, and verified off the
//! async runtime (`spawn_blocking`). Verifying for an unknown user still
//! verifies a dummy hash, so response time does not reveal which emails have
//! accounts (zero2prod's `authentication/password.rs` pattern).

use crate::types::values::ParseError;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::LazyLock;

/// Fewest characters (Unicode scalar values) a password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most characters a password may have (bounds the hashing cost).
pub const MAX_PASSWORD_CHARS: usize = 128;

/// A password that satisfies the rules. `Debug` is redacted.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// Parses a new password: 12 to 128 characters, not only whitespace.
    /// Errors name the rule broken (never the password).
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let chars = input.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(ParseError(format!(
                "password must be at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(ParseError(format!(
                "password must be at most {MAX_PASSWORD_CHARS} characters"
            )));
        }
        if input.trim().is_empty() {
            return Err(ParseError("password must not be only spaces".into()));
        }
        Ok(Self(input.to_owned()))
    }

    /// A password presented at sign-in: not checked against the rules (a
    /// rule change must not lock anyone out) but capped in length so the
    /// hashing cost stays bounded. `None` when over the cap.
    pub fn presented(input: &str) -> Option<Self> {
        (input.chars().count() <= MAX_PASSWORD_CHARS).then(|| Self(input.to_owned()))
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Hashing or verification could not run (RNG failure, malformed stored
/// hash, or the blocking task panicked). Internal: log it, answer 500.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordError(pub String);

/// A PHC string of a random password, verified against when there is no
/// real hash (unknown email, invited user without a password yet).
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let mut bytes = [0u8; 32];
    // If the RNG fails the fixed bytes still give a valid hash to spend
    // time on; nobody can sign in with the dummy hash either way (callers
    // never accept its result).
    let _ = getrandom::fill(&mut bytes);
    hash_sync(&base64_of(&bytes)).unwrap_or_default()
});

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

fn hash_sync(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| PasswordError(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError(e.to_string()))
}

fn verify_sync(password: &str, phc: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(|e| PasswordError(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// Hashes `password` (argon2id, random 16-byte salt) on a blocking thread;
/// returns the PHC string to store.
///
/// Errors: [`PasswordError`] when the RNG or hasher fails.
pub async fn hash_password(password: Password) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || hash_sync(password.expose()))
        .await
        .map_err(|e| PasswordError(e.to_string()))?
}

/// Verifies `password` against `stored` (a PHC string) on a blocking
/// thread. With `stored = None` it verifies against a dummy hash and
/// returns `false`, taking the same time as a real verification.
///
/// Errors: [`PasswordError`] when the stored hash is malformed.
pub async fn verify_password(
    password: Password,
    stored: Option<String>,
) -> Result<bool, PasswordError> {
    tokio::task::spawn_blocking(move || match stored {
        Some(phc) => verify_sync(password.expose(), &phc),
        None => {
            let _ = verify_sync(password.expose(), &DUMMY_HASH);
            Ok(false)
        }
    })
    .await
    .map_err(|e| PasswordError(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_redaction() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(11)).is_err());
        assert!(Password::parse(&"x".repeat(12)).is_ok());
        assert!(Password::parse(&"é".repeat(128)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert!(Password::parse(&" ".repeat(20)).is_err());
        let p = Password::parse("correct horse battery").unwrap();
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        assert!(Password::presented(&"x".repeat(129)).is_none());
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let p = Password::parse("correct horse battery").unwrap();
        let phc = hash_password(p.clone()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password(p, Some(phc.clone())).await.unwrap());
        let wrong = Password::parse("incorrect horse battery").unwrap();
        assert!(!verify_password(wrong.clone(), Some(phc)).await.unwrap());
        assert!(!verify_password(wrong, None).await.unwrap());
    }
}

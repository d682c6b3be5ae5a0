//! Disposable (throwaway) email domains, from the maintained list of the
//! `mailchecker` crate (FGRibreau/mailchecker, updated with each release).
//!
//! Only the list is used: `mailchecker::is_valid` also judges the address's
//! syntax with rules of its own, which would turn addresses that
//! [`Email::parse`] accepts into "disposable" refusals.

use crate::types::values::Email;
use std::collections::HashSet;
use std::sync::LazyLock;

/// The message shown when a disposable address is refused (a 422 on the
/// JSON API, [`crate::types::AppError::Validation`] in the UI).
pub const DISPOSABLE_EMAIL_MESSAGE: &str = "disposable email addresses are not accepted";

static DISPOSABLE_DOMAINS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| mailchecker::blacklist().into_iter().collect());

/// Whether `email`'s domain, or any parent domain of it, is a disposable
/// email provider (`x@mailinator.com`, `x@sub.mailinator.com`). Compared
/// case-insensitively.
pub fn is_disposable(email: &Email) -> bool {
    let Some((_, domain)) = email.as_str().rsplit_once('@') else {
        return false;
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut suffix = domain.as_str();
    loop {
        if DISPOSABLE_DOMAINS.contains(suffix) {
            return true;
        }
        match suffix.split_once('.') {
            Some((_, parent)) if parent.contains('.') => suffix = parent,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    #[test]
    fn known_disposable_domains_and_their_subdomains_are_recognised() {
        assert!(is_disposable(&email("someone@mailinator.com")));
        assert!(is_disposable(&email("someone@MAILINATOR.com")));
        assert!(is_disposable(&email("someone@inbox.mailinator.com")));
        assert!(is_disposable(&email("x@guerrillamailblock.com")));
    }

    #[test]
    fn ordinary_domains_are_not() {
        for ok in [
            "ada@example.com",
            "ada@gmail.com",
            "ada@rsolv.dev",
            "ada@mail.company.co.uk",
        ] {
            assert!(!is_disposable(&email(ok)), "{ok}");
        }
    }
}

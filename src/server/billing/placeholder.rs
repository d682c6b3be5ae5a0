//! Placeholder emails: a GitHub Marketplace purchaser whose account shows no
//! email gets `<id>+<login>@users.noreply.github.com`. A domain rule because
//! the Marketplace adapter writes such addresses and the Stripe job must
//! recognise them (no Stripe Customer, no email until it is replaced).

/// The domain of GitHub's no-reply addresses.
pub const PLACEHOLDER_EMAIL_DOMAIN: &str = "users.noreply.github.com";

/// The placeholder email of GitHub account `id`/`login`:
/// `<id>+<login>@users.noreply.github.com`.
pub fn placeholder_email(id: i64, login: &str) -> String {
    format!("{id}+{login}@{PLACEHOLDER_EMAIL_DOMAIN}")
}

/// Whether `email` is a placeholder ([`placeholder_email`]): no one reads
/// it, so nothing is mailed to it and no Stripe Customer is created with it
/// (the `stripe.create_customer` job waits until it is replaced).
pub fn is_placeholder(email: &str) -> bool {
    email
        .to_ascii_lowercase()
        .ends_with(&format!("@{PLACEHOLDER_EMAIL_DOMAIN}"))
}

//! The account emails (confirmation, invite, password reset), rendered here
//! in plain text and minimal HTML. The email module's shared templates may
//! take these over later; the outbox kinds and idempotency keys stay.

use crate::server::email::OutgoingEmail;

/// What an account email is for, with the page its link opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountEmail {
    /// "Confirm your email" after registering (`/confirm-email`).
    Confirmation,
    /// "Set your password" for an owner provisioned without one
    /// (`/accept-invite`).
    Invite,
    /// "Reset your password" (`/reset-password`).
    PasswordReset,
}

impl AccountEmail {
    fn kind(self) -> &'static str {
        match self {
            Self::Confirmation => "email_confirmation",
            Self::Invite => "invite",
            Self::PasswordReset => "password_reset",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Confirmation => "/confirm-email",
            Self::Invite => "/accept-invite",
            Self::PasswordReset => "/reset-password",
        }
    }
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Builds the email: link `base_url + path + "?token=" + token`; idempotency
/// key `<kind>:<token row id>` (one email per token).
pub fn account_email(
    which: AccountEmail,
    base_url: &str,
    customer_id: i64,
    to: &str,
    token: &str,
    token_id: i64,
) -> OutgoingEmail {
    let link = format!("{base_url}{}?token={token}", which.path());
    let (subject, intro, action, expiry) = match which {
        AccountEmail::Confirmation => (
            "Confirm your email for RSOLV",
            "Thanks for creating an RSOLV account. Please confirm your email address.",
            "Confirm my email",
            "The link works once and expires in 7 days.",
        ),
        AccountEmail::Invite => (
            "Set your RSOLV password",
            "An RSOLV account was created for this email address. Choose a password to sign in to your dashboard.",
            "Set my password",
            "The link works once and expires in 7 days.",
        ),
        AccountEmail::PasswordReset => (
            "Reset your RSOLV password",
            "Someone (hopefully you) asked to reset the password of your RSOLV account.",
            "Choose a new password",
            "The link works once and expires in 1 hour. If you did not ask for this, ignore this email: your password stays as it is.",
        ),
    };
    let text_body = format!("{intro}\n\n{action}: {link}\n\n{expiry}\n");
    let html_link = escape_html(&link);
    let html_body = format!(
        "<p>{}</p><p><a href=\"{html_link}\">{}</a></p><p>{}</p>",
        escape_html(intro),
        escape_html(action),
        escape_html(expiry)
    );
    OutgoingEmail {
        customer_id: Some(customer_id),
        kind: which.kind(),
        to: to.to_owned(),
        subject: subject.to_owned(),
        text_body,
        html_body,
        idempotency_key: format!("{}:{token_id}", which.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_carries_the_token_and_the_key_is_per_token() {
        let email = account_email(
            AccountEmail::PasswordReset,
            "https://rsolv.example",
            7,
            "a@example.com",
            "tok",
            42,
        );
        assert!(email
            .text_body
            .contains("https://rsolv.example/reset-password?token=tok"));
        assert!(email
            .html_body
            .contains("href=\"https://rsolv.example/reset-password?token=tok\""));
        assert_eq!(email.idempotency_key, "password_reset:42");
        assert_eq!(email.kind, "password_reset");
    }
}

//! The account emails (confirmation, invite, password reset): which shared
//! notification ([`crate::server::billing::notifications`]) and page each uses, with
//! the outbox kind and idempotency key (`<kind>:<token row id>`).

use crate::server::billing::notifications::{
    self as templates, EmailLinks, OutgoingEmail, Recipient,
};

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
            Self::Confirmation => templates::kind::EMAIL_CONFIRMATION,
            Self::Invite => templates::kind::INVITE,
            Self::PasswordReset => templates::kind::PASSWORD_RESET,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Confirmation => templates::CONFIRM_EMAIL_PATH,
            Self::Invite => templates::ACCEPT_INVITE_PATH,
            Self::PasswordReset => templates::RESET_PASSWORD_PATH,
        }
    }
}

/// Builds the email to `to` (greeted by `name`, empty for a plain
/// "Hello,"): link `links + path + "?token=" + token`; idempotency key
/// `<kind>:<token row id>` (one email per token).
pub fn account_email(
    which: AccountEmail,
    links: &EmailLinks,
    customer_id: Option<i64>,
    to: &str,
    token: &str,
    token_id: i64,
) -> OutgoingEmail {
    let link = links.with_token(which.path(), token);
    let recipient = Recipient {
        customer_id,
        email: to,
        name: "",
    };
    let key = format!("{}:{token_id}", which.kind());
    match which {
        AccountEmail::Confirmation => templates::email_confirmation(&recipient, &link, key),
        AccountEmail::Invite => templates::invite(&recipient, &link, key),
        AccountEmail::PasswordReset => templates::password_reset(&recipient, &link, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::billing::notifications::Notification;

    #[test]
    fn the_link_carries_the_token_and_the_key_is_per_token() {
        let links = EmailLinks::parse("https://rsolv.example").unwrap();
        let email = account_email(
            AccountEmail::PasswordReset,
            &links,
            Some(7),
            "a@example.com",
            "tok",
            42,
        );
        assert_eq!(
            email.notification(),
            &Notification::PasswordReset {
                link: "https://rsolv.example/reset-password?token=tok".into()
            }
        );
        assert_eq!(email.idempotency_key, "password_reset:42");
        assert_eq!(email.kind(), "password_reset");
        assert_eq!(email.customer_id, Some(7));
        let invite = account_email(
            AccountEmail::Invite,
            &links,
            Some(7),
            "a@example.com",
            "t2",
            5,
        );
        assert_eq!(
            invite.notification(),
            &Notification::Invite {
                link: "https://rsolv.example/accept-invite?token=t2".into()
            }
        );
        assert_eq!(invite.idempotency_key, "invite:5");
    }
}

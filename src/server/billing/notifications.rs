//! Emails as typed notifications (issue 9, scope 5): the domain (billing,
//! auth, admin, and the integrations applying webhooks) queues *what
//! happened* — a [`Notification`] with the facts its email needs — into the
//! outbox (`email_outbox.notification`), in the transaction that causes it.
//! It never renders a template: the email integration
//! (`server::email::templates`) renders subject and bodies at send time and
//! stores the rendering on the row.
//!
//! The constructors ([`welcome`], [`low_credit`], …) keep the signatures of
//! the templates they replace, so a call site reads as before:
//! `enqueue_email(conn, &low_credit(links, &to, 1, key))`.
//!
//! Secrets: the account notifications ([`Notification::EmailConfirmation`],
//! [`Notification::PasswordReset`], [`Notification::Invite`]) carry their
//! link *with its token*, as the rendered body did before; the token is
//! single-use and expires, and the row is never logged. None carries an API
//! key (a key is shown once; see README § Email).

use crate::server::billing::BillingError;
use crate::server::db::schema::email_outbox;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

pub use crate::server::config::links::EmailLinks;

/// The `kind` column of each notification (the email's kind).
pub mod kind {
    /// [`super::Notification::Welcome`].
    pub const WELCOME: &str = "welcome";
    /// [`super::Notification::EmailConfirmation`].
    pub const EMAIL_CONFIRMATION: &str = "email_confirmation";
    /// [`super::Notification::PasswordReset`].
    pub const PASSWORD_RESET: &str = "password_reset";
    /// [`super::Notification::LowCredit`].
    pub const LOW_CREDIT: &str = "low_credit";
    /// [`super::Notification::ApiKeyRevoked`].
    pub const API_KEY_REVOKED: &str = "api_key_revoked";
    /// [`super::Notification::ApiKeyRotated`].
    pub const API_KEY_ROTATED: &str = "api_key_rotated";
    /// [`super::Notification::Invite`].
    pub const INVITE: &str = "invite";
    /// [`super::Notification::ChargeDeclined`].
    pub const CHARGE_DECLINED: &str = "charge_declined";
    /// [`super::Notification::SubscriptionPaymentFailed`].
    pub const SUBSCRIPTION_PAYMENT_FAILED: &str = "subscription_payment_failed";
    /// [`super::Notification::DisputeOpened`].
    pub const DISPUTE_OPENED: &str = "dispute_opened";
    /// [`super::Notification::PasswordChanged`].
    pub const PASSWORD_CHANGED: &str = "password_changed";
    /// [`super::Notification::ApiKeyReissued`].
    pub const API_KEY_REISSUED: &str = "api_key_reissued";
    /// [`super::Notification::AccountExists`].
    pub const ACCOUNT_EXISTS: &str = "account_exists";
    /// [`super::Notification::ChargeReceipt`].
    pub const CHARGE_RECEIPT: &str = "charge_receipt";
    /// [`super::Notification::InvoiceReceipt`].
    pub const INVOICE_RECEIPT: &str = "invoice_receipt";
    /// [`super::Notification::ChargeRequiresAction`].
    pub const CHARGE_REQUIRES_ACTION: &str = "charge_requires_action";

    /// Every kind, for lists and tests that enumerate them.
    pub const ALL: [&str; 16] = [
        WELCOME,
        EMAIL_CONFIRMATION,
        PASSWORD_RESET,
        LOW_CREDIT,
        API_KEY_REVOKED,
        API_KEY_ROTATED,
        INVITE,
        CHARGE_DECLINED,
        SUBSCRIPTION_PAYMENT_FAILED,
        DISPUTE_OPENED,
        PASSWORD_CHANGED,
        API_KEY_REISSUED,
        ACCOUNT_EXISTS,
        CHARGE_RECEIPT,
        INVOICE_RECEIPT,
        CHARGE_REQUIRES_ACTION,
    ];
}

/// `kind` of [`charge_declined`].
pub const KIND_CHARGE_DECLINED: &str = kind::CHARGE_DECLINED;
/// `kind` of [`subscription_payment_failed`].
pub const KIND_SUBSCRIPTION_PAYMENT_FAILED: &str = kind::SUBSCRIPTION_PAYMENT_FAILED;

/// Path of the email-confirmation page (`?token=`).
pub const CONFIRM_EMAIL_PATH: &str = "/confirm-email";
/// Path of the password-reset page (`?token=`).
pub const RESET_PASSWORD_PATH: &str = "/reset-password";
/// Path of the set-a-password page for invitations (`?token=`).
pub const ACCEPT_INVITE_PATH: &str = "/accept-invite";
/// Path of the page that mails a password-reset link.
pub const FORGOT_PASSWORD_PATH: &str = "/forgot-password";

/// What happened, with the facts its email needs. Stored as JSON tagged by
/// `kind` (the same spelling as the outbox's `kind` column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notification {
    /// Welcome after sign-up (links the dashboard, never the key).
    Welcome,
    /// Confirm the address: `link` is the confirmation page with the token.
    EmailConfirmation {
        /// `/confirm-email?token=…` on the public base URL (a secret).
        link: String,
    },
    /// Reset the password: `link` is the reset page with the token.
    PasswordReset {
        /// `/reset-password?token=…` on the public base URL (a secret).
        link: String,
    },
    /// The balance is down to `credits_left` credits.
    LowCredit {
        /// Credits left (whole credits).
        credits_left: i64,
    },
    /// An API key was revoked.
    ApiKeyRevoked {
        /// The key's name.
        key_name: String,
        /// Its display prefix (`rsolv_` + 6 characters), never the key.
        key_prefix: String,
    },
    /// An API key was rotated; the old one works until `grace_ends_at`.
    ApiKeyRotated {
        /// The key's name.
        key_name: String,
        /// The old key's display prefix.
        old_prefix: String,
        /// The new key's display prefix.
        new_prefix: String,
        /// End of the old key's grace period.
        grace_ends_at: DateTime<Utc>,
    },
    /// An account was created for the recipient: `link` sets a password.
    Invite {
        /// `/accept-invite?token=…` on the public base URL (a secret).
        link: String,
    },
    /// A pay-as-you-go card charge was declined.
    ChargeDeclined {
        /// The amount, formatted (e.g. `$29.00`, `billing::pricing::format_money`).
        amount: String,
        /// What the customer is told: our advice for the decline code
        /// ([`crate::server::billing::ports::decline_advice`]), never the
        /// processor's message.
        reason: String,
    },
    /// A pay-as-you-go card charge waits for the customer to authenticate
    /// it with their bank (3-D Secure): the email links
    /// `/billing/authenticate?charge=<charge_id>` (built at send time; no
    /// secret: the page asks for one only for the signed-in owner).
    ChargeRequiresAction {
        /// Our charge id (the page's `charge` parameter).
        charge_id: i64,
        /// The amount, formatted (`billing::pricing::format_money`).
        amount: String,
        /// What it pays for, in our words (e.g. "RSOLV fix 12 (pay as you go)").
        description: String,
    },
    /// A Pro subscription invoice could not be paid (past due).
    SubscriptionPaymentFailed {
        /// The invoice amount, formatted.
        amount: String,
    },
    /// The account's password was changed (signed in) or reset (by a
    /// mailed link); the other sessions were signed out. Carries no link
    /// with a token: the email points to the forgot-password page.
    PasswordChanged,
    /// The owner proved the email for the first time: the API keys issued
    /// before (by whoever provisioned the account with this address) were
    /// revoked and a fresh key was issued, shown once on the page that took
    /// the proof. Carries no key and no token.
    ApiKeyReissued {
        /// Display prefixes (`rsolv_` + 6 characters) of the revoked keys.
        revoked_prefixes: Vec<String>,
        /// Display prefix of the fresh key.
        new_prefix: String,
    },
    /// Someone tried to create an account for an address that already has
    /// one: the email points to sign-in and to the forgot-password page
    /// (no token).
    AccountExists,
    /// To a staff admin: a customer disputed a charge (Stripe's
    /// `charge.dispute.created`).
    DisputeOpened {
        /// The disputing customer.
        customer_id: i64,
        /// Their email address.
        customer_email: String,
        /// The disputed amount, formatted.
        amount: String,
        /// Stripe's dispute reason (e.g. `fraudulent`).
        reason: String,
    },
    /// A card charge succeeded (pay as you go: one fix beyond the credits).
    ChargeReceipt {
        /// The amount, formatted (`billing::pricing::format_money`).
        amount: String,
        /// What it paid for, in our words (e.g. "RSOLV fix 12 (pay as you go)").
        description: String,
        /// When the charge was recorded as paid.
        paid_at: DateTime<Utc>,
    },
    /// An invoice was paid (Pro subscription, with any overage on it).
    InvoiceReceipt {
        /// The amount paid, formatted.
        amount: String,
        /// What it paid for, in our words.
        description: String,
        /// The invoice's human number, when the processor gave one.
        number: Option<String>,
        /// When the payment was recorded (the event's observation time).
        paid_at: DateTime<Utc>,
        /// The processor's page for the invoice (already through
        /// `types::urls::safe_href`), when it gave one.
        hosted_url: Option<String>,
        /// The invoice's PDF (already through `safe_href`), when given.
        pdf_url: Option<String>,
    },
}

impl Notification {
    /// The outbox `kind` (one of [`kind`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Welcome => kind::WELCOME,
            Self::EmailConfirmation { .. } => kind::EMAIL_CONFIRMATION,
            Self::PasswordReset { .. } => kind::PASSWORD_RESET,
            Self::LowCredit { .. } => kind::LOW_CREDIT,
            Self::ApiKeyRevoked { .. } => kind::API_KEY_REVOKED,
            Self::ApiKeyRotated { .. } => kind::API_KEY_ROTATED,
            Self::Invite { .. } => kind::INVITE,
            Self::ChargeDeclined { .. } => kind::CHARGE_DECLINED,
            Self::SubscriptionPaymentFailed { .. } => kind::SUBSCRIPTION_PAYMENT_FAILED,
            Self::DisputeOpened { .. } => kind::DISPUTE_OPENED,
            Self::PasswordChanged => kind::PASSWORD_CHANGED,
            Self::ApiKeyReissued { .. } => kind::API_KEY_REISSUED,
            Self::AccountExists => kind::ACCOUNT_EXISTS,
            Self::ChargeReceipt { .. } => kind::CHARGE_RECEIPT,
            Self::InvoiceReceipt { .. } => kind::INVOICE_RECEIPT,
            Self::ChargeRequiresAction { .. } => kind::CHARGE_REQUIRES_ACTION,
        }
    }
}

/// The JSON stored in `email_outbox.notification`: the notification and the
/// recipient's display name (for the greeting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// Display name used in the greeting; empty for a plain "Hello,".
    #[serde(default)]
    pub recipient_name: String,
    /// What happened.
    #[serde(flatten)]
    pub notification: Notification,
}

/// Who an email goes to.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    /// The customer it concerns, if any.
    pub customer_id: Option<i64>,
    /// Address.
    pub email: &'a str,
    /// Display name, used in the greeting.
    pub name: &'a str,
}

/// A customer's address and name as stored, to address a [`Recipient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerContact {
    /// The customer.
    pub customer_id: i64,
    /// Address (`customers.email`).
    pub email: String,
    /// Display name (`customers.name`).
    pub name: String,
}

impl CustomerContact {
    /// Reads customer `customer_id`'s address and name.
    ///
    /// Errors: [`BillingError::Database`] (`NotFound` for an unknown
    /// customer).
    pub async fn load(
        conn: &mut AsyncPgConnection,
        customer_id: i64,
    ) -> Result<Self, BillingError> {
        use crate::server::db::schema::customers;
        let (email, name): (String, String) = customers::table
            .find(customer_id)
            .select((customers::email, customers::name))
            .first(conn)
            .await?;
        Ok(Self {
            customer_id,
            email,
            name,
        })
    }

    /// The customer as the recipient of an email about them.
    pub fn recipient(&self) -> Recipient<'_> {
        Recipient {
            customer_id: Some(self.customer_id),
            email: &self.email,
            name: &self.name,
        }
    }
}

/// One notification to queue for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// The customer it concerns, if any (for the admin's view).
    pub customer_id: Option<i64>,
    /// Recipient address.
    pub to: String,
    /// What happened and the recipient's name.
    pub record: NotificationRecord,
    /// Unique across the outbox: queuing the same key twice queues one
    /// email (e.g. `welcome:<customer id>`, `low_credit:<ledger entry id>`).
    pub idempotency_key: String,
}

impl OutgoingEmail {
    /// `notification` for `to`, deduplicated by `idempotency_key`.
    pub fn new(to: &Recipient<'_>, notification: Notification, idempotency_key: String) -> Self {
        Self {
            customer_id: to.customer_id,
            to: to.email.to_owned(),
            record: NotificationRecord {
                recipient_name: to.name.to_owned(),
                notification,
            },
            idempotency_key,
        }
    }

    /// The outbox `kind`.
    pub fn kind(&self) -> &'static str {
        self.record.notification.kind()
    }

    /// The notification.
    pub fn notification(&self) -> &Notification {
        &self.record.notification
    }
}

/// Queues `email` inside the caller's transaction (subject and bodies are
/// left empty: the email worker renders them at send time); returns the
/// outbox id, or `None` when an email with the same idempotency key was
/// already queued.
///
/// Errors: [`BillingError::Database`].
pub async fn enqueue_email(
    conn: &mut AsyncPgConnection,
    email: &OutgoingEmail,
) -> Result<Option<i64>, BillingError> {
    let record = serde_json::to_value(&email.record).map_err(|e| {
        BillingError::Database(diesel::result::Error::SerializationError(Box::new(e)))
    })?;
    Ok(diesel::insert_into(email_outbox::table)
        .values((
            email_outbox::customer_id.eq(email.customer_id),
            email_outbox::kind.eq(email.kind()),
            email_outbox::to_address.eq(&email.to),
            email_outbox::notification.eq(Some(record)),
            email_outbox::idempotency_key.eq(&email.idempotency_key),
        ))
        .on_conflict(email_outbox::idempotency_key)
        .do_nothing()
        .returning(email_outbox::id)
        .get_result(conn)
        .await
        .optional()?)
}

/// Welcome after sign-up. Conventional key: `welcome:<customer id>`.
/// (`_links`: the dashboard link is built at send time.)
pub fn welcome(_links: &EmailLinks, to: &Recipient<'_>, idempotency_key: String) -> OutgoingEmail {
    OutgoingEmail::new(to, Notification::Welcome, idempotency_key)
}

/// Asks the recipient to confirm their address by opening `confirm_link`
/// (built with [`EmailLinks::with_token`]).
pub fn email_confirmation(
    to: &Recipient<'_>,
    confirm_link: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    let link = confirm_link.to_owned();
    OutgoingEmail::new(
        to,
        Notification::EmailConfirmation { link },
        idempotency_key,
    )
}

/// A password-reset link (`reset_link`, built with
/// [`EmailLinks::with_token`]).
pub fn password_reset(
    to: &Recipient<'_>,
    reset_link: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    let link = reset_link.to_owned();
    OutgoingEmail::new(to, Notification::PasswordReset { link }, idempotency_key)
}

/// "Your password was changed; if it was not you, reset it." Conventional
/// key: `password_changed:<user id>:<unix microseconds>` (one per change).
pub fn password_changed(to: &Recipient<'_>, idempotency_key: String) -> OutgoingEmail {
    OutgoingEmail::new(to, Notification::PasswordChanged, idempotency_key)
}

/// "Your earlier API keys stopped working when you proved your email; your
/// new key was shown once." Conventional key: `api_key_reissued:<new key id>`.
pub fn api_key_reissued(
    to: &Recipient<'_>,
    revoked_prefixes: Vec<String>,
    new_prefix: String,
    idempotency_key: String,
) -> OutgoingEmail {
    OutgoingEmail::new(
        to,
        Notification::ApiKeyReissued {
            revoked_prefixes,
            new_prefix,
        },
        idempotency_key,
    )
}

/// "You already have an account": sign in, or reset the password. Sent
/// instead of a new account when a sign-up names a registered address.
/// Conventional key: `account_exists:<lowercased email>:<unix microseconds>`.
pub fn account_exists(to: &Recipient<'_>, idempotency_key: String) -> OutgoingEmail {
    OutgoingEmail::new(to, Notification::AccountExists, idempotency_key)
}

/// The balance is down to `credits_left` credits. Conventional key:
/// `low_credit:<ledger entry id>` of the debit that left it there.
pub fn low_credit(
    _links: &EmailLinks,
    to: &Recipient<'_>,
    credits_left: i64,
    idempotency_key: String,
) -> OutgoingEmail {
    OutgoingEmail::new(
        to,
        Notification::LowCredit { credits_left },
        idempotency_key,
    )
}

/// A key was revoked. `key_prefix` is the key's display prefix, never the key.
pub fn api_key_revoked(
    _links: &EmailLinks,
    to: &Recipient<'_>,
    key_name: &str,
    key_prefix: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    let notification = Notification::ApiKeyRevoked {
        key_name: key_name.to_owned(),
        key_prefix: key_prefix.to_owned(),
    };
    OutgoingEmail::new(to, notification, idempotency_key)
}

/// A key was rotated: the old one keeps working until `grace_ends_at`.
pub fn api_key_rotated(
    _links: &EmailLinks,
    to: &Recipient<'_>,
    key_name: &str,
    old_prefix: &str,
    new_prefix: &str,
    grace_ends_at: DateTime<Utc>,
    idempotency_key: String,
) -> OutgoingEmail {
    let notification = Notification::ApiKeyRotated {
        key_name: key_name.to_owned(),
        old_prefix: old_prefix.to_owned(),
        new_prefix: new_prefix.to_owned(),
        grace_ends_at,
    };
    OutgoingEmail::new(to, notification, idempotency_key)
}

/// Invites the recipient to set a password by opening `set_password_link`
/// (built with [`EmailLinks::with_token`]).
pub fn invite(
    to: &Recipient<'_>,
    set_password_link: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    let link = set_password_link.to_owned();
    OutgoingEmail::new(to, Notification::Invite { link }, idempotency_key)
}

/// A pay-as-you-go card charge of `amount` (formatted, e.g. `$29.00`) was
/// declined; `reason` is our advice for its decline code
/// ([`crate::server::billing::ports::decline_advice`]), never the
/// processor's message. Conventional key:
/// `charge_declined:<charge id>:<attempt>`.
pub fn charge_declined(
    _links: &EmailLinks,
    to: &Recipient<'_>,
    amount: &str,
    reason: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    let notification = Notification::ChargeDeclined {
        amount: amount.to_owned(),
        reason: reason.to_owned(),
    };
    OutgoingEmail::new(to, notification, idempotency_key)
}

/// The bank asks the customer to authenticate pay-as-you-go charge
/// `charge_id` of `amount` (formatted) for `description` (3-D Secure).
/// Conventional key: `charge_requires_action:<charge id>` (one email per
/// charge).
pub fn charge_requires_action(
    to: &Recipient<'_>,
    charge_id: i64,
    amount: &str,
    description: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    OutgoingEmail::new(
        to,
        Notification::ChargeRequiresAction {
            charge_id,
            amount: amount.to_owned(),
            description: description.to_owned(),
        },
        idempotency_key,
    )
}

/// A Pro subscription invoice of `amount` could not be paid. Conventional
/// key: `invoice_payment_failed:<invoice id>:<attempt count>`.
pub fn subscription_payment_failed(
    _links: &EmailLinks,
    to: &Recipient<'_>,
    amount: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    let amount = amount.to_owned();
    OutgoingEmail::new(
        to,
        Notification::SubscriptionPaymentFailed { amount },
        idempotency_key,
    )
}

/// To a staff admin `to`: customer `customer_id` (`customer_email`)
/// disputed a charge of `amount` (formatted) for `reason`. Conventional key:
/// `dispute_opened:<dispute id>:<admin user id>`.
pub fn dispute_opened(
    to: &Recipient<'_>,
    customer_id: i64,
    customer_email: &str,
    amount: &str,
    reason: &str,
    idempotency_key: String,
) -> OutgoingEmail {
    OutgoingEmail::new(
        to,
        Notification::DisputeOpened {
            customer_id,
            customer_email: customer_email.to_owned(),
            amount: amount.to_owned(),
            reason: reason.to_owned(),
        },
        idempotency_key,
    )
}

/// Receipt for a card charge of `amount` (formatted) for `description`,
/// recorded paid at `paid_at`. Conventional key: `receipt:charge:<charge id>`.
pub fn charge_receipt(
    to: &Recipient<'_>,
    amount: &str,
    description: &str,
    paid_at: DateTime<Utc>,
    idempotency_key: String,
) -> OutgoingEmail {
    OutgoingEmail::new(
        to,
        Notification::ChargeReceipt {
            amount: amount.to_owned(),
            description: description.to_owned(),
            paid_at,
        },
        idempotency_key,
    )
}

/// The facts of a paid invoice for [`invoice_receipt`].
#[derive(Debug, Clone)]
pub struct InvoiceReceiptFacts<'a> {
    /// Amount paid, formatted.
    pub amount: &'a str,
    /// What it paid for.
    pub description: &'a str,
    /// Human number.
    pub number: Option<&'a str>,
    /// When it was recorded paid.
    pub paid_at: DateTime<Utc>,
    /// Hosted page (a URL already parsed by `safe_href`).
    pub hosted_url: Option<&'a str>,
    /// PDF (a URL already parsed by `safe_href`).
    pub pdf_url: Option<&'a str>,
}

/// Receipt for a paid invoice. Conventional key: `receipt:invoice:<in_…>`.
pub fn invoice_receipt(
    to: &Recipient<'_>,
    facts: &InvoiceReceiptFacts<'_>,
    idempotency_key: String,
) -> OutgoingEmail {
    OutgoingEmail::new(
        to,
        Notification::InvoiceReceipt {
            amount: facts.amount.to_owned(),
            description: facts.description.to_owned(),
            number: facts.number.map(str::to_owned),
            paid_at: facts.paid_at,
            hosted_url: facts.hosted_url.map(str::to_owned),
            pdf_url: facts.pdf_url.map(str::to_owned),
        },
        idempotency_key,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_stored_tagged_by_kind_with_the_name() {
        let to = Recipient {
            customer_id: Some(7),
            email: "ada@example.com",
            name: "Ada",
        };
        let links = EmailLinks::parse("https://app.rsolv.dev").unwrap();
        let email = low_credit(&links, &to, 1, "low_credit:9".into());
        assert_eq!(email.kind(), kind::LOW_CREDIT);
        let json = serde_json::to_value(&email.record).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "low_credit", "credits_left": 1, "recipient_name": "Ada"})
        );
        let back: NotificationRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, email.record);
        let welcome = welcome(&links, &to, "welcome:7".into());
        assert_eq!(
            serde_json::to_value(&welcome.record).unwrap(),
            serde_json::json!({"kind": "welcome", "recipient_name": "Ada"})
        );
    }
}

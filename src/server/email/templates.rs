//! The emails the platform sends, rendered at send time from the typed
//! notification the domain queued
//! ([`crate::server::billing::notifications::Notification`]) into a subject,
//! a plain-text and an HTML body. Every interpolated value is plain text: the
//! HTML part is built from the same paragraphs with each one HTML-escaped,
//! so a customer's name such as `<b>` arrives as text.
//!
//! None of them carries an API key: a key is shown once, in the browser or
//! the API response that created it; an email is a copy that lives on in
//! mailboxes, backups and forwarding rules (see README § Email).

use crate::server::billing::notifications::{Notification, NotificationRecord};
use chrono::{DateTime, Utc};

pub use crate::server::billing::notifications::{
    kind, Recipient, ACCEPT_INVITE_PATH, CONFIRM_EMAIL_PATH, FORGOT_PASSWORD_PATH,
    KIND_CHARGE_DECLINED, KIND_SUBSCRIPTION_PAYMENT_FAILED, RESET_PASSWORD_PATH,
};
pub use crate::server::config::links::EmailLinks;

/// The customer dashboard's path.
pub const DASHBOARD_PATH: &str = "/dashboard";
/// The sign-in page.
pub const LOGIN_PATH: &str = "/login";
/// The portal's billing page (payment methods, plan, history).
pub const BILLING_PATH: &str = "/billing";
/// The portal's billing history page (receipts link it).
pub const BILLING_HISTORY_PATH: &str = "/billing/history";
/// How long a password-reset link stays valid, in minutes (stated in the
/// email; the auth code enforces it).
pub const PASSWORD_RESET_TTL_MINUTES: i64 = 60;

/// A rendered email: what the transport sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text_body: String,
    /// HTML body.
    pub html_body: String,
}

/// Renders `record` (a queued notification and the recipient's name) with
/// links on `links` (`PUBLIC_BASE_URL`).
pub fn render_notification(links: &EmailLinks, record: &NotificationRecord) -> Rendered {
    let name = record.recipient_name.as_str();
    match &record.notification {
        Notification::Welcome => welcome(links, name),
        Notification::EmailConfirmation { link } => email_confirmation(name, link),
        Notification::PasswordReset { link } => password_reset(name, link),
        Notification::LowCredit { credits_left } => low_credit(links, name, *credits_left),
        Notification::ApiKeyRevoked {
            key_name,
            key_prefix,
        } => api_key_revoked(links, name, key_name, key_prefix),
        Notification::ApiKeyRotated {
            key_name,
            old_prefix,
            new_prefix,
            grace_ends_at,
        } => api_key_rotated(
            links,
            name,
            key_name,
            old_prefix,
            new_prefix,
            *grace_ends_at,
        ),
        Notification::Invite { link } => invite(name, link),
        Notification::ChargeDeclined { amount, reason } => {
            charge_declined(links, name, amount, reason)
        }
        Notification::SubscriptionPaymentFailed { amount } => {
            subscription_payment_failed(links, name, amount)
        }
        Notification::ChargeRequiresAction {
            charge_id,
            amount,
            description,
        } => charge_requires_action(links, name, *charge_id, amount, description),
        Notification::DisputeOpened {
            customer_id,
            customer_email,
            amount,
            reason,
        } => dispute_opened(links, name, *customer_id, customer_email, amount, reason),
        Notification::PasswordChanged => password_changed(links, name),
        Notification::ApiKeyReissued {
            revoked_prefixes,
            new_prefix,
        } => api_key_reissued(links, name, revoked_prefixes, new_prefix),
        Notification::AccountExists => account_exists(links, name),
        Notification::ChargeReceipt {
            amount,
            description,
            paid_at,
        } => charge_receipt(links, name, amount, description, *paid_at),
        Notification::InvoiceReceipt {
            amount,
            description,
            number,
            paid_at,
            hosted_url,
            pdf_url,
        } => invoice_receipt(
            links,
            name,
            InvoiceLines {
                amount,
                description,
                number: number.as_deref(),
                paid_at: *paid_at,
                hosted_url: hosted_url.as_deref(),
                pdf_url: pdf_url.as_deref(),
            },
        ),
    }
}

/// A link shown as a button in HTML and as `label: url` in text.
struct Action<'a> {
    label: &'a str,
    url: &'a str,
}

/// Renders the common layout: greeting, paragraphs, an optional action,
/// more paragraphs, signature.
fn render(
    name: &str,
    subject: String,
    before: &[String],
    action: Option<Action<'_>>,
    after: &[String],
) -> Rendered {
    let greeting = if name.trim().is_empty() {
        "Hello,".to_owned()
    } else {
        format!("Hello {},", name.trim())
    };
    let signature = "— The RSOLV team";

    let mut text = format!("{greeting}\n\n");
    for p in before {
        text.push_str(p);
        text.push_str("\n\n");
    }
    if let Some(action) = &action {
        text.push_str(&format!("{}: {}\n\n", action.label, action.url));
    }
    for p in after {
        text.push_str(p);
        text.push_str("\n\n");
    }
    text.push_str(signature);
    text.push('\n');

    let esc = |s: &str| html_escape::encode_text(s).into_owned();
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n\
         <body style=\"font-family: sans-serif; line-height: 1.5; color: #111827;\">\n<p>{}</p>\n",
        esc(&subject),
        esc(&greeting)
    );
    for p in before {
        html.push_str(&format!("<p>{}</p>\n", esc(p)));
    }
    if let Some(action) = &action {
        let href = html_escape::encode_double_quoted_attribute(action.url);
        html.push_str(&format!(
            "<p><a href=\"{href}\" style=\"display: inline-block; padding: 10px 16px; \
             background: #4f46e5; color: #ffffff; border-radius: 6px; text-decoration: none;\">{}</a></p>\n\
             <p style=\"font-size: 0.875em; color: #4b5563;\">Or open this address: {}</p>\n",
            esc(action.label),
            esc(action.url)
        ));
    }
    for p in after {
        html.push_str(&format!("<p>{}</p>\n", esc(p)));
    }
    html.push_str(&format!("<p>{}</p>\n</body></html>\n", esc(signature)));

    Rendered {
        subject,
        text_body: text,
        html_body: html,
    }
}

/// Welcome after sign-up, with a link to the dashboard. Deliberately
/// without the API key (shown once where the owner first proves the email). Conventional key:
/// `welcome:<customer id>`.
fn welcome(links: &EmailLinks, name: &str) -> Rendered {
    let dashboard = links.page(DASHBOARD_PATH);
    render(
        name,
        "Welcome to RSOLV".into(),
        &[
            "Your RSOLV account is ready, with free fix credits to start: each credit pays for one fix the RSOLV Action opens as a pull request.".into(),
            "We never send API keys by email: yours is shown once, on the page where you set your password or confirm this address (the link is in a separate email). If you lose it, sign in and create a new one under API keys.".into(),
        ],
        Some(Action { label: "Open your dashboard", url: &dashboard }),
        &["If you did not sign up for RSOLV, you can ignore this email.".into()],
    )
}

/// Asks the recipient to confirm their address by opening `confirm_link`
/// (built with [`EmailLinks::with_token`]).
fn email_confirmation(name: &str, confirm_link: &str) -> Rendered {
    render(
        name,
        "Confirm your email address".into(),
        &["Please confirm that this is your email address for RSOLV.".into()],
        Some(Action {
            label: "Confirm my email address",
            url: confirm_link,
        }),
        &["If you did not create an RSOLV account, you can ignore this email.".into()],
    )
}

/// A password-reset link (`reset_link`, built with
/// [`EmailLinks::with_token`]) that expires after
/// [`PASSWORD_RESET_TTL_MINUTES`].
fn password_reset(name: &str, reset_link: &str) -> Rendered {
    render(
        name,
        "Reset your RSOLV password".into(),
        &["Someone (hopefully you) asked to reset the password of your RSOLV account.".into()],
        Some(Action {
            label: "Choose a new password",
            url: reset_link,
        }),
        &[
            format!(
                "This link expires in {} hour and works once.",
                PASSWORD_RESET_TTL_MINUTES / 60
            ),
            "If you did not ask for this, ignore this email: your password stays as it is.".into(),
        ],
    )
}

/// Tells the user their password was changed or reset, and how to take
/// the account back if it was not them (a fresh reset link, asked for on
/// the forgot-password page: this email carries no token).
fn password_changed(links: &EmailLinks, name: &str) -> Rendered {
    let forgot = links.page(FORGOT_PASSWORD_PATH);
    render(
        name,
        "Your RSOLV password was changed".into(),
        &[
            "The password of your RSOLV account was just changed, and every other session was signed out.".into(),
            "If this was you, there is nothing to do. If it was not, reset your password now:".into(),
        ],
        Some(Action {
            label: "Reset your password",
            url: &forgot,
        }),
        &[],
    )
}

/// Explains why the keys issued before the owner proved the email stopped
/// working, and where the fresh key is (shown once on the page that took
/// the proof; otherwise a new one is created under API keys). No key here.
fn api_key_reissued(
    links: &EmailLinks,
    name: &str,
    revoked_prefixes: &[String],
    new_prefix: &str,
) -> Rendered {
    let dashboard = links.page(DASHBOARD_PATH);
    let revoked = revoked_prefixes
        .iter()
        .map(|p| format!("{p}…"))
        .collect::<Vec<_>>()
        .join(", ");
    render(
        name,
        "Your RSOLV API key was replaced".into(),
        &[
            format!("You just proved that this address is yours. The API keys issued for your account before that ({revoked}) stopped working: anyone could have created the account with your address and kept its key, so only keys issued to you after the proof are trusted."),
            format!("Your new key ({new_prefix}…) was shown once on the page where you confirmed. If you did not copy it, sign in and create a new key under API keys, then put it in your workflow's RSOLV_API_KEY secret."),
        ],
        Some(Action {
            label: "Open your dashboard",
            url: &dashboard,
        }),
        &["If you did not just confirm your email or set your password, reset your password now from the sign-in page.".into()],
    )
}

/// Tells the owner of a registered address that someone (maybe they) tried
/// to sign up with it: sign in, or reset the password. No token.
fn account_exists(links: &EmailLinks, name: &str) -> Rendered {
    let login = links.page(LOGIN_PATH);
    let forgot = links.page(FORGOT_PASSWORD_PATH);
    render(
        name,
        "You already have an RSOLV account".into(),
        &[
            "Someone, probably you, tried to create an RSOLV account with this address. You already have an account, so no new one was created.".into(),
            "Sign in with your password:".into(),
        ],
        Some(Action {
            label: "Sign in",
            url: &login,
        }),
        &[
            format!("Forgot your password? Ask for a reset link at {forgot}"),
            "If it was not you, you can ignore this email: nothing changed.".into(),
        ],
    )
}

/// Warns that the balance is down to `credits_left` credits. Conventional
/// key: `low_credit:<ledger entry id>` of the debit that left it there.
fn low_credit(links: &EmailLinks, name: &str, credits_left: i64) -> Rendered {
    let dashboard = links.page(DASHBOARD_PATH);
    let credits = if credits_left == 1 {
        "1 credit".to_owned()
    } else {
        format!("{credits_left} credits")
    };
    render(
        name,
        format!("You have {credits} left"),
        &[
            format!("Your RSOLV balance is down to {credits}. Each fix the RSOLV Action deploys uses one."),
            "Add a payment method or choose a plan so that fixes keep coming when the credits run out.".into(),
        ],
        Some(Action { label: "Manage billing", url: &dashboard }),
        &[],
    )
}

/// Tells the customer a key was revoked. `key_prefix` is the key's display
/// prefix (`rsolv_` + 6 characters), never the key.
fn api_key_revoked(links: &EmailLinks, name: &str, key_name: &str, key_prefix: &str) -> Rendered {
    let dashboard = links.page(DASHBOARD_PATH);
    render(
        name,
        "An RSOLV API key was revoked".into(),
        &[
            format!("The API key \"{key_name}\" ({key_prefix}…) was revoked. Requests made with it are now refused."),
            "If you did not do this, create a new key and review your account's keys now.".into(),
        ],
        Some(Action { label: "Review your API keys", url: &dashboard }),
        &[],
    )
}

/// Tells the customer a key was rotated: the old one keeps working until
/// `grace_ends_at`; the new one was shown once when it was made.
fn api_key_rotated(
    links: &EmailLinks,
    name: &str,
    key_name: &str,
    old_prefix: &str,
    new_prefix: &str,
    grace_ends_at: DateTime<Utc>,
) -> Rendered {
    let dashboard = links.page(DASHBOARD_PATH);
    let ends = grace_ends_at.format("%Y-%m-%d %H:%M UTC");
    render(
        name,
        "Your RSOLV API key was rotated".into(),
        &[
            format!("The API key \"{key_name}\" was rotated: the new key starts with {new_prefix}…"),
            format!("The old key ({old_prefix}…) keeps working until {ends}. Update your GitHub secret (RSOLV_API_KEY) before then."),
        ],
        Some(Action { label: "Open your dashboard", url: &dashboard }),
        &["If you did not do this, revoke the new key and create another now.".into()],
    )
}

/// Invites the recipient to set a password by opening `set_password_link`
/// (built with [`EmailLinks::with_token`]).
fn invite(name: &str, set_password_link: &str) -> Rendered {
    render(
        name,
        "Set a password for your RSOLV account".into(),
        &[
            "An RSOLV account was created for you. Choose a password to sign in to the dashboard; the page then shows your API key, once."
                .into(),
        ],
        Some(Action {
            label: "Set my password",
            url: set_password_link,
        }),
        &["If you were not expecting this, you can ignore this email.".into()],
    )
}

// --- Billing (Stripe) ---------------------------------------------------------

/// A pay-as-you-go card charge of `amount` (formatted, e.g. `$29.00`) was
/// declined with Stripe's `reason`; further fixes beyond the credits wait
/// for a working card. Conventional key: `charge_declined:<charge id>:<attempt>`.
fn charge_declined(links: &EmailLinks, name: &str, amount: &str, reason: &str) -> Rendered {
    let billing = links.page(BILLING_PATH);
    render(
        name,
        format!("Your card was declined for a {amount} fix"),
        &[
            format!("We could not charge {amount} for a fix the RSOLV Action deployed. Your bank said: {reason}"),
            "The fix is recorded and nothing is lost, but further fixes beyond your credits are paused until your card works again.".into(),
        ],
        Some(Action { label: "Update your payment method", url: &billing }),
        &["Once a working card is on file, we charge the unpaid fixes again and fixes resume.".into()],
    )
}

/// The bank asks the customer to confirm a card payment of `amount` for
/// `description` (3-D Secure): a link to the page that completes it,
/// `/billing/authenticate?charge=<charge id>` (no secret: the page asks
/// for one only for the signed-in owner). Conventional key:
/// `charge_requires_action:<charge id>`.
fn charge_requires_action(
    links: &EmailLinks,
    name: &str,
    charge_id: i64,
    amount: &str,
    description: &str,
) -> Rendered {
    let page = links.page(&crate::types::billing::authenticate_payment_path(charge_id));
    let billing = links.page(BILLING_PATH);
    render(
        name,
        format!("Please confirm your {amount} payment to RSOLV"),
        &[
            format!("We tried to charge your card {amount} for {description}, and your bank asks you to confirm this payment first (3-D Secure)."),
            "The fix is recorded and nothing is lost. Sign in and confirm the payment with your bank; it takes a minute:".into(),
        ],
        Some(Action { label: "Confirm the payment", url: &page }),
        &[format!("If your bank's check does not work, add another card on the Billing page: {billing}")],
    )
}

/// Receipt for a card charge of `amount` for `description`, paid at
/// `paid_at` (UTC date). Conventional key: `receipt:charge:<charge id>`.
fn charge_receipt(
    links: &EmailLinks,
    name: &str,
    amount: &str,
    description: &str,
    paid_at: DateTime<Utc>,
) -> Rendered {
    let history = links.page(BILLING_HISTORY_PATH);
    render(
        name,
        format!("Receipt: {amount} paid to RSOLV"),
        &[
            format!("We received your payment of {amount}."),
            format!("For: {description}"),
            format!("Date: {} (UTC)", paid_at.format("%Y-%m-%d")),
        ],
        Some(Action {
            label: "See your billing history",
            url: &history,
        }),
        &["Keep this email as your receipt.".into()],
    )
}

/// What an invoice receipt shows.
struct InvoiceLines<'a> {
    amount: &'a str,
    description: &'a str,
    number: Option<&'a str>,
    paid_at: DateTime<Utc>,
    hosted_url: Option<&'a str>,
    pdf_url: Option<&'a str>,
}

/// Receipt for a paid invoice, with its hosted page (the action) and PDF
/// when the processor gave them (re-checked with `safe_href`), else the
/// billing history. Conventional key: `receipt:invoice:<invoice id>`.
fn invoice_receipt(links: &EmailLinks, name: &str, lines: InvoiceLines<'_>) -> Rendered {
    let history = links.page(BILLING_HISTORY_PATH);
    let hosted = lines.hosted_url.and_then(crate::types::urls::safe_href);
    let pdf = lines.pdf_url.and_then(crate::types::urls::safe_href);
    let amount = lines.amount;
    let mut before = vec![
        format!("We received your payment of {amount}."),
        format!("For: {}", lines.description),
    ];
    if let Some(number) = lines.number {
        before.push(format!("Invoice: {number}"));
    }
    before.push(format!("Date: {} (UTC)", lines.paid_at.format("%Y-%m-%d")));
    let mut after = Vec::new();
    if let Some(pdf) = &pdf {
        after.push(format!("Invoice PDF: {pdf}"));
    }
    after.push("Keep this email as your receipt.".into());
    let action = match &hosted {
        Some(url) => Action {
            label: "View the invoice",
            url,
        },
        None => Action {
            label: "See your billing history",
            url: &history,
        },
    };
    render(
        name,
        format!("Receipt: {amount} paid to RSOLV"),
        &before,
        Some(action),
        &after,
    )
}

/// A Pro subscription invoice of `amount` could not be paid: the
/// subscription is past due. Conventional key:
/// `invoice_payment_failed:<invoice id>:<attempt count>`.
fn subscription_payment_failed(links: &EmailLinks, name: &str, amount: &str) -> Rendered {
    let billing = links.page(BILLING_PATH);
    render(
        name,
        format!("Payment of your RSOLV Pro invoice ({amount}) failed"),
        &[
            format!("We could not collect {amount} for your RSOLV Pro subscription, so it is past due."),
            "Stripe will try the payment again over the next days. If it keeps failing, the subscription ends and your account falls back to pay as you go.".into(),
        ],
        Some(Action { label: "Fix your payment method", url: &billing }),
        &[],
    )
}

/// To a staff admin: a customer disputed a charge.
fn dispute_opened(
    links: &EmailLinks,
    name: &str,
    customer_id: i64,
    customer_email: &str,
    amount: &str,
    reason: &str,
) -> Rendered {
    let page = links.page(&format!("/admin/customers/{customer_id}"));
    render(
        name,
        format!("Dispute opened: {amount} by {customer_email}"),
        &[
            format!("The customer {customer_email} disputed a charge of {amount} with their bank (reason: {reason})."),
            "Answer it in the Stripe Dashboard with the evidence before its due date; the customer is flagged in the admin console meanwhile.".into(),
        ],
        Some(Action { label: "Open the customer", url: &page }),
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::billing::notifications as n;
    use chrono::TimeZone;

    /// Renders what the domain queued, as the worker does at send time.
    fn sent(email: n::OutgoingEmail) -> Rendered {
        render_notification(&links(), &email.record)
    }

    fn links() -> EmailLinks {
        EmailLinks::parse("https://app.rsolv.dev/").unwrap()
    }

    const TO: Recipient<'static> = Recipient {
        customer_id: Some(7),
        email: "ada@example.com",
        name: "Ada <b>&</b> \"Co\"",
    };

    #[test]
    fn interpolations_are_escaped_in_html_and_plain_in_text() {
        let email = sent(n::welcome(&links(), &TO, "welcome:7".into()));
        assert!(email.text_body.starts_with("Hello Ada <b>&</b> \"Co\",\n"));
        assert!(email
            .html_body
            .contains("Hello Ada &lt;b&gt;&amp;&lt;/b&gt; \"Co\","));
        assert!(!email.html_body.contains("<b>"));
        let link = "https://app.rsolv.dev/set-password?token=a\"><script>&x=1";
        let invited = sent(n::invite(&TO, link, "invite:1".into()));
        assert!(invited.html_body.contains(
            "href=\"https://app.rsolv.dev/set-password?token=a&quot;&gt;&lt;script&gt;&amp;x=1\""
        ));
        assert!(!invited.html_body.contains("<script>"));
        assert!(invited.text_body.contains(link));
    }

    #[test]
    fn welcome_links_the_dashboard_and_carries_no_key() {
        let queued = n::welcome(&links(), &TO, "welcome:7".into());
        assert_eq!(queued.kind(), kind::WELCOME);
        assert_eq!(queued.to, "ada@example.com");
        assert_eq!(queued.customer_id, Some(7));
        assert_eq!(queued.idempotency_key, "welcome:7");
        let email = sent(queued);
        assert_eq!(email.subject, "Welcome to RSOLV");
        for body in [&email.text_body, &email.html_body] {
            assert!(body.contains("https://app.rsolv.dev/dashboard"));
            assert!(!body.contains("rsolv_"), "no key or key prefix: {body}");
        }
    }

    #[test]
    fn token_emails_carry_their_link() {
        let links = links();
        let confirm = links.with_token(CONFIRM_EMAIL_PATH, "tok1");
        let reset = links.with_token(RESET_PASSWORD_PATH, "tok2");
        let set = links.with_token(ACCEPT_INVITE_PATH, "tok3");
        let cases = [
            (
                n::email_confirmation(&TO, &confirm, "c".into()),
                kind::EMAIL_CONFIRMATION,
                confirm.as_str(),
            ),
            (
                n::password_reset(&TO, &reset, "r".into()),
                kind::PASSWORD_RESET,
                reset.as_str(),
            ),
            (n::invite(&TO, &set, "i".into()), kind::INVITE, set.as_str()),
        ];
        for (queued, kind, link) in cases {
            assert_eq!(queued.kind(), kind);
            let email = sent(queued);
            assert!(email.text_body.contains(link), "{kind}");
            assert!(
                email.html_body.contains(&format!("href=\"{link}\"")),
                "{kind}"
            );
        }
        let reset_email = sent(n::password_reset(&TO, &reset, "r".into()));
        assert!(reset_email.text_body.contains("expires in 1 hour"));
        assert!(reset_email.html_body.contains("expires in 1 hour"));
    }

    #[test]
    fn low_credit_counts_credits() {
        let queued = n::low_credit(&links(), &TO, 1, "low_credit:9".into());
        assert_eq!(queued.kind(), kind::LOW_CREDIT);
        assert_eq!(queued.idempotency_key, "low_credit:9");
        let one = sent(queued);
        assert_eq!(one.subject, "You have 1 credit left");
        assert!(one.text_body.contains("down to 1 credit."));
        let three = sent(n::low_credit(&links(), &TO, 3, "k".into()));
        assert_eq!(three.subject, "You have 3 credits left");
    }

    #[test]
    fn an_authentication_email_links_the_page_with_the_charge_and_no_secret() {
        let queued = n::charge_requires_action(
            &TO,
            42,
            "$29.00",
            "RSOLV fix 7 (pay as you go)",
            "charge_requires_action:42".into(),
        );
        assert_eq!(queued.kind(), kind::CHARGE_REQUIRES_ACTION);
        let stored = serde_json::to_string(&queued.record).unwrap();
        assert!(!stored.contains("secret"), "{stored}");
        let email = sent(queued);
        assert_eq!(email.subject, "Please confirm your $29.00 payment to RSOLV");
        for body in [&email.text_body, &email.html_body] {
            assert!(body.contains("https://app.rsolv.dev/billing/authenticate?charge=42"));
            assert!(body.contains("$29.00") && body.contains("RSOLV fix 7"));
            assert!(!body.contains("secret"), "{body}");
        }
    }

    #[test]
    fn key_emails_show_prefixes_and_the_grace_period() {
        let queued = n::api_key_revoked(&links(), &TO, "CI", "rsolv_abc123", "k1".into());
        assert_eq!(queued.kind(), kind::API_KEY_REVOKED);
        let revoked = sent(queued);
        assert!(revoked
            .text_body
            .contains("\"CI\" (rsolv_abc123…) was revoked"));
        let ends = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap();
        let queued = n::api_key_rotated(
            &links(),
            &TO,
            "CI <prod>",
            "rsolv_old111",
            "rsolv_new222",
            ends,
            "k2".into(),
        );
        assert_eq!(queued.kind(), kind::API_KEY_ROTATED);
        let rotated = sent(queued);
        assert!(rotated.text_body.contains("until 2026-12-01 09:30 UTC"));
        assert!(rotated.text_body.contains("rsolv_new222…"));
        assert!(rotated
            .html_body
            .contains("\"CI &lt;prod&gt;\" was rotated"));
        assert!(!rotated.html_body.contains("<prod>"));
    }
}
